"""Placement's ASGI application: routes from each handler module, auth, policy, microversions, CORS.

The request path, outermost first, as upstream's pipeline: CORS, authentication
(keystone tokens or noauth2), then route matching, microversion negotiation and
the policy check. An unknown path or method therefore answers 401 to a request
without a token, and 404/405 (with the version header and error code) to one with.
"""
from __future__ import annotations

import importlib

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.auth import request_token
from kilonova.common.context import RequestContext
from kilonova.common.http import Handler, HTTPError, Router, ServiceApp
from kilonova.placement import microversion
from kilonova.placement.cors import CORS
from kilonova.placement.handlers import util
from kilonova.placement.errors import format_error
from kilonova.placement.policy import Enforcer

# Each module defines ``register(router)``.
HANDLER_MODULES = ["root", "resource_provider", "inventory", "usage", "aggregate", "trait", "resource_class",
                   "allocation", "allocation_candidate", "reshaper"]

UNAUTHORIZED_TEXT = ("This server could not verify that you are authorized to access the document you requested. "
                     "Either you supplied the wrong credentials (e.g., bad password), or your browser does not "
                     "understand how to supply the credentials required.")


class PlacementRouter(Router):
    """Defers 404/405 to a handler, so that authentication answers first, as upstream. As upstream's
    routes map: no implicit HEAD for a GET, and ``Allow`` lists the methods in the order declared."""

    def add(self, method: str, template: str, handler) -> None:
        super().add(method, template, handler)
        if method.upper() == "GET":
            self._by_template[template].handlers.pop("HEAD", None)

    def match_route(self, method: str, path: str):
        try:
            if path != "/" and path.endswith("/"):   # upstream's routes take no trailing slash
                raise HTTPError(404, "")
            return super().match_route(method, path)
        except HTTPError as caught:
            error = caught
            if error.status == 404:   # raised past upstream's handlers: no Vary (its 405 is an answer)
                error.extra["bare"] = True
            if error.status == 405:
                path = path.rstrip("/") or "/"
                declared = [m for route in self._routes if route.pattern.match(path) for m in route.handlers]
                error = HTTPError(405, "The method specified is not allowed for this resource.",
                                  headers={"Allow": ", ".join(dict.fromkeys(declared))})

            async def refuse(request: Request) -> Response:
                raise error
            refuse.no_policy = True  # type: ignore[attr-defined]
            return refuse, {}, None


def build_router() -> Router:
    router = PlacementRouter()
    for name in HANDLER_MODULES:
        module = importlib.import_module(f"kilonova.placement.handlers.{name}")
        module.register(router)
    return router


def noauth2_context(request: Request) -> RequestContext:
    """upstream's NoAuthMiddleware: the token is ``user[:project]``; user ``admin`` is an admin."""
    token = request.headers.get("x-auth-token")
    if token is None:
        raise HTTPError(401, UNAUTHORIZED_TEXT, noauth=True)
    user, _, project = token.partition(":")
    project = project or user
    if "x-roles" in request.headers:
        roles = [r.strip() for r in request.headers["x-roles"].split(",") if r.strip()]
    else:
        roles = ["admin"] if user == "admin" else []
    system_scope = request.headers.get("openstack-system-scope") or None
    return RequestContext(user_id=user, project_id=None if system_scope else project, roles=roles,
                          token=token, request_id=request.state.request_id, system_scope=system_scope)


def make_before(validator, enforcer: Enforcer, auth_strategy: str):
    async def before(request: Request, handler: Handler) -> None:
        if not getattr(handler, "public", False):
            if auth_strategy == "noauth2":
                request.state.context = noauth2_context(request)
            else:
                token = request_token(request)
                body = await validator.validate(token)
                request.state.context = RequestContext.from_token(body, token, request.state.request_id)
        request.state.version = microversion.negotiate(request)
        _check_content_type(request)
        json_only = getattr(handler, "json_only", None)   # upstream's Accept check: 406 before any 403
        if json_only == "before version":
            util.check_accept(request)
        if hasattr(handler, "versions"):   # a route absent at this microversion answers 404 before any 403
            microversion.require(request, handler.versions)
        if json_only == "after version":
            util.check_accept(request)
        if getattr(handler, "public", False) or getattr(handler, "no_policy", False):
            return
        rule = getattr(handler, "policy", "placement")
        context = request.state.context
        target = {"project_id": context.project_id, "user_id": context.user_id}
        if rule == "placement:usages":
            target = {"project_id": request.query_params.get("project_id")}
        if not enforcer.authorize(rule, target, context):
            raise HTTPError(403, _refusal(enforcer, rule, context), bare=True)
    return before


def _refusal(enforcer: Enforcer, rule: str, context: RequestContext) -> str:
    """oslo.policy's text: a token of the wrong scope names only the rule."""
    if enforcer.enforce_scope and rule in enforcer.defaults and context.system_scope and not context.project_id:
        return rule
    return f"Policy does not allow {rule} to be performed."


def _check_content_type(request: Request) -> None:
    """As upstream's dispatcher, before routing and policy: a body needs a content type."""
    length = request.headers.get("content-length")
    if length is None or "content-type" in request.headers:
        return
    try:
        if int(length) > 0:
            raise HTTPError(400, "content-type header required when content-length > 0", bare=True)
    except ValueError:
        raise HTTPError(400, "content-length header must be an integer", bare=True) from None


def add_version_headers(request: Request, response: Response) -> None:
    version = getattr(request.state, "version", None)
    if version is None:
        return
    response.headers["openstack-api-version"] = f"{microversion.SERVICE} {microversion.text(version)}"
    # upstream's microversion middleware adds Vary only to the answers its application returns, not to
    # the errors raised past the handlers (routing, policy, content type, objects' NotFound)
    if not getattr(request.state, "bare_error", False):
        response.headers["vary"] = "openstack-api-version"


def create_app(validator, placement: object, *, auth_strategy: str = "keystone", enforcer: Enforcer | None = None,
               cors: dict | None = None):
    """``validator``: anything with ``async validate(token) -> token document`` (a TokenValidator);
    unused with ``auth_strategy="noauth2"``. ``cors``: the [cors] options (CORS is on with an allowed_origin)."""
    if auth_strategy not in ("keystone", "noauth2"):
        raise ValueError(f"[placement] auth_strategy must be keystone or noauth2, not {auth_strategy!r}")
    app = ServiceApp("placement", build_router(), error_formatter=format_error,
                     before=make_before(validator, enforcer or Enforcer(), auth_strategy), after=add_version_headers)
    app.state["placement"] = placement
    if cors and cors.get("allowed_origin"):
        return CORS(app, **cors)
    return app
