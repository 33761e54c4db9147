"""``/v3/regions``."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity.api.common import body, collection, enforce, read, self_link, write
from kilonova.identity.models import Region
from kilonova.identity.store import catalog
from kilonova.identity.validation import DESCRIPTION, entity

PROPERTIES = {"id": {"type": "string", "minLength": 1, "maxLength": 255}, "description": DESCRIPTION,
              "parent_region_id": {"type": ["string", "null"], "maxLength": 255}}
CREATE = {"type": "object", "required": ["region"], "properties": {"region": {
    "type": "object", "properties": PROPERTIES}}}
UPDATE = entity("region", {k: v for k, v in PROPERTIES.items() if k != "id"})


def view(request: Request, region: Region) -> dict:
    return {"id": region.id, "description": region.description or "", "parent_region_id": region.parent_region_id,
            "links": self_link(request, f"/v3/regions/{region.id}")}


async def list_regions(request: Request):
    enforce(request, "identity:list_regions")
    found = await read(request, catalog.list_regions, request.query_params.get("parent_region_id"))
    return json_response(collection(request, "regions", [view(request, r) for r in found]))


async def show(request: Request, region_id: str):
    enforce(request, "identity:get_region")
    return json_response({"region": view(request, await read(request, catalog.get_region, region_id))})


async def create(request: Request, region_id: str | None = None):
    enforce(request, "identity:create_region")
    values = dict((await body(request, CREATE))["region"])
    if region_id is not None:
        values["id"] = region_id
    return json_response({"region": view(request, await write(request, catalog.create_region, values))}, 201)


async def update(request: Request, region_id: str):
    enforce(request, "identity:update_region")
    values = (await body(request, UPDATE))["region"]
    return json_response({"region": view(request, await write(request, catalog.update_region, region_id, values))})


async def delete(request: Request, region_id: str):
    enforce(request, "identity:delete_region")
    await write(request, catalog.delete_region, region_id)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v3/regions", list_regions)
    router.add("POST", "/v3/regions", create)
    router.add("GET", "/v3/regions/{region_id}", show)
    router.add("PUT", "/v3/regions/{region_id}", create)
    router.add("PATCH", "/v3/regions/{region_id}", update)
    router.add("DELETE", "/v3/regions/{region_id}", delete)
