"""The identity ASGI application: routes from each resource module and token authentication.

Unlike the other services, identity validates the ``X-Auth-Token`` of its own
requests by opening the token itself (no HTTP round trip).
"""
from __future__ import annotations

import importlib

from starlette.requests import Request

from kilonova.common.context import RequestContext
from kilonova.common.http import Handler, Router, ServiceApp, unauthorized
from kilonova.identity.core import IdentityCore, TokenError, TokenInvalid
from kilonova.identity.errors import format_error

RESOURCE_MODULES = ["versions", "auth_tokens", "auth_scopes", "domains", "projects", "users", "roles",
                    "implied_roles", "grants", "role_assignments", "regions", "services", "endpoints", "limits"]


def build_router() -> Router:
    router = Router()
    for name in RESOURCE_MODULES:
        importlib.import_module(f"kilonova.identity.api.{name}").register(router)
    return router


def create_app(identity: IdentityCore) -> ServiceApp:
    async def authenticate(request: Request, handler: Handler) -> None:
        if getattr(handler, "public", False):
            return
        token = request.headers.get("x-auth-token")
        if not token:
            raise unauthorized()
        try:
            payload, body = await identity.validate(token, include_catalog=False)
        except (TokenError, TokenInvalid):
            raise unauthorized() from None
        request.state.token_payload = payload
        request.state.context = RequestContext.from_token(body, token, request.state.request_id)

    app = ServiceApp("identity", build_router(), error_formatter=format_error, before=authenticate)
    app.state["identity"] = identity
    return app
