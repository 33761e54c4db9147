"""Helpers the compute API's resource modules share: policy checks, paging, boolean query values."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from kilonova.common import policy
from kilonova.common.context import RequestContext
from kilonova.common.http import HTTPError
from kilonova.compute.api.microversions import want

MAX_LIMIT = 1000  # Nova's [api] max_limit
_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


def permits(svc: Any, ctx: RequestContext, rule: str, target: dict[str, Any] | None = None) -> bool:
    """Whether upstream's rule ``rule`` (as the compute service ``svc``'s policy file may override it) lets
    ``ctx`` act on ``target``: by default the caller's own project and user, as Nova's; pass the server's
    ``project_id``/``user_id`` (``server_target``) for a server."""
    if target is None:
        target = {"project_id": ctx.project_id, "user_id": ctx.user_id}
    return (getattr(svc, "policy", None) or policy.default_enforcer("compute")).authorize(rule, target, ctx)


def enforce(svc: Any, ctx: RequestContext, rule: str, target: dict[str, Any] | None = None) -> None:
    """403 with upstream's message unless ``rule`` allows ``ctx`` (see ``permits``)."""
    if not permits(svc, ctx, rule, target):
        raise HTTPError(403, f"Policy doesn't allow {rule} to be performed.")


def allowed(request: Request, rule: str, target: dict[str, Any] | None = None) -> bool:
    return permits(request.state.app.state.get("compute_api"), request.state.context, rule, target)


def authorize(request: Request, rule: str, target: dict[str, Any] | None = None) -> None:
    enforce(request.state.app.state.get("compute_api"), request.state.context, rule, target)


def server_target(server: dict[str, Any]) -> dict[str, Any]:
    """The target Nova checks a server's rules against: its project and user."""
    return {"project_id": server.get("project_id"), "user_id": server.get("user_id")}


# The name every handler has called since before the policy engine: the rule decides, not the admin role.
require_admin = authorize


def gone_from(request: Request, version: str) -> None:
    """A resource upstream dropped at ``version`` (a proxy at 2.36, os-hosts at 2.43): 404 from there on."""
    if want(request, version):
        raise HTTPError(404, "The resource could not be found.")


def limit_and_marker(request: Request) -> tuple[int, str | None]:
    """Nova's common.get_limit_and_marker: limit capped at 1000, 400 when not a non-negative integer."""
    raw = request.query_params.get("limit")
    limit = MAX_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise HTTPError(400, "limit param must be an integer") from None
        if limit < 0:
            raise HTTPError(400, "limit param must be positive")
    return min(limit, MAX_LIMIT), request.query_params.get("marker")


def next_links(request: Request, collection: str, ids: list[Any], limit: int) -> list[dict[str, str]]:
    """A "next" link when the page is full, as Nova's _get_collection_links builds it."""
    if not ids or len(ids) != limit:
        return []
    # Every parameter kept, repeated ones (sort_key, sort_dir) too, with the marker replaced.
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "marker"]
    params.append(("marker", str(ids[-1])))
    base = str(request.base_url).rstrip("/")
    return [{"rel": "next", "href": f"{base}/v2.1/{collection}?{urlencode(params)}"}]


def parse_bool(value: Any, what: str) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise HTTPError(400, f"Invalid {what} [{value}]")


def offset_and_limit(request: Request) -> tuple[int, int]:
    """Nova's common.limited: ``offset`` and ``limit`` (capped at 1000), non-negative integers or a 400."""
    values = {}
    for name in ("offset", "limit"):
        raw = request.query_params.get(name)
        try:
            values[name] = int(raw) if raw is not None else None
        except ValueError:
            raise HTTPError(400, f"{name} param must be an integer") from None
        if values[name] is not None and values[name] < 0:
            raise HTTPError(400, f"{name} param must be positive")
    limit = values["limit"] if values["limit"] is not None else 1000
    return values["offset"] or 0, min(limit, 1000)
