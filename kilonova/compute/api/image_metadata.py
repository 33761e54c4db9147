"""/v2.1/images/{id}/metadata (until 2.35): an image's properties, read and written in the image service.

As upstream: the whole new set of properties is checked against the project's ``metadata_items`` quota
(403), and written as one JSON patch with the caller's token (the image service decides who may).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute import quota
from kilonova.compute.api import validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import gone_from
from kilonova.compute.api.images import get_image, headers, properties

_METADATA_BODY = {"type": "object", "properties": {"metadata": validation.METADATA}, "required": ["metadata"],
                  "additionalProperties": False}
_META_BODY = {"type": "object", "properties": {"meta": {**validation.METADATA, "minProperties": 1,
                                                         "maxProperties": 1}},
              "required": ["meta"], "additionalProperties": False}
_PATCH = "application/openstack-images-v2.1-json-patch"


async def _check_quota(request: Request, metadata: dict[str, Any]) -> None:
    if not metadata:
        return
    limit = (await quota.limits(compute_api(request), request.state.context.project_id)).get("metadata_items", -1)
    if 0 <= limit < len(metadata):
        raise HTTPError(403, "Image metadata limit exceeded")


async def _write(request: Request, image_id: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Replace the image's properties ``before`` with ``after`` (upstream's purge_props update)."""
    operations = [{"op": "remove", "path": "/" + _pointer(key)} for key in before if key not in after]
    operations += [{"op": "replace" if key in before else "add", "path": "/" + _pointer(key), "value": value}
                   for key, value in after.items() if before.get(key) != value or key not in before]
    if not operations:
        return
    response = await compute_api(request).image.patch(
        f"/v2/images/{segment(image_id)}", json=operations, headers={**headers(request), "Content-Type": _PATCH})
    if response.status_code == 403:
        raise HTTPError(403, f"Not authorized for image {image_id}.")
    if response.status_code == 404:
        raise HTTPError(404, "Image not found.")
    if response.status_code != 200:
        raise HTTPError(400, _message(response))


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return str(body.get("message") or body)[:500] if isinstance(body, dict) else str(body)[:500]


async def list_metadata(request: Request, image_id: str):
    gone_from(request, "2.36")
    return json_response({"metadata": properties(await get_image(request, image_id))})


async def show_metadata(request: Request, image_id: str, key: str):
    gone_from(request, "2.36")
    metadata = properties(await get_image(request, image_id))
    if key not in metadata:
        raise HTTPError(404, "The resource could not be found.")
    return json_response({"meta": {key: metadata[key]}})


async def create_metadata(request: Request, image_id: str):
    """POST: the given keys added to (or replacing) the image's properties; all of them answered."""
    gone_from(request, "2.36")
    body = await read_json(request)
    validation.validate(_METADATA_BODY, body)
    before = properties(await get_image(request, image_id))
    after = {**before, **body["metadata"]}
    await _check_quota(request, after)
    await _write(request, image_id, before, after)
    return json_response({"metadata": after})


async def replace_metadata(request: Request, image_id: str):
    """PUT: the image's properties become exactly the given ones."""
    gone_from(request, "2.36")
    body = await read_json(request)
    validation.validate(_METADATA_BODY, body)
    before = properties(await get_image(request, image_id))
    await _check_quota(request, body["metadata"])
    await _write(request, image_id, before, body["metadata"])
    return json_response({"metadata": body["metadata"]})


async def update_item(request: Request, image_id: str, key: str):
    gone_from(request, "2.36")
    body = await read_json(request)
    validation.validate(_META_BODY, body)
    if key not in body["meta"]:
        raise HTTPError(400, "Request body and URI mismatch")
    before = properties(await get_image(request, image_id))
    after = {**before, key: body["meta"][key]}
    await _check_quota(request, after)
    await _write(request, image_id, before, after)
    return json_response({"meta": body["meta"]})


async def delete_item(request: Request, image_id: str, key: str):
    gone_from(request, "2.36")
    before = properties(await get_image(request, image_id))
    if key not in before:
        raise HTTPError(404, "Invalid metadata key")
    await _write(request, image_id, before, {k: v for k, v in before.items() if k != key})
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/images/{image_id}/metadata", list_metadata)
    router.add("POST", "/v2.1/images/{image_id}/metadata", create_metadata)
    router.add("PUT", "/v2.1/images/{image_id}/metadata", replace_metadata)
    router.add("GET", "/v2.1/images/{image_id}/metadata/{key}", show_metadata)
    router.add("PUT", "/v2.1/images/{image_id}/metadata/{key}", update_item)
    router.add("DELETE", "/v2.1/images/{image_id}/metadata/{key}", delete_item)
