"""/v2.1/images (until 2.35; 404 from 2.36): the image service's images in Nova's older shape.

Each call goes to the image service with the caller's own token, so what the caller sees and may delete is
the image service's decision, as upstream (Nova checks no policy of its own here). A Glance v2 image is
translated as upstream's image API does: the attributes outside Glance's core set are its ``metadata``.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, Router, empty_response, json_response
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import MAX_LIMIT, gone_from, next_links
from kilonova.compute.api.views import links

# Glance v2's base image attributes: everything else on an image is a property (Nova's "metadata").
CORE = frozenset({"id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
                  "os_hash_value", "owner", "size", "virtual_size", "container_format", "disk_format", "created_at",
                  "updated_at", "tags", "direct_url", "min_ram", "min_disk", "self", "file", "schema", "locations",
                  "stores"})
_STATUS = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING", "deleted": "DELETED",
           "pending_delete": "DELETED", "killed": "ERROR"}
_PROGRESS = {"queued": 25, "saving": 50, "active": 100}
# Nova's query names and the image service's filters they become.
_FILTERS = {"name": "name", "status": "status", "changes-since": "changes-since", "server": "property-instance_uuid",
            "type": "property-image_type", "minRam": "min_ram", "minDisk": "min_disk"}
NOT_FOUND = "Image not found."


def headers(request: Request) -> dict[str, str]:
    return {"X-Auth-Token": request.state.context.token}


def properties(image: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in image.items() if key not in CORE}


async def get_image(request: Request, image_id: str) -> dict[str, Any]:
    response = await compute_api(request).image.get(f"/v2/images/{segment(image_id)}", headers=headers(request))
    if response.status_code == 403:
        raise HTTPError(403, f"Not authorized for image {image_id}.")
    if response.status_code != 200:
        raise HTTPError(404, NOT_FOUND)
    return response.json()


def _date(value: str | None) -> str | None:
    """Upstream's isotime: to the second, with a Z."""
    return None if value is None else value[:19] + "Z"


def _image_links(request: Request, image_id: str) -> list[dict[str, str]]:
    glance = str(compute_api(request).image.base_url).rstrip("/")
    return links(request, "images", image_id) + [
        {"rel": "alternate", "type": "application/vnd.openstack.image", "href": f"{glance}/images/{image_id}"}]


def basic(request: Request, image: dict[str, Any]) -> dict[str, Any]:
    return {"id": image["id"], "name": image.get("name"), "links": _image_links(request, image["id"])}


def detail(request: Request, image: dict[str, Any]) -> dict[str, Any]:
    metadata = properties(image)
    body = {"id": image["id"], "name": image.get("name"), "minRam": int(image.get("min_ram") or 0),
            "minDisk": int(image.get("min_disk") or 0), "metadata": metadata,
            "created": _date(image.get("created_at")), "updated": _date(image.get("updated_at")),
            "status": _STATUS.get(image.get("status"), "UNKNOWN"), "progress": _PROGRESS.get(image.get("status"), 0),
            "OS-EXT-IMG-SIZE:size": image.get("size") or 0, "links": _image_links(request, image["id"])}
    server = metadata.get("instance_uuid")
    if server is not None:
        body["server"] = {"id": server, "links": links(request, "servers", server)}
    auto_disk_config = metadata.get("auto_disk_config")
    if auto_disk_config is not None:
        body["OS-DCF:diskConfig"] = "AUTO" if str(auto_disk_config).strip().lower() in (
            "1", "t", "true", "on", "y", "yes") else "MANUAL"
    return body


def _query(request: Request) -> tuple[dict[str, str], int | None]:
    """The image service's query for Nova's filters (upstream's translation, quirks included), and the limit."""
    params = request.query_params
    filters: dict[str, str] = {}
    for name in params:
        if name in _FILTERS or name.startswith("property-"):
            filters[_FILTERS.get(name, name)] = params[name]
    server = filters.get("property-instance_uuid")
    if server is not None and "/" in server:
        filters["property-instance_uuid"] = server.rsplit("/", 1)[1]
    if "status" in filters:
        filters["status"] = filters["status"].lower()
    query: dict[str, str] = {}
    for name, value in filters.items():
        if name.startswith("property-"):
            query[name.lstrip("property-")] = value  # upstream strips these characters, not the prefix
        elif name == "changes-since":
            query["updated_at"] = "gte:" + value
        else:
            query[name] = value
    limit = None
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError:
            raise HTTPError(400, "limit param must be an integer") from None
        if limit < 0:
            raise HTTPError(400, "limit param must be positive")
    if params.get("marker"):
        query["marker"] = params["marker"]
    return query, limit


async def _list(request: Request) -> tuple[list[dict[str, Any]], int]:
    gone_from(request, "2.36")
    query, limit = _query(request)
    svc = compute_api(request)
    found: list[dict[str, Any]] = []
    path: str | None = "/v2/images"
    while path is not None and (limit is None or len(found) < limit):
        if limit is not None:
            query["limit"] = str(min(limit - len(found), MAX_LIMIT))
        response = await svc.image.get(path, params=query if path == "/v2/images" else None,
                                       headers=headers(request))
        if response.status_code != 200:
            message = response.json().get("message", response.text) if response.headers.get(
                "content-type", "").startswith("application/json") else response.text
            raise HTTPError(400, str(message)[:500])
        page = response.json()
        found.extend(page.get("images", []))
        path = page.get("next")
    return found, min(limit if limit is not None else MAX_LIMIT, MAX_LIMIT)


async def list_images(request: Request):
    images, limit = await _list(request)
    return _listing(request, [basic(request, image) for image in images], "images", limit)


async def list_images_detail(request: Request):
    images, limit = await _list(request)
    return _listing(request, [detail(request, image) for image in images], "images/detail", limit)


def _listing(request: Request, images: list[dict[str, Any]], collection: str, limit: int):
    body: dict[str, Any] = {"images": images}
    page_links = next_links(request, collection, [image["id"] for image in images], limit)
    if page_links:
        body["images_links"] = page_links
    return json_response(body)


async def show_image(request: Request, image_id: str):
    gone_from(request, "2.36")
    return json_response({"image": detail(request, await get_image(request, image_id))})


async def delete_image(request: Request, image_id: str):
    gone_from(request, "2.36")
    response = await compute_api(request).image.delete(f"/v2/images/{segment(image_id)}", headers=headers(request))
    if response.status_code == 403:
        raise HTTPError(403, "You are not allowed to delete the image.")
    if response.status_code not in (200, 204):
        raise HTTPError(404, NOT_FOUND)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/images", list_images)
    router.add("GET", "/v2.1/images/detail", list_images_detail)
    router.add("GET", "/v2.1/images/{image_id}", show_image)
    router.add("DELETE", "/v2.1/images/{image_id}", delete_image)

