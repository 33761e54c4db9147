"""Placement's ASGI application: routes from each handler module, auth, policy, microversions."""
from __future__ import annotations

import importlib

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.auth import make_auth_hook
from kilonova.common.http import Handler, HTTPError, Router, ServiceApp
from kilonova.placement import microversion
from kilonova.placement.errors import format_error

# Each module defines ``register(router)``.
HANDLER_MODULES = ["root", "resource_provider", "inventory", "usage", "aggregate", "trait", "resource_class",
                   "allocation", "allocation_candidate", "reshaper"]
# Upstream's default policy: admin, or the "service" role, for everything but GET /.
ALLOWED_ROLES = {"admin", "service"}


def build_router() -> Router:
    router = Router()
    for name in HANDLER_MODULES:
        try:
            module = importlib.import_module(f"kilonova.placement.handlers.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"kilonova.placement.handlers.{name}":
                continue
            raise
        module.register(router)
    return router


async def negotiate_and_authorize(request: Request, handler: Handler) -> None:
    request.state.version = microversion.negotiate(request)
    if getattr(handler, "public", False):
        return
    context = request.state.context
    if not ALLOWED_ROLES & set(context.roles):
        rule = getattr(handler, "policy", "placement")
        raise HTTPError(403, f"Policy does not allow {rule} to be performed.")


def add_version_headers(request: Request, response: Response) -> None:
    version = getattr(request.state, "version", None)
    if version is None:
        return
    response.headers["openstack-api-version"] = f"{microversion.SERVICE} {microversion.text(version)}"
    response.headers["vary"] = "openstack-api-version"


def create_app(validator, placement: object) -> ServiceApp:
    """``validator``: anything with ``async validate(token) -> token document`` (a TokenValidator)."""
    app = ServiceApp("placement", build_router(), error_formatter=format_error,
                     before=make_auth_hook(validator, extra=negotiate_and_authorize), after=add_version_headers)
    app.state["placement"] = placement
    return app
