"""``/v3/{project_id}/types``: volume types and their extra specs (changed by admins only)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.volume import policy, query as Q, repo
from kilonova.volume.errors import bad_request, type_not_found
from kilonova.volume.schemas import volume_types as schemas
from kilonova.volume.validation import is_true, validate
from kilonova.volume.lookup import context, service


def _specs(value: dict | None) -> dict[str, str]:
    # Cinder keeps a null value; the column here holds text, so an empty one
    return {key: "" if item is None else item for key, item in (value or {}).items()}


async def index(request: Request, project_id: str):
    ctx = context(request, project_id)
    public_only = not ctx.is_admin
    if ctx.is_admin and "is_public" in request.query_params:
        wanted = request.query_params["is_public"]
        types = await service(request).db.read(repo.list_types, False)
        if wanted.lower() != "none":
            flag = Q.boolean(wanted, "is_public")
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


def _values(body: dict) -> dict[str, Any]:
    """A schema-checked ``volume_type``'s fields (create names its flag ``os-volume-type-access:is_public``,
    update ``is_public``)."""
    values: dict[str, Any] = {}
    if body.get("name") is not None:
        if not body["name"].strip():
            raise bad_request("Volume type name can not be empty.")
        values["name"] = body["name"].strip()
    if body.get("description") is not None:
        values["description"] = body["description"]
    for key in ("os-volume-type-access:is_public", "is_public"):
        if body.get(key) is not None:
            values["is_public"] = is_true(body[key])
    return values


async def create(request: Request, project_id: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_manage")
    body = validate(request, await read_json(request), schemas.CREATE)["volume_type"]
    values = _values(body)
    vtype = await service(request).db.write(repo.create_type, values, _specs(body.get("extra_specs")))
    return json_response({"volume_type": vtype})


async def update(request: Request, project_id: str, type_id: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:types_manage")
    values = _values(validate(request, await read_json(request), schemas.UPDATE)["volume_type"])
    if not values:
        raise bad_request("Specify volume type name, description, is_public or a combination thereof.")
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
    specs = _specs(validate(request, await read_json(request), schemas.SPECS_CREATE)["extra_specs"])
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
    body = _specs(validate(request, await read_json(request), schemas.SPECS_UPDATE))
    if list(body) != [key]:
        raise bad_request("Request body and URI mismatch")
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
