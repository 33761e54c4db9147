"""``/os-assisted-volume-snapshots``: the volume service asks the compute service to snapshot, or merge away a
snapshot of, a file-backed (qcow2) volume a running guest has open, as Cinder's file-based drivers ask Nova.

Only the hypervisor may change the chain of files under a running guest's disk: the volume service makes the
new overlay file, then POSTs here; the server's host switches the guest's disk onto it (libvirt: an external
disk-only snapshot reusing the file) and reports to the volume service with ``os-update_snapshot_status``
(``creating``, progress 90%). A DELETE merges a snapshot's file out of the chain (libvirt's block rebase or
block commit) and reports ``deleting``. Both answer before the host has done it, as upstream; the server is
found from the volume's one attachment. Admin or the ``service`` role (upstream's rules, an empty target: the
volume service calls as itself, not as the server's project).
"""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.common.rpc import NoSuchTarget, UnsupportedVersion
from kilonova.compute import volume_api
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize
from kilonova.compute.api.microversions import want
from kilonova.compute.db import block_devices

POLICY = "os_compute_api:os-assisted-volume-snapshots:{}"
_TEXT = {"type": "string", "minLength": 1}
CREATE = {"type": "object", "properties": {"snapshot": {
    "type": "object", "properties": {
        "volume_id": _TEXT,
        "create_info": {"type": "object", "properties": {
            "snapshot_id": _TEXT, "type": {"type": "string", "enum": ["qcow2"]}, "new_file": _TEXT, "id": _TEXT},
            "required": ["snapshot_id", "type", "new_file"], "additionalProperties": False}},
    "required": ["volume_id", "create_info"], "additionalProperties": False}},
    "required": ["snapshot"], "additionalProperties": False}
# DELETE's query: delete_info (JSON); from 2.75 nothing else, as every query schema of that microversion.
DELETE_QUERY_2_75 = {"type": "object", "properties": {"delete_info": {"type": "array", "items": {"type": "string"}}},
                     "additionalProperties": False}


async def _server_of(request: Request, volume_id: str, method: str) -> tuple[lookup.ServerRef, dict[str, Any]]:
    """The server the volume is attached to, ready for ``method``: 400 as upstream when the volume has no
    mapping, is attached to several servers, or the server has no host or is busy."""
    svc = compute_api(request)
    no_mapping = HTTPError(400, f"No volume Block Device Mapping with id {volume_id}.")
    try:
        volume = await (await volume_api.as_service(svc.volume_admin)).get(volume_id)
    except volume_api.VolumeNotFound:
        raise no_mapping from None
    except volume_api.VolumeError as exc:
        raise HTTPError(503 if exc.status >= 500 else 400, exc.message) from None
    servers = {a.get("server_id") for a in volume.get("attachments") or [] if a.get("server_id")}
    if len(servers) > 1:
        raise HTTPError(400, f"Block Device Mapping {volume_id} is a multi-attach volume and is not valid for this "
                             "operation.")
    if not servers:
        raise no_mapping
    try:
        ref = await lookup.find(svc, request.state.context, servers.pop())
    except HTTPError as exc:
        if exc.status == 404:
            raise no_mapping from None
        raise
    if ref.cell is None or ref.cell.is_cell0:
        raise no_mapping
    try:
        bdm = await ref.cell.db.read(block_devices.get_by_volume, ref.uuid, volume_id)
    except NotFound:
        raise no_mapping from None
    if not ref.server.get("host"):
        raise HTTPError(400, f"Instance {ref.uuid} is not ready")
    if ref.server.get("task_state"):
        raise HTTPError(400, f"Instance {ref.uuid} in task_state {ref.server['task_state']}. Cannot {method} while "
                             "the instance is in this state.")
    return ref, bdm


async def _cast(request: Request, ref: lookup.ServerRef, method: str, **kwargs) -> None:
    try:
        await compute_api(request).compute_rpc(ref.server["host"]).cast(
            method, instance=ref.server, request_id=request.state.context.request_id, **kwargs)
    except (NoSuchTarget, UnsupportedVersion) as exc:
        raise HTTPError(400, f"Instance {ref.uuid} is not ready: its host {ref.server['host']} cannot "
                             f"{method} ({exc}).") from None


async def create(request: Request):
    authorize(request, POLICY.format("create"), target={})
    body = await read_json(request)
    validation.validate(CREATE, body)
    volume_id, info = body["snapshot"]["volume_id"], body["snapshot"]["create_info"]
    ref, _bdm = await _server_of(request, volume_id, "volume_snapshot_create")
    await _cast(request, ref, "volume_snapshot_create", volume_id=volume_id, create_info=info)
    return json_response({"snapshot": {"id": info.get("id"), "volumeId": volume_id}})


async def delete(request: Request, snapshot_id: str):
    authorize(request, POLICY.format("delete"), target={})
    if want(request, "2.75"):
        validation.validate(DELETE_QUERY_2_75, {k: request.query_params.getlist(k) for k in request.query_params})
    try:
        delete_info = json.loads(request.query_params["delete_info"])
        volume_id = delete_info["volume_id"]
    except (KeyError, ValueError) as exc:
        raise HTTPError(400, str(exc)) from None
    except TypeError:   # JSON that is not an object
        raise HTTPError(400, "delete_info must be a JSON object") from None
    ref, _bdm = await _server_of(request, str(volume_id), "volume_snapshot_delete")
    await _cast(request, ref, "volume_snapshot_delete", volume_id=str(volume_id), snapshot_id=snapshot_id,
                delete_info=delete_info)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2.1/os-assisted-volume-snapshots", create)
    router.add("DELETE", "/v2.1/os-assisted-volume-snapshots/{snapshot_id}", delete)
