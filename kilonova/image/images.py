"""``/v2/images`` and ``/v2/images/{image_id}``: create, list, show, update (JSON patch), delete."""
from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, Router, bad_request, empty_response, json_response, read_json
from kilonova.image import patch, policy, repo, time_filters, validation, views
from kilonova.image.errors import image_not_found
from kilonova.image.lookup import context, service, visible_image

DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
VISIBILITY_FILTERS = {"public", "private", "shared", "community", "all"}
MEMBER_STATUSES = {"pending", "accepted", "rejected", "all"}
COLUMN_FILTERS = ("name", "status", "owner", "disk_format", "container_format", "id")
BOOL_FILTERS = ("protected", "os_hidden")
NOT_PROPERTY_FILTERS = {"limit", "marker", "sort_key", "sort_dir", "sort", "visibility", "member_status", "tag",
                        "size_min", "size_max", "created_at", "updated_at", *COLUMN_FILTERS, *BOOL_FILTERS}


async def create(request: Request):
    ctx = context(request)
    core, properties, tags = validation.new_image(await read_json(request))
    policy.check_create(ctx, core)
    row = {"id": core.pop("id", None) or str(uuid.uuid4()), "owner": core.pop("owner", None) or ctx.project_id,
           "visibility": core.pop("visibility", None) or "private", "status": "queued", **core}
    try:
        created = await service(request).db.write(repo.create, row, properties, tags)
    except Conflict:
        raise HTTPError(409, f"Image with identifier {row['id']} already exists!") from None
    return json_response(views.image(created), status=201,
                         headers={"Location": f"{str(request.base_url).rstrip('/')}/v2/images/{row['id']}"})


async def show(request: Request, image_id: str):
    image, _ = await visible_image(request, image_id)
    return json_response(views.image(image))


async def update(request: Request, image_id: str):
    ctx = context(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip()
    if media_type not in patch.MEDIA_TYPES:
        raise HTTPError(415, f"Unsupported Content-Type {media_type or '(none)'}",
                        headers={"Accept-Patch": ", ".join(reversed(patch.MEDIA_TYPES))})
    operations = await read_json(request)
    image, _ = await visible_image(request, image_id)
    policy.check_owner(ctx, image, "modify_image")
    before = patch.writable_view(image)
    after = patch.apply(before, operations)
    validation.check_schema(after)
    _check_changes(ctx, image, before, after)
    core, properties, tags = validation.split(after)
    changed = {k: v for k, v in core.items() if before.get(k) != v}
    try:
        updated = await service(request).db.write(repo.update, image_id, changed, properties, tags)
    except NotFound:
        raise image_not_found(image_id) from None
    return json_response(views.image(updated))


def _check_changes(ctx, image: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> None:
    if after["visibility"] != before["visibility"]:
        policy.check_visibility_change(ctx, after["visibility"])
    if after["owner"] != before["owner"] and not ctx.is_admin:
        raise HTTPError(403, "Owner can't be updated by non admin.")
    for key in ("disk_format", "container_format"):
        if after[key] != before[key] and image["status"] != "queued":
            raise HTTPError(403, f"Attribute {key} can be only replaced for a queued image.")


async def delete(request: Request, image_id: str):
    ctx = context(request)
    svc = service(request)
    image, _ = await visible_image(request, image_id)
    policy.check_owner(ctx, image, "delete_image")
    if image["protected"]:
        raise HTTPError(403, f"Image {image_id} is protected and cannot be deleted.")
    try:
        await svc.db.write(repo.delete, image_id)
    except NotFound:
        raise image_not_found(image_id) from None
    await svc.store.delete(image_id)
    return empty_response(204)


async def index(request: Request):
    ctx = context(request)
    params = request.query_params
    limit = _limit(params.get("limit"))
    visibility = params.get("visibility")
    if visibility is not None and visibility not in VISIBILITY_FILTERS:
        raise bad_request(f"Invalid visibility value: {visibility}")
    member_status = params.get("member_status", "accepted")
    if member_status not in MEMBER_STATUSES:
        raise bad_request(f"Invalid status value: {member_status}")
    times = time_filters.from_query(params)
    images = await service(request).db.read(
        repo.list_images, project_id=ctx.project_id, is_admin=ctx.is_admin, visibility=visibility,
        member_status=member_status, filters=_filters(params), tags=params.getlist("tag"),
        properties={k: v for k, v in params.items() if k not in NOT_PROPERTY_FILTERS}, sort=_sort(params))
    images = time_filters.filtered(_size_filtered(images, params), times)
    page, more = _page(images, params.get("marker"), limit)
    body: dict[str, Any] = {"images": [views.image(image) for image in page], "first": "/v2/images",
                            "schema": "/v2/schemas/images"}
    if more:
        rest = [(k, v) for k, v in params.multi_items() if k not in ("marker", "limit")]
        body["next"] = "/v2/images?" + urlencode([("marker", page[-1]["id"]), ("limit", limit), *rest])
    return json_response(body)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request("limit param must be an integer") from None
    if limit < 0:
        raise bad_request("limit param must be positive")
    return min(limit, MAX_LIMIT)


def _filters(params) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for key in COLUMN_FILTERS:
        value = params.get(key)
        if value is not None:
            filters[key] = value[3:].split(",") if value.startswith("in:") else value
    for key in BOOL_FILTERS:
        value = params.get(key)
        if value is not None:
            if value.lower() not in ("true", "false"):
                raise bad_request(f"Invalid value for {key}: {value}")
            filters[key] = value.lower() == "true"
    filters.setdefault("os_hidden", False)
    return filters


def _size_filtered(images: list[dict], params) -> list[dict]:
    for key, keep in (("size_min", lambda size, bound: size >= bound), ("size_max", lambda size, bound: size <= bound)):
        if params.get(key) is not None:
            try:
                bound = int(params[key])
            except ValueError:
                raise bad_request(f"Invalid value for {key}: {params[key]}") from None
            images = [i for i in images if i["size"] is not None and keep(i["size"], bound)]
    return images


def _sort(params) -> list[tuple[str, str]]:
    if params.get("sort"):
        pairs = []
        for item in params["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys = params.getlist("sort_key") or ["created_at"]
        dirs = params.getlist("sort_dir") or ["desc"]
        pairs = [(key, dirs[min(i, len(dirs) - 1)]) for i, key in enumerate(keys)]
    for key, direction in pairs:
        if key not in repo.SORT_KEYS:
            raise bad_request(f"Invalid sort key: {key}. It must be one of the following: "
                              + ", ".join(sorted(repo.SORT_KEYS)) + ".")
        if direction not in ("asc", "desc"):
            raise bad_request(f"Invalid sort direction: {direction}")
    return pairs


def _page(images: list[dict], marker: str | None, limit: int) -> tuple[list[dict], bool]:
    start = 0
    if marker:
        ids = [image["id"] for image in images]
        if marker not in ids:
            raise bad_request(f"Invalid marker. Image {marker} could not be found.")
        start = ids.index(marker) + 1
    page = images[start:start + limit]
    return page, start + limit < len(images)


def register(router: Router) -> None:
    router.add("POST", "/v2/images", create)
    router.add("GET", "/v2/images", index)
    router.add("GET", "/v2/images/{image_id}", show)
    router.add("PATCH", "/v2/images/{image_id}", update)
    router.add("DELETE", "/v2/images/{image_id}", delete)
