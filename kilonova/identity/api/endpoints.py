"""``/v3/endpoints`` (the catalog's endpoints)."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity.api.common import body, collection, enforce, read, self_link, write
from kilonova.identity.models import Endpoint
from kilonova.identity.store import catalog
from kilonova.identity.validation import ENABLED, ID, entity

PROPERTIES = {"service_id": ID, "interface": {"type": "string", "enum": ["public", "internal", "admin"]},
              "region_id": {"type": ["string", "null"], "maxLength": 255},
              "region": {"type": ["string", "null"], "maxLength": 255},
              "url": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[a-zA-Z0-9+.-]+:.+"},
              "enabled": ENABLED}
CREATE = entity("endpoint", PROPERTIES, ["service_id", "interface", "url"])
UPDATE = entity("endpoint", PROPERTIES)


def view(request: Request, endpoint: Endpoint) -> dict:
    return {"id": endpoint.id, "interface": endpoint.interface, "region_id": endpoint.region_id,
            "region": endpoint.region_id, "service_id": endpoint.service_id, "url": endpoint.url,
            "enabled": endpoint.enabled, "links": self_link(request, f"/v3/endpoints/{endpoint.id}")}


async def list_endpoints(request: Request):
    enforce(request, "identity:list_endpoints")
    query = request.query_params
    found = await read(request, catalog.list_endpoints, query.get("service_id"), query.get("interface"),
                       query.get("region_id"))
    return json_response(collection(request, "endpoints", [view(request, e) for e in found]))


async def show(request: Request, endpoint_id: str):
    enforce(request, "identity:get_endpoint")
    return json_response({"endpoint": view(request, await read(request, catalog.get_endpoint, endpoint_id))})


async def create(request: Request):
    enforce(request, "identity:create_endpoint")
    values = (await body(request, CREATE))["endpoint"]
    return json_response({"endpoint": view(request, await write(request, catalog.create_endpoint, values))}, 201)


async def update(request: Request, endpoint_id: str):
    enforce(request, "identity:update_endpoint")
    values = dict((await body(request, UPDATE))["endpoint"])
    if "region" in values and "region_id" not in values:
        values["region_id"] = values.pop("region")
    endpoint = await write(request, catalog.update_endpoint, endpoint_id, values)
    return json_response({"endpoint": view(request, endpoint)})


async def delete(request: Request, endpoint_id: str):
    enforce(request, "identity:delete_endpoint")
    await write(request, catalog.delete_endpoint, endpoint_id)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v3/endpoints", list_endpoints)
    router.add("POST", "/v3/endpoints", create)
    router.add("GET", "/v3/endpoints/{endpoint_id}", show)
    router.add("PATCH", "/v3/endpoints/{endpoint_id}", update)
    router.add("DELETE", "/v3/endpoints/{endpoint_id}", delete)
