"""/v2.1/os-server-groups: groups of servers the scheduler keeps together or apart.

One policy per group: ``affinity`` and ``anti-affinity`` (2.1), ``soft-affinity`` and ``soft-anti-affinity``
(2.15); before 2.64 it is given and shown as a one-item ``policies`` list (with an always empty
``metadata``), from 2.64 as ``policy`` with ``rules`` (``max_server_per_host``, anti-affinity only).
``project_id`` and ``user_id`` are shown from 2.13. Members are the servers created with the ``group``
scheduler hint that are not deleted.
"""
from __future__ import annotations

import copy
import uuid as uuidlib
from typing import Any

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import common
from kilonova.compute.api import query_params, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute import quota
from kilonova.compute.db import server_groups

HARD = ["anti-affinity", "affinity"]
SOFT = ["soft-anti-affinity", "soft-affinity"]

_ALL_PROJECTS = "os_compute_api:os-server-groups:index:all_projects"


def _create_schema(policies: list[str]) -> dict:
    listed = {"type": "array", "items": [{"type": "string", "enum": policies}], "uniqueItems": True,
              "minItems": 1, "maxItems": 1, "additionalItems": False}
    group = {"type": "object", "properties": {"name": validation.NAME, "policies": listed},
             "required": ["name", "policies"], "additionalProperties": False}
    return {"type": "object", "properties": {"server_group": group}, "required": ["server_group"],
            "additionalProperties": False}


_CREATE = _create_schema(HARD)
_CREATE_215 = _create_schema(HARD + SOFT)
_CREATE_264 = copy.deepcopy(_CREATE_215)
_GROUP_264 = _CREATE_264["properties"]["server_group"]
del _GROUP_264["properties"]["policies"]
_GROUP_264["required"] = ["name", "policy"]
_GROUP_264["properties"]["policy"] = {"type": "string", "enum": HARD + SOFT}
_GROUP_264["properties"]["rules"] = {"type": "object", "additionalProperties": False,
                                     "properties": {"max_server_per_host": validation.POSITIVE_INT}}

_MULTI_INT = query_params.Param("non-negative-int", single=False)
_QUERY = {"all_projects": query_params.MULTI_STRING, "limit": _MULTI_INT, "offset": _MULTI_INT}


def _view(request: Request, group: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": group["uuid"], "name": group["name"]}
    if want(request, "2.64"):
        body["policy"] = group["policy"]
        body["rules"] = group["rules"]
    else:
        body["policies"] = [group["policy"]]
        body["metadata"] = {}
    body["members"] = group["members"]
    if want(request, "2.13"):
        body["project_id"] = group["project_id"]
        body["user_id"] = group["user_id"]
    return body


def _visible(session, uuid: str, project_id: str, is_admin: bool) -> dict[str, Any]:
    """A group the caller may see: its project's, or any for an administrator (else not found)."""
    group = server_groups.get(session, uuid)
    if not is_admin and group["project_id"] != project_id:
        raise NotFound(f"Instance group {uuid} could not be found.")
    return group


async def _lookup(request: Request, uuid: str) -> dict[str, Any]:
    ctx = request.state.context
    try:
        return await compute_api(request).api_db.read(_visible, uuid, ctx.project_id, ctx.is_admin)
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None


async def with_groups(request: Request, server: dict[str, Any]) -> dict[str, Any]:
    """The server with the group it is in, for the 2.71 ``server_groups`` of show, update and rebuild."""
    if not want(request, "2.71"):
        return server
    uuid = await compute_api(request).api_db.read(server_groups.group_of, server["uuid"])
    return dict(server, _server_groups=[uuid] if uuid else [])


async def create_group(request: Request):
    ctx = request.state.context
    common.authorize(request, "os_compute_api:os-server-groups:create")
    body = await read_json(request)
    validation.validate(_CREATE_264 if want(request, "2.64") else _CREATE_215 if want(request, "2.15")
                        else _CREATE, body)
    params = body["server_group"]
    svc = compute_api(request)
    limit = (await quota.limits(svc, ctx.project_id)).get("server_groups", -1)
    held = await svc.api_db.read(server_groups.count, ctx.project_id)
    if 0 <= limit <= held:
        raise quota.refusal(svc, "server_groups", limit, held, 1, "Quota exceeded, too many server groups.")
    if want(request, "2.64"):
        policy, rules = params["policy"], params.get("rules") or {}
        if policy != "anti-affinity" and rules:
            raise HTTPError(400, "Only anti-affinity policy supports rules.")
        rules = {name: int(value) for name, value in rules.items()}
    else:
        policy, rules = params["policies"][0], {}
    values = {"uuid": str(uuidlib.uuid4()), "name": params["name"], "project_id": ctx.project_id,
              "user_id": ctx.user_id, "policy": policy, "rules": rules}
    try:  # counted again where it is written: racing creates never pass the limit
        group = await svc.api_db.write(server_groups.create, values, limit)
    except server_groups.OverQuota as over:
        raise quota.refusal(svc, "server_groups", limit, over.held, 1,
                            "Quota exceeded, too many server groups.") from None
    return json_response({"server_group": _view(request, group)})


async def list_groups(request: Request):
    ctx = request.state.context
    query_params.validate(request, _QUERY, closed=want(request, "2.75"))
    offset = int(request.query_params.getlist("offset")[-1] or 0) if "offset" in request.query_params else 0
    limit = int(request.query_params.getlist("limit")[-1] or 0) if "limit" in request.query_params else 1000
    common.authorize(request, "os_compute_api:os-server-groups:index")
    every = "all_projects" in request.query_params and common.allowed(request, _ALL_PROJECTS)
    groups = await compute_api(request).api_db.read(server_groups.list_groups, None if every else ctx.project_id)
    page = groups[offset:offset + min(limit, 1000)]
    return json_response({"server_groups": [_view(request, g) for g in page]})


async def show_group(request: Request, group_id: str):
    group = await _lookup(request, group_id)
    common.authorize(request, "os_compute_api:os-server-groups:show", {"project_id": group["project_id"]})
    return json_response({"server_group": _view(request, group)})


async def delete_group(request: Request, group_id: str):
    group = await _lookup(request, group_id)
    common.authorize(request, "os_compute_api:os-server-groups:delete", {"project_id": group["project_id"]})
    try:
        await compute_api(request).api_db.write(server_groups.delete, group_id)
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-server-groups", list_groups)
    router.add("POST", "/v2.1/os-server-groups", create_group)
    router.add("GET", "/v2.1/os-server-groups/{group_id}", show_group)
    router.add("DELETE", "/v2.1/os-server-groups/{group_id}", delete_group)
