"""/v2.1/os-quota-sets: each project's limits, their defaults, and admin overrides."""
from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import parse_bool, require_admin
from kilonova.compute.api.microversions import want
from kilonova.compute import quota
from kilonova.compute.db import quotas

MAX_INT = 0x7FFFFFFF
FILTERED_2_36 = ["fixed_ips", "floating_ips", "security_group_rules", "security_groups"]
FILTERED_2_57 = FILTERED_2_36 + ["injected_files", "injected_file_content_bytes", "injected_file_path_bytes"]
_VALUE = {"type": ["integer", "string"], "pattern": r"^-?[0-9]+$", "minimum": -1, "maximum": MAX_INT}
_BOOLEAN = validation.BOOLEAN


def _filtered(request: Request) -> list[str]:
    if want(request, "2.57"):
        return FILTERED_2_57
    return FILTERED_2_36 if want(request, "2.36") else []


def _update_schema(filtered: list[str]) -> dict:
    props: dict[str, Any] = {r: _VALUE for r in quotas.RESOURCES if r not in filtered}
    props["force"] = _BOOLEAN
    return {"type": "object", "required": ["quota_set"], "additionalProperties": False,
            "properties": {"quota_set": {"type": "object", "properties": props, "additionalProperties": False}}}


_SCHEMAS = {0: _update_schema([]), 36: _update_schema(FILTERED_2_36), 57: _update_schema(FILTERED_2_57)}


def _quota_set(request: Request, values: dict[str, Any], project_id: str | None) -> dict:
    body: dict[str, Any] = {} if project_id is None else {"id": str(project_id)}
    hidden = _filtered(request)
    body.update({r: values[r] for r in quotas.RESOURCES if r not in hidden and r in values})
    return {"quota_set": body}


def _check_reader(request: Request, project_id: str, action: str) -> None:
    require_admin(request, f"os_compute_api:os-quota-sets:{action}", {"project_id": project_id})


async def show_quotas(request: Request, project_id: str):
    _check_reader(request, project_id, "show")
    svc = compute_api(request)
    await _verify_project(svc, request.state.context, project_id)
    limits = await quota.limits(svc, project_id)
    return json_response(_quota_set(request, limits, project_id))


async def show_quota_detail(request: Request, project_id: str):
    _check_reader(request, project_id, "detail")
    svc = compute_api(request)
    await _verify_project(svc, request.state.context, project_id)
    limits = await quota.limits(svc, project_id)
    usage = await quota.driver(svc).usage(project_id)
    detail = {r: {"in_use": usage.get(r, 0), "limit": limit, "reserved": 0} for r, limit in limits.items()}
    return json_response(_quota_set(request, detail, project_id))


async def show_defaults(request: Request, project_id: str):
    svc = compute_api(request)
    await _verify_project(svc, request.state.context, project_id)
    return json_response(_quota_set(request, await quota.driver(svc).defaults(), project_id))


def _check_limit(resource: str, limit: int, minimum: int) -> None:
    if limit != -1 and limit < minimum:
        raise HTTPError(400, f"Quota limit {limit} for {resource} must be greater than or equal to already used "
                             f"and reserved {minimum}.")


async def update_quotas(request: Request, project_id: str):
    require_admin(request, "os_compute_api:os-quota-sets:update")
    body = await read_json(request)
    version_key = 57 if want(request, "2.57") else 36 if want(request, "2.36") else 0
    validation.validate(_SCHEMAS[version_key], body)
    quota_set = body["quota_set"]
    force = parse_bool(quota_set.get("force", False), "force value")
    svc = compute_api(request)
    await _verify_project(svc, request.state.context, project_id)
    if not quota.driver(svc).settable:
        # As upstream with unified limits (and the no-op driver): the limits are not Nova's to change; the
        # answer shows them unchanged.
        return json_response(_quota_set(request, await quota.limits(svc, project_id), None))
    usage = await quota.driver(svc).usage(project_id) if not force else {}
    values: dict[str, int] = {}
    for resource, raw in quota_set.items():
        if resource == "force" or (not raw and raw != 0):
            continue
        limit = int(raw)
        if not -1 <= limit <= MAX_INT:
            raise HTTPError(400, f"Invalid input for field/attribute {resource}. Value: {raw}.")
        if not force:
            _check_limit(resource, limit, usage.get(resource, 0))
        values[resource] = limit
    await svc.api_db.write(quotas.set_limits, project_id, values)
    limits = await quota.limits(svc, project_id)
    return json_response(_quota_set(request, limits, None))


async def _verify_project(svc, ctx, project_id: str) -> None:
    """upstream's check that a quota is shown or set for a project identity knows (not at delete): 400 when
    identity says there is no such project; when it cannot say (unreachable, not allowed), the project is
    taken as it is."""
    try:
        response = await svc.identity.get(f"/v3/projects/{segment(project_id)}",
                                          headers={"X-Auth-Token": ctx.token})
    except httpx.HTTPError:
        return
    if response.status_code == 404:
        raise HTTPError(400, f"Project ID {project_id} is not a valid project.")


async def delete_quotas(request: Request, project_id: str):
    require_admin(request, "os_compute_api:os-quota-sets:delete")
    svc = compute_api(request)
    if quota.driver(svc).settable:  # with unified limits nothing is Nova's to delete (upstream)
        await svc.api_db.write(quotas.delete_limits, project_id)
    return empty_response(202)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-quota-sets/{project_id}", show_quotas)
    router.add("PUT", "/v2.1/os-quota-sets/{project_id}", update_quotas)
    router.add("DELETE", "/v2.1/os-quota-sets/{project_id}", delete_quotas)
    router.add("GET", "/v2.1/os-quota-sets/{project_id}/detail", show_quota_detail)
    router.add("GET", "/v2.1/os-quota-sets/{project_id}/defaults", show_defaults)
