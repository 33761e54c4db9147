"""/resource_providers/{uuid}/inventories[/{resource_class}]."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
from kilonova.placement.handlers import util
from kilonova.placement.handlers.resource_provider import (provider_body, provider_not_found,
                                                             unknown_provider_first)
from kilonova.placement.handlers.util import policy, want
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import inventories as inv

DEFAULTS = {"reserved": 0, "min_unit": 1, "max_unit": schemas.MAX_INT, "step_size": 1, "allocation_ratio": 1.0}
BASE_SCHEMA = schemas.INVENTORY
POST_SCHEMA = schemas.INVENTORY_POST
PUT_ALL_SCHEMA = schemas.INVENTORIES


def _values(data: dict) -> dict:
    values = dict(DEFAULTS)
    values.update({k: v for k, v in data.items() if k in inv.FIELDS})
    values["allocation_ratio"] = float(values["allocation_ratio"])
    return values


def _check_capacity(request: Request, uuid: str, inventories: dict[str, dict], action: str) -> None:
    """Before 1.26 reserved must stay below total; from 1.26 it may equal it."""
    for name, values in inventories.items():
        capacity = (values["total"] - values["reserved"]) * values["allocation_ratio"]
        if want(request, "1.26") and capacity < 0:
            detail = "The reserved value is greater than total."
        elif not want(request, "1.26") and capacity <= 0:
            detail = "The reserved value is greater than or equal to total."
        else:
            continue
        raise HTTPError(400, f"Unable to {action} inventory for resource provider {uuid}: Invalid inventory for "
                             f"'{name}' on resource provider '{uuid}'. {detail}")


async def _check_capacity_after_generation(request: Request, uuid: str, generation: int,
                                           inventories: dict[str, dict]) -> None:
    """_check_capacity for an update, but as upstream a missing provider (404) or a stale generation
    (409) is answered first (looked up only when the values are refused)."""
    try:
        _check_capacity(request, uuid, inventories, "update")
    except HTTPError as refusal:
        await unknown_provider_first(request, uuid, refusal, generation)


def _serialize_all(provider, records: dict[str, inv.InventoryRecord]) -> dict:
    return {"resource_provider_generation": provider.generation,
            "inventories": {name: record.as_dict() for name, record in records.items()}}


def _one(request: Request, provider, record: inv.InventoryRecord, status: int = 200,
         headers: dict | None = None) -> Response:
    body = dict(record.as_dict(), resource_provider_generation=provider.generation)
    return util.json_response(request, body, status, modified=record.updated_at or record.created_at,
                              headers=headers)


@policy("placement:resource_providers:inventories:list")
@util.json_only
async def get_inventories(request: Request, uuid: str) -> Response:
    try:
        provider, records = await util.db(request).read(inv.of_provider, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid, repeated_after=" : ") from None
    return _send_all(request, provider, records)


def _send_all(request: Request, provider, records: dict[str, inv.InventoryRecord]) -> Response:
    """From 1.15 with Cache-Control, and Last-Modified the newest record's (none without records), as upstream
    answers GET and PUT alike."""
    response = util.json_response(request, _serialize_all(provider, records), cache=False)
    modified = util.newest(*(r.updated_at or r.created_at or util.now() for r in records.values()))
    util.cache_headers(request, response, modified, dated=modified is not None)
    return response


@policy("placement:resource_providers:inventories:update")
async def set_inventories(request: Request, uuid: str) -> Response:
    data = await provider_body(request, uuid, PUT_ALL_SCHEMA)
    inventories = {name: _values(values) for name, values in data["inventories"].items()}
    await _check_capacity_after_generation(request, uuid, data["resource_provider_generation"], inventories)
    try:
        provider, records = await util.db(request).write(inv.replace_all, uuid, data["resource_provider_generation"],
                                                         inventories)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.ResourceClassNotFound as error:
        raise HTTPError(400, f"Unknown resource class in inventory for resource provider {uuid}: {error}") from None
    except exc.ConcurrentUpdate:
        raise HTTPError(409, "resource provider generation conflict", code=errors.CONCURRENT_UPDATE) from None
    except exc.InUse as error:
        raise HTTPError(409, f"update conflict: {error}", code=errors.INVENTORY_INUSE) from None
    return _send_all(request, provider, records)


@versioned("1.5", status=405)
@policy("placement:resource_providers:inventories:delete")
async def delete_inventories(request: Request, uuid: str) -> Response:
    try:
        await util.db(request).write(inv.delete_all, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.InUse as error:
        raise HTTPError(409, str(error), code=errors.INVENTORY_INUSE) from None
    except exc.ConcurrentUpdate:
        raise HTTPError(409, f"Unable to delete inventory for resource provider {uuid} because the inventory "
                             f"was updated by another process. Please retry your request.",
                        code=errors.CONCURRENT_UPDATE) from None
    return util.no_content()


@policy("placement:resource_providers:inventories:create")
async def create_inventory(request: Request, uuid: str) -> Response:
    data = await provider_body(request, uuid, POST_SCHEMA)
    name = data["resource_class"]
    values = _values(data)
    try:
        _check_capacity(request, uuid, {name: values}, "create")
    except HTTPError as refusal:
        await unknown_provider_first(request, uuid, refusal)
    try:
        provider, record = await util.db(request).write(inv.create_one, uuid, name, values)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.ResourceClassNotFound as error:
        raise HTTPError(400, f"Unable to create inventory for resource provider {uuid}: {error}") from None
    except exc.ConcurrentUpdate as error:
        raise HTTPError(409, f"Update conflict: {error}", code=errors.CONCURRENT_UPDATE) from None
    location = util.location(request, f"/resource_providers/{uuid}/inventories/{name}")
    return _one(request, provider, record, 201, headers=location)


@policy("placement:resource_providers:inventories:show")
@util.json_only
async def get_inventory(request: Request, uuid: str, resource_class: str) -> Response:
    try:
        provider, records = await util.db(request).read(inv.of_provider, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid, repeated_after=" : ") from None
    if resource_class not in records:
        raise HTTPError(404, f"No inventory of class {resource_class} for {uuid}")
    return _one(request, provider, records[resource_class])


@policy("placement:resource_providers:inventories:update")
async def update_inventory(request: Request, uuid: str, resource_class: str) -> Response:
    data = await provider_body(request, uuid, BASE_SCHEMA)
    values = _values(data)
    await _check_capacity_after_generation(request, uuid, data["resource_provider_generation"],
                                           {resource_class: values})
    try:
        provider, record = await util.db(request).write(inv.update_one, uuid, resource_class,
                                                        data["resource_provider_generation"], values)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.ResourceClassNotFound as error:   # upstream's NotFound raised past the handler
        raise HTTPError(404, str(error), bare=True) from None
    except exc.InventoryNotFound as error:
        raise HTTPError(400, str(error)) from None
    except exc.ConcurrentUpdate:
        raise HTTPError(409, "resource provider generation conflict", code=errors.CONCURRENT_UPDATE) from None
    return _one(request, provider, record)


@policy("placement:resource_providers:inventories:delete")
async def delete_inventory(request: Request, uuid: str, resource_class: str) -> Response:
    try:
        await util.db(request).write(inv.delete_one, uuid, resource_class)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.InventoryNotFound as error:   # upstream says it twice
        raise HTTPError(404, f"{error}: {error}") from None
    except (exc.InUse, exc.ConcurrentUpdate) as error:
        raise HTTPError(409, f"Unable to delete inventory of class {resource_class}: {error}",
                        code=errors.CONCURRENT_UPDATE) from None
    return util.no_content()


def register(router: Router) -> None:
    base = "/resource_providers/{uuid}/inventories"
    router.add("GET", base, get_inventories)
    router.add("POST", base, create_inventory)
    router.add("PUT", base, set_inventories)
    router.add("DELETE", base, delete_inventories)
    router.add("GET", base + "/{resource_class}", get_inventory)
    router.add("PUT", base + "/{resource_class}", update_inventory)
    router.add("DELETE", base + "/{resource_class}", delete_inventory)
