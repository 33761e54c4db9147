"""``/v2/images/{image_id}/tags/{tag}``: add and delete one tag."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, bad_request, empty_response
from kilonova.image import policy, repo
from kilonova.image.errors import image_not_found
from kilonova.image.lookup import context, service, visible_image


async def add(request: Request, image_id: str, tag: str):
    image, _ = await visible_image(request, image_id)
    policy.check_owner(context(request), image, "modify_image")
    if len(tag) > 255:
        raise bad_request("Provided object does not match schema 'image': tag is longer than 255 characters")
    try:
        await service(request).db.write(repo.add_tag, image_id, tag)
    except NotFound:
        raise image_not_found(image_id) from None
    return empty_response(204)


async def remove(request: Request, image_id: str, tag: str):
    image, _ = await visible_image(request, image_id)
    policy.check_owner(context(request), image, "modify_image")
    try:
        await service(request).db.write(repo.remove_tag, image_id, tag)
    except NotFound:
        raise HTTPError(404, f"Tag {tag} not found") from None
    return empty_response(204)


def register(router: Router) -> None:
    router.add("PUT", "/v2/images/{image_id}/tags/{tag}", add)
    router.add("DELETE", "/v2/images/{image_id}/tags/{tag}", remove)
