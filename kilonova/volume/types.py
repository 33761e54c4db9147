"""``/v3/{project_id}/types``: volume types and their extra specs (changed by admins only)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.volume import policy, repo, validation as V
from kilonova.volume.errors import type_not_found
from kilonova.volume.lookup import context, service


def _specs(value: Any) -> dict[str, str]:
    return V.metadata(value, "extra_specs")


async def index(request: Request, project_id: str):
    ctx = context(request, project_id)
    public_only = not ctx.is_admin
    if ctx.is_admin and "is_public" in request.query_params:
        wanted = request.query_params["is_public"]
        types = await service(request).db.read(repo.list_types, False)
        if wanted.lower() != "none":
            flag = V.boolean(wanted, "is_public")
            types = [t for t in types if t["is_public"] == flag]
        return json_response({"volume_types": types})
    return json_response({"volume_types": await service(request).db.read(repo.list_types, public_only)})


async def _visible(request: Request, ctx, type_id: str) -> dict[str, Any]:
    if type_id == "default":
        type_id = repo.DEFAULT_TYPE_ID
    vtype = await service(request).db.read(repo.get_type, type_id)
    if not vtype["is_public"] and not ctx.is_admin:
        raise type_not_found(type_id)
    return vtype


async def show(request: Request, project_id: str, type_id: str):
    ctx = context(request, project_id)
    return json_response({"volume_type": await _visible(request, ctx, type_id)})


def _values(body: dict, creating: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if creating or "name" in body:
        name = V.text(body.get("name"), "name")
        if not name or not name.strip():
            raise V.bad_request("Volume type name can not be empty.")
        values["name"] = name.strip()
    if "description" in body:
        values["description"] = V.text(body["description"], "description")
    for key in ("os-volume-type-access:is_public", "is_public"):
        if key in body:
            values["is_public"] = V.boolean(body[key], key)
    return values


async def create(request: Request, project_id: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_manage")
    body = V.body_part(await read_json(request), "volume_type")
    values = _values(body, creating=True)
    vtype = await service(request).db.write(repo.create_type, values, _specs(body.get("extra_specs")))
    return json_response({"volume_type": vtype})


async def update(request: Request, project_id: str, type_id: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_manage")
    values = _values(V.body_part(await read_json(request), "volume_type"), creating=False)
    if not values:
        raise V.bad_request("Specify volume type name, description, is_public or a combination thereof.")
    return json_response({"volume_type": await service(request).db.write(repo.update_type, type_id, values)})


async def delete(request: Request, project_id: str, type_id: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_manage")
    await service(request).db.write(repo.delete_type, type_id)
    return empty_response(202)


async def specs_index(request: Request, project_id: str, type_id: str):
    ctx = context(request, project_id)
    return json_response({"extra_specs": (await _visible(request, ctx, type_id))["extra_specs"]})


async def specs_create(request: Request, project_id: str, type_id: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_extra_specs:create")
    specs = _specs(V.body_part(await read_json(request), "extra_specs"))
    await service(request).db.write(repo.set_specs, type_id, specs)
    return json_response({"extra_specs": specs})


async def specs_show(request: Request, project_id: str, type_id: str, key: str):
    ctx = context(request, project_id)
    specs = (await _visible(request, ctx, type_id))["extra_specs"]
    if key not in specs:
        raise HTTPError(404, f"Volume Type {type_id} has no extra specs with key {key}.")
    return json_response({key: specs[key]})


async def specs_update(request: Request, project_id: str, type_id: str, key: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_extra_specs:update")
    body = _specs(await read_json(request))
    if list(body) != [key]:
        raise V.bad_request("Request body and URI mismatch")
    await service(request).db.write(repo.set_specs, type_id, body)
    return json_response(body)


async def specs_delete(request: Request, project_id: str, type_id: str, key: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_extra_specs:delete")
    await service(request).db.write(repo.delete_spec, type_id, key)
    return empty_response(202)


def register(router: Router) -> None:
    prefix = "/v3/{project_id}/types"
    router.add("GET", prefix, index)
    router.add("POST", prefix, create)
    router.add("GET", f"{prefix}/{{type_id}}", show)
    router.add("PUT", f"{prefix}/{{type_id}}", update)
    router.add("DELETE", f"{prefix}/{{type_id}}", delete)
    router.add("GET", f"{prefix}/{{type_id}}/extra_specs", specs_index)
    router.add("POST", f"{prefix}/{{type_id}}/extra_specs", specs_create)
    router.add("GET", f"{prefix}/{{type_id}}/extra_specs/{{key}}", specs_show)
    router.add("PUT", f"{prefix}/{{type_id}}/extra_specs/{{key}}", specs_update)
    router.add("DELETE", f"{prefix}/{{type_id}}/extra_specs/{{key}}", specs_delete)
