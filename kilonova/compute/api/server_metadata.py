"""/v2.1/servers/{id}/metadata: the server's key/value properties."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import common, lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute import quota
from kilonova.compute.db import instances

_METADATA_BODY = {"type": "object", "properties": {"metadata": validation.METADATA},
                  "required": ["metadata"], "additionalProperties": False}
_META_ITEM_BODY = {"type": "object", "properties": {"meta": {
    "type": "object", "patternProperties": {r"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
    "minProperties": 1, "maxProperties": 1, "additionalProperties": False}},
    "required": ["meta"], "additionalProperties": False}


async def _server(request: Request, server_id: str, rule: str) -> lookup.ServerRef:
    """The server, then upstream's ``os_compute_api:server-metadata:<rule>`` on it (404 before 403)."""
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.authorize(request, f"os_compute_api:server-metadata:{rule}", common.server_target(ref.server))
    return ref


async def _writable(request: Request, server_id: str, rule: str) -> lookup.ServerRef:
    ref = await _server(request, server_id, rule)
    if ref.cell is None:
        raise HTTPError(409, f"Cannot update metadata of instance {server_id} while it is being scheduled")
    if ref.server.get("locked") and not request.state.context.is_admin:
        raise HTTPError(409, f"Instance {server_id} is locked")
    return ref


async def _save(request: Request, ref: lookup.ServerRef, metadata: dict) -> dict:
    svc = compute_api(request)
    await quota.check_local(svc, ref.server["project_id"], "metadata_items", 0, len(metadata),
                            "Quota exceeded for metadata_items: too many metadata items")
    server = await ref.cell.db.write(instances.update, ref.uuid, {"metadata": metadata})
    return server["metadata"]


async def list_metadata(request: Request, server_id: str):
    ref = await _server(request, server_id, "index")
    return json_response({"metadata": ref.server.get("metadata") or {}})


async def update_metadata(request: Request, server_id: str):
    body = await read_json(request)
    validation.validate(_METADATA_BODY, body)
    ref = await _writable(request, server_id, "create")
    merged = {**(ref.server.get("metadata") or {}), **body["metadata"]}
    return json_response({"metadata": await _save(request, ref, merged)})


async def replace_metadata(request: Request, server_id: str):
    body = await read_json(request)
    validation.validate(_METADATA_BODY, body)
    ref = await _writable(request, server_id, "update_all")
    return json_response({"metadata": await _save(request, ref, body["metadata"])})


async def show_item(request: Request, server_id: str, key: str):
    ref = await _server(request, server_id, "show")
    metadata = ref.server.get("metadata") or {}
    if key not in metadata:
        raise HTTPError(404, "Metadata item was not found")
    return json_response({"meta": {key: metadata[key]}})


async def set_item(request: Request, server_id: str, key: str):
    body = await read_json(request)
    validation.validate(_META_ITEM_BODY, body)
    if key not in body["meta"]:
        raise HTTPError(400, "Request body and URI mismatch")
    ref = await _writable(request, server_id, "update")
    metadata = {**(ref.server.get("metadata") or {}), key: body["meta"][key]}
    await _save(request, ref, metadata)
    return json_response({"meta": {key: body["meta"][key]}})


async def delete_item(request: Request, server_id: str, key: str):
    ref = await _writable(request, server_id, "delete")
    metadata = dict(ref.server.get("metadata") or {})
    if key not in metadata:
        raise HTTPError(404, "Metadata item was not found")
    del metadata[key]
    await _save(request, ref, metadata)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/metadata", list_metadata)
    router.add("POST", "/v2.1/servers/{server_id}/metadata", update_metadata)
    router.add("PUT", "/v2.1/servers/{server_id}/metadata", replace_metadata)
    router.add("GET", "/v2.1/servers/{server_id}/metadata/{key}", show_item)
    router.add("PUT", "/v2.1/servers/{server_id}/metadata/{key}", set_item)
    router.add("DELETE", "/v2.1/servers/{server_id}/metadata/{key}", delete_item)
