"""/v2.1/os-quota-class-sets/{class}: a quota class's limits (admin only). The "default" class is the one that
counts: its limits replace [quota]'s defaults for every project without overrides of its own.

Upstream's microversions: before 2.50 neither shown nor settable are server_groups and server_group_members;
from 2.50 they are, and the nova-network ones (fixed_ips, floating_ips, security_groups,
security_group_rules, networks) are gone; from 2.57 the injected_file* ones are gone too.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response, read_json
from kilonova.compute import quota
from kilonova.compute.api import validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import require_admin
from kilonova.compute.api.microversions import want
from kilonova.compute.api.quota_sets import MAX_INT
from kilonova.compute.db import quotas

_SERVER_GROUPS = ["server_groups", "server_group_members"]
FILTERED_2_50 = ["fixed_ips", "floating_ips", "networks", "security_group_rules", "security_groups"]
FILTERED_2_57 = FILTERED_2_50 + ["injected_files", "injected_file_content_bytes", "injected_file_path_bytes"]
_VALUE = {"type": ["integer", "string"], "pattern": r"^-?[0-9]+$", "minimum": -1, "maximum": MAX_INT}


def _hidden(request: Request) -> list[str]:
    if want(request, "2.57"):
        return FILTERED_2_57
    return FILTERED_2_50 if want(request, "2.50") else _SERVER_GROUPS


def _schema(hidden: list[str]) -> dict:
    props = {resource: _VALUE for resource in quotas.RESOURCES if resource not in hidden}
    return {"type": "object", "required": ["quota_class_set"], "additionalProperties": False,
            "properties": {"quota_class_set": {"type": "object", "properties": props,
                                               "additionalProperties": False}}}


_SCHEMAS = {id(hidden): _schema(hidden) for hidden in (_SERVER_GROUPS, FILTERED_2_50, FILTERED_2_57)}


def _view(request: Request, class_name: str | None, values: dict[str, int]) -> dict[str, Any]:
    body: dict[str, Any] = {} if class_name is None else {"id": class_name}
    hidden = _hidden(request)
    body.update({r: values[r] for r in quotas.RESOURCES if r not in hidden and r in values})
    return {"quota_class_set": body}


async def show_class(request: Request, class_name: str):
    require_admin(request, "os_compute_api:os-quota-class-sets:show")
    return json_response(_view(request, class_name, await _class_quotas(compute_api(request), class_name)))


async def _class_quotas(svc, class_name: str) -> dict[str, int]:
    """A class's limits over the defaults; with unified limits (or none) upstream's driver shows the defaults
    whatever the class, as quota classes play no part there."""
    if quota.driver_name(svc.conf) != "db":
        return await quota.driver(svc).defaults()
    return await svc.api_db.read(quotas.class_quotas, class_name, svc.conf)


async def update_class(request: Request, class_name: str):
    require_admin(request, "os_compute_api:os-quota-class-sets:update")
    body = await read_json(request)
    validation.validate(_SCHEMAS[id(_hidden(request))], body)
    if len(class_name) > 255:
        raise HTTPError(400, f"quota_class_name has {len(class_name)} characters, more than 255.")
    svc = compute_api(request)
    limits = {resource: int(value) for resource, value in body["quota_class_set"].items()}
    for resource, limit in limits.items():
        if not -1 <= limit <= MAX_INT:  # a string of digits passes the schema's pattern whatever its size
            raise HTTPError(400, f"Invalid input for field/attribute {resource}. "
                                 f"Value: {body['quota_class_set'][resource]}.")
    await svc.api_db.write(quotas.set_class_limits, class_name, limits)
    return json_response(_view(request, None, await _class_quotas(svc, class_name)))  # upstream's update answers without the id


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-quota-class-sets/{class_name}", show_class)
    router.add("PUT", "/v2.1/os-quota-class-sets/{class_name}", update_class)
