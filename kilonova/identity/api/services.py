"""``/v3/services`` (the catalog's services)."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity.api.common import body, collection, enforce, read, self_link, write
from kilonova.identity.models import CatalogService
from kilonova.identity.store import catalog
from kilonova.identity.validation import DESCRIPTION, ENABLED, entity

TYPE = {"type": "string", "minLength": 1, "maxLength": 255}
PROPERTIES = {"type": TYPE, "name": {"type": ["string", "null"], "maxLength": 255}, "description": DESCRIPTION,
              "enabled": ENABLED}
CREATE = entity("service", PROPERTIES, ["type"])
UPDATE = entity("service", PROPERTIES)


def view(request: Request, service: CatalogService) -> dict:
    result = {"id": service.id, "type": service.type, "enabled": service.enabled,
              "links": self_link(request, f"/v3/services/{service.id}")}
    if service.name is not None:
        result["name"] = service.name
    if service.description is not None:
        result["description"] = service.description
    return result


async def list_services(request: Request):
    enforce(request, "identity:list_services")
    found = await read(request, catalog.list_services, request.query_params.get("type"),
                       request.query_params.get("name"))
    return json_response(collection(request, "services", [view(request, s) for s in found]))


async def show(request: Request, service_id: str):
    enforce(request, "identity:get_service")
    return json_response({"service": view(request, await read(request, catalog.get_service, service_id))})


async def create(request: Request):
    enforce(request, "identity:create_service")
    values = (await body(request, CREATE))["service"]
    return json_response({"service": view(request, await write(request, catalog.create_service, values))}, 201)


async def update(request: Request, service_id: str):
    enforce(request, "identity:update_service")
    values = (await body(request, UPDATE))["service"]
    service = await write(request, catalog.update_service, service_id, values)
    return json_response({"service": view(request, service)})


async def delete(request: Request, service_id: str):
    enforce(request, "identity:delete_service")
    await write(request, catalog.delete_service, service_id)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v3/services", list_services)
    router.add("POST", "/v3/services", create)
    router.add("GET", "/v3/services/{service_id}", show)
    router.add("PATCH", "/v3/services/{service_id}", update)
    router.add("DELETE", "/v3/services/{service_id}", delete)
