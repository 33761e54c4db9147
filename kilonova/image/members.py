"""``/v2/images/{image_id}/members``: sharing an image of visibility ``shared`` with projects.

The owner adds and removes members; each member accepts or rejects the offer
itself (only accepted images show in its default listing).
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, Router, bad_request, empty_response, json_response, read_json
from kilonova.image import policy, repo, views
from kilonova.image.lookup import context, service, visible_image

STATUSES = ("pending", "accepted", "rejected")


def _member_not_found(image_id: str, member_id: str) -> HTTPError:
    return HTTPError(404, f"{member_id} is not a member of image {image_id}")


async def index(request: Request, image_id: str):
    ctx = context(request)
    image, _ = await visible_image(request, image_id)
    members = await service(request).db.read(repo.list_members, image_id)
    if not ctx.is_admin and image["owner"] != ctx.project_id:
        members = [m for m in members if m["member_id"] == ctx.project_id]
    return json_response({"members": [views.member(m) for m in members], "schema": "/v2/schemas/members"})


async def create(request: Request, image_id: str):
    ctx = context(request)
    body = await read_json(request)
    image, _ = await visible_image(request, image_id)
    policy.check_owner(ctx, image, "add_member")
    if image["visibility"] != "shared":
        raise HTTPError(403, f"Image {image_id} is not shared: only shared images have members.")
    member_id = body.get("member") if isinstance(body, dict) else None
    if not isinstance(member_id, str) or not member_id:
        raise bad_request("Member to be added not specified")
    try:
        member = await service(request).db.write(repo.add_member, image_id, member_id)
    except Conflict:
        raise HTTPError(409, f"Member {member_id} already associated with image {image_id}.") from None
    return json_response(views.member(member))


async def show(request: Request, image_id: str, member_id: str):
    ctx = context(request)
    image, _ = await visible_image(request, image_id)
    if not ctx.is_admin and ctx.project_id not in (image["owner"], member_id):
        raise _member_not_found(image_id, member_id)
    try:
        member = await service(request).db.read(repo.get_member, image_id, member_id)
    except NotFound:
        raise _member_not_found(image_id, member_id) from None
    return json_response(views.member(member))


async def update(request: Request, image_id: str, member_id: str):
    ctx = context(request)
    body = await read_json(request)
    await visible_image(request, image_id)
    if ctx.project_id != member_id or not ctx.can_write:
        raise HTTPError(403, "You are not permitted to modify the status of this member: "
                             "only the member itself can.")
    status = body.get("status") if isinstance(body, dict) else None
    if status not in STATUSES:
        raise bad_request(f"Provided object does not match schema 'member': {status!r} is not one of "
                          f"{list(STATUSES)}")
    try:
        member = await service(request).db.write(repo.update_member, image_id, member_id, status)
    except NotFound:
        raise _member_not_found(image_id, member_id) from None
    return json_response(views.member(member))


async def delete(request: Request, image_id: str, member_id: str):
    image, _ = await visible_image(request, image_id)
    policy.check_owner(context(request), image, "delete_member")
    try:
        await service(request).db.write(repo.remove_member, image_id, member_id)
    except NotFound:
        raise _member_not_found(image_id, member_id) from None
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v2/images/{image_id}/members", index)
    router.add("POST", "/v2/images/{image_id}/members", create)
    router.add("GET", "/v2/images/{image_id}/members/{member_id}", show)
    router.add("PUT", "/v2/images/{image_id}/members/{member_id}", update)
    router.add("DELETE", "/v2/images/{image_id}/members/{member_id}", delete)
