"""``POST /v2/images/{image_id}/actions/{deactivate,reactivate}``: admins hide an image's data and restore it.

Both are idempotent (deactivating a deactivated image is fine), as in Glance."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, empty_response
from kilonova.image import repo
from kilonova.image.errors import image_not_found, not_authorized
from kilonova.image.lookup import context, service, visible_image

TRANSITIONS = {"deactivate": (("active", "deactivated"), "deactivated"),
               "reactivate": (("deactivated", "active"), "active")}


async def act(request: Request, image_id: str, action: str):
    if action not in TRANSITIONS:
        raise HTTPError(404, "The resource could not be found.")
    await visible_image(request, image_id)
    if not context(request).is_admin:
        raise not_authorized(f"{action}")
    allowed, target = TRANSITIONS[action]
    try:
        await service(request).db.write(repo.set_status, image_id, allowed, target)
    except repo.BadStatus as exc:
        raise HTTPError(403, f"Not allowed to {action} image in status '{exc.args[0]}'") from None
    except NotFound:
        raise image_not_found(image_id) from None
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2/images/{image_id}/actions/{action}", act)
