"""What every image handler starts with: the service, the context, and a visible image."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.context import RequestContext
from kilonova.common.db import NotFound
from kilonova.image import policy, repo
from kilonova.image.errors import image_not_found


def service(request: Request):
    return request.state.app.state["service"]


def context(request: Request) -> RequestContext:
    return request.state.context


async def visible_image(request: Request, image_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(image, {member project: status}), or Glance's 404 when the caller may not see it."""
    db = service(request).db

    def load(session):
        return repo.get(session, image_id), repo.members(session, image_id)

    try:
        image, members = await db.read(load)
    except NotFound:
        raise image_not_found(image_id) from None
    policy.check_visible(context(request), image, set(members))
    return image, members
