"""``/v3/roles``."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity.api.common import body, collection, enforce, read, self_link, split_extra, write
from kilonova.identity.models import Role
from kilonova.identity.store import roles
from kilonova.identity.validation import DESCRIPTION, LONG_NAME, NULLABLE_ID, entity

KNOWN = ("name", "description", "domain_id")
IGNORED = ("id", "links", "options")
PROPERTIES = {"name": LONG_NAME, "description": DESCRIPTION, "domain_id": NULLABLE_ID,
              "options": {"type": "object"}}
CREATE = entity("role", PROPERTIES, ["name"])
UPDATE = entity("role", PROPERTIES)


def view(request: Request, role: Role) -> dict:
    return {"id": role.id, "name": role.name, "domain_id": role.domain_id, "description": role.description,
            "options": {}, **(role.extra or {}), "links": self_link(request, f"/v3/roles/{role.id}")}


async def list_roles(request: Request):
    enforce(request, "identity:list_roles")
    found = await read(request, roles.list_roles, name=request.query_params.get("name"))
    return json_response(collection(request, "roles", [view(request, r) for r in found]))


async def show(request: Request, role_id: str):
    enforce(request, "identity:get_role")
    return json_response({"role": view(request, await read(request, roles.get, role_id))})


async def create(request: Request):
    enforce(request, "identity:create_role")
    values = split_extra((await body(request, CREATE))["role"], KNOWN, IGNORED)
    return json_response({"role": view(request, await write(request, roles.create, values))}, 201)


async def update(request: Request, role_id: str):
    enforce(request, "identity:update_role")
    values = split_extra((await body(request, UPDATE))["role"], KNOWN, IGNORED, ("id",))
    return json_response({"role": view(request, await write(request, roles.update, role_id, values))})


async def delete(request: Request, role_id: str):
    enforce(request, "identity:delete_role")
    await write(request, roles.delete, role_id)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v3/roles", list_roles)
    router.add("POST", "/v3/roles", create)
    router.add("GET", "/v3/roles/{role_id}", show)
    router.add("PATCH", "/v3/roles/{role_id}", update)
    router.add("DELETE", "/v3/roles/{role_id}", delete)
