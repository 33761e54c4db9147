"""What every volume handler starts with: the service, the context, and the URL's project."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.context import RequestContext
from kilonova.common.http import HTTPError


def service(request: Request):
    return request.state.app.state["service"]


def context(request: Request, project_id: str) -> RequestContext:
    """The caller; the project in the URL must be the token's, as Cinder checks (admins too: they reach
    other projects' volumes with ``all_tenants`` and quotas by the quota set's own id)."""
    ctx: RequestContext = request.state.context
    if project_id != ctx.project_id:
        raise HTTPError(400, "Malformed request url")
    return ctx


def owner_scope(ctx: RequestContext) -> str | None:
    """The project whose records the caller may reach: none for admins (every project's)."""
    return None if ctx.is_admin else ctx.project_id
