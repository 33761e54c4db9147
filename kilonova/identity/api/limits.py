"""``/v3/registered_limits``, ``/v3/limits`` and ``/v3/limits/model``: Keystone's unified limits (flat model).

Anyone with a token reads registered limits and the model; a project's members read its limits (a list is
narrowed to the caller's project), admins read them all; only admins write.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity import policy
from kilonova.identity.api.common import body, collection, context, enforce, read, self_link, write
from kilonova.identity.models import RegisteredLimit
from kilonova.identity.store import limits as store

MODEL = {"name": "flat",
         "description": "Limit enforcement and validation does not take project hierarchy into consideration."}
_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-zA-Z0-9-_]+$"}
_NULLABLE_ID = {"type": ["string", "null"], "minLength": 1, "maxLength": 64}
_REGION = {"type": ["string", "null"], "minLength": 1, "maxLength": 255}
_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"[\S]+"}
_LIMIT = {"type": "integer", "minimum": -1, "maximum": 0x7FFFFFFF}
_DESCRIPTION = {"type": ["string", "null"]}
_REGISTERED_PROPS = {"service_id": _ID, "region_id": _REGION, "resource_name": _NAME, "default_limit": _LIMIT,
                     "description": _DESCRIPTION}
REGISTERED_CREATE = {"type": "object", "required": ["registered_limits"], "properties": {"registered_limits": {
    "type": "array", "minItems": 1, "items": {
        "type": "object", "properties": _REGISTERED_PROPS, "additionalProperties": False,
        "required": ["service_id", "resource_name", "default_limit"]}}}}
REGISTERED_UPDATE = {"type": "object", "required": ["registered_limit"], "properties": {"registered_limit": {
    "type": "object", "properties": _REGISTERED_PROPS, "additionalProperties": False}}}
_LIMIT_PROPS = {"service_id": _ID, "region_id": _REGION, "resource_name": _NAME, "resource_limit": _LIMIT,
                "description": _DESCRIPTION, "project_id": _NULLABLE_ID, "domain_id": _NULLABLE_ID}
_BASE = ["service_id", "resource_name", "resource_limit"]
LIMITS_CREATE = {"type": "object", "required": ["limits"], "properties": {"limits": {
    "type": "array", "minItems": 1, "items": {
        "type": "object", "properties": _LIMIT_PROPS, "additionalProperties": False, "required": _BASE,
        "oneOf": [{"required": _BASE + ["project_id"]}, {"required": _BASE + ["domain_id"]}]}}}}
LIMIT_UPDATE = {"type": "object", "required": ["limit"], "properties": {"limit": {
    "type": "object", "properties": {"resource_limit": _LIMIT, "description": _DESCRIPTION},
    "additionalProperties": False}}}


def _filters(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {name: request.query_params[name] for name in names if name in request.query_params}


def registered_view(request: Request, row: RegisteredLimit) -> dict:
    return {"id": row.id, "service_id": row.service_id, "region_id": row.region_id,
            "resource_name": row.resource_name, "default_limit": row.default_limit, "description": row.description,
            "links": self_link(request, f"/v3/registered_limits/{row.id}")}


def limit_view(request: Request, limit: dict) -> dict:
    return {**limit, "links": self_link(request, f"/v3/limits/{limit['id']}")}


# -- registered limits --------------------------------------------------------------------------

async def list_registered(request: Request):
    enforce(request, "identity:list_registered_limits")
    rows = await read(request, store.list_registered_limits,
                      _filters(request, ("service_id", "region_id", "resource_name")))
    return json_response(collection(request, "registered_limits", [registered_view(request, r) for r in rows]))


async def create_registered(request: Request):
    enforce(request, "identity:create_registered_limits")
    items = (await body(request, REGISTERED_CREATE))["registered_limits"]
    rows = await write(request, store.create_registered_limits, items)
    return json_response({"registered_limits": [registered_view(request, r) for r in rows]}, 201)


async def show_registered(request: Request, registered_limit_id: str):
    enforce(request, "identity:get_registered_limit")
    row = await read(request, store.get_registered_limit, registered_limit_id)
    return json_response({"registered_limit": registered_view(request, row)})


async def update_registered(request: Request, registered_limit_id: str):
    enforce(request, "identity:update_registered_limit")
    values = (await body(request, REGISTERED_UPDATE))["registered_limit"]
    row = await write(request, store.update_registered_limit, registered_limit_id, values)
    return json_response({"registered_limit": registered_view(request, row)})


async def delete_registered(request: Request, registered_limit_id: str):
    enforce(request, "identity:delete_registered_limit")
    await write(request, store.delete_registered_limit, registered_limit_id)
    return empty_response(204)


# -- limits -------------------------------------------------------------------------------------

async def list_limits(request: Request):
    enforce(request, "identity:list_limits")
    filters = _filters(request, ("service_id", "region_id", "resource_name", "project_id", "domain_id"))
    ctx = context(request)
    if not policy.admin(ctx, {}):  # as Keystone for a project-scoped token: that project's limits only
        filters["project_id"] = ctx.project_id or ""
    found = await read(request, store.list_limits, filters)
    return json_response(collection(request, "limits", [limit_view(request, limit) for limit in found]))


async def create_limits(request: Request):
    enforce(request, "identity:create_limits")
    items = (await body(request, LIMITS_CREATE))["limits"]
    created = await write(request, store.create_limits, items)
    return json_response({"limits": [limit_view(request, limit) for limit in created]}, 201)


async def _visible_limit(request: Request, limit_id: str) -> dict:
    """The limit, after the get_limit rule: a non-admin is refused (403) any limit not of its project, and
    one that does not exist (the rule finds no project to match, as Keystone's)."""
    if policy.admin(context(request), {}):
        return await read(request, store.get_limit, limit_id)
    try:
        limit = await read(request, store.get_limit, limit_id)
    except Exception:  # noqa: BLE001 - the 404: the rule decides first
        limit = {}
    enforce(request, "identity:get_limit", **limit)
    return limit


async def show_limit(request: Request, limit_id: str):
    return json_response({"limit": limit_view(request, await _visible_limit(request, limit_id))})


async def update_limit(request: Request, limit_id: str):
    enforce(request, "identity:update_limit")
    values = (await body(request, LIMIT_UPDATE))["limit"]
    return json_response({"limit": limit_view(request, await write(request, store.update_limit, limit_id, values))})


async def delete_limit(request: Request, limit_id: str):
    enforce(request, "identity:delete_limit")
    await write(request, store.delete_limit, limit_id)
    return empty_response(204)


async def show_model(request: Request):
    enforce(request, "identity:get_limit_model")
    return json_response({"model": MODEL})


def register(router: Router) -> None:
    router.add("GET", "/v3/registered_limits", list_registered)
    router.add("POST", "/v3/registered_limits", create_registered)
    router.add("GET", "/v3/registered_limits/{registered_limit_id}", show_registered)
    router.add("PATCH", "/v3/registered_limits/{registered_limit_id}", update_registered)
    router.add("DELETE", "/v3/registered_limits/{registered_limit_id}", delete_registered)
    router.add("GET", "/v3/limits", list_limits)
    router.add("POST", "/v3/limits", create_limits)
    router.add("GET", "/v3/limits/model", show_model)
    router.add("GET", "/v3/limits/{limit_id}", show_limit)
    router.add("PATCH", "/v3/limits/{limit_id}", update_limit)
    router.add("DELETE", "/v3/limits/{limit_id}", delete_limit)
