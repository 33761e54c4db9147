"""/v2.1/servers/{id}/shares (2.97): Shared File Systems (Manila) shares mounted in a server with virtiofs.

Kilonova has no Shared File Systems service and no driver mounts shares, so no server has a share:
the list is empty, a share is never found, and attaching one is refused with a 409 that says why
(upstream answers 404 before 2.97, as for any unknown resource).
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response, read_json
from kilonova.compute.api import common, lookup, query_params, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want

_CREATE = {"type": "object", "required": ["share"], "additionalProperties": False, "properties": {
    "share": {"type": "object", "required": ["share_id"], "additionalProperties": False, "properties": {
        "share_id": validation.UUID, "tag": {"type": "string", "minLength": 1, "maxLength": 255,
                                             "pattern": "^[a-zA-Z0-9-]+$"}}}}}


async def _server(request: Request, server_id: str, rule: str) -> lookup.ServerRef:
    if not want(request, "2.97"):
        raise HTTPError(404, "The resource could not be found.")
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.authorize(request, f"os_compute_api:os-shares:{rule}", common.server_target(ref.server))
    return ref


async def list_shares(request: Request, server_id: str):
    query_params.closed_from_2102(request)
    await _server(request, server_id, "index")
    return json_response({"shares": []})


async def attach_share(request: Request, server_id: str):
    await _server(request, server_id, "create")
    validation.validate(_CREATE, await read_json(request))
    raise HTTPError(409, "Sharing file systems with servers is not supported by this cloud: it has no Shared "
                         "File Systems service (Manila) and no compute driver mounts shares (virtiofs).")


async def show_share(request: Request, server_id: str, share_id: str, rule: str = "show"):
    await _server(request, server_id, rule)
    raise HTTPError(404, f"Share {share_id} for instance {server_id} could not be found.")


async def detach_share(request: Request, server_id: str, share_id: str):
    return await show_share(request, server_id, share_id, "delete")


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/shares", list_shares)
    router.add("POST", "/v2.1/servers/{server_id}/shares", attach_share)
    router.add("GET", "/v2.1/servers/{server_id}/shares/{share_id}", show_share)
    router.add("DELETE", "/v2.1/servers/{server_id}/shares/{share_id}", detach_share)
