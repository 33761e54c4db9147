"""The compute API's volume proxies (``os-volumes``, ``os-snapshots``) until 2.35, as upstream: each call is made
to the volume service with the caller's own token, and answered in Nova's older shape (``displayName``,
``availabilityZone``, ``attachments`` naming the servers). From 2.36 they are gone (404).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import common, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.floating_ips import check_version
from kilonova.compute.volume_api import cinder_message

_TEXT = {"type": ["string", "null"], "maxLength": 255}
CREATE = {"type": "object", "properties": {"volume": {"type": "object", "properties": {
    "volume_type": {"type": "string"}, "metadata": {"type": "object"}, "snapshot_id": {"type": "string"},
    "size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
    "availability_zone": {"type": "string"}, "display_name": _TEXT, "display_description": _TEXT},
    "required": ["size"], "additionalProperties": False}}, "required": ["volume"], "additionalProperties": False}
SNAPSHOT_CREATE = {"type": "object", "properties": {"snapshot": {"type": "object", "properties": {
    "volume_id": {"type": "string"}, "force": validation.BOOLEAN,
    "display_name": _TEXT, "display_description": _TEXT},
    "required": ["volume_id"], "additionalProperties": False}}, "required": ["snapshot"], "additionalProperties": False}


async def _call(request: Request, method: str, path: str, **kwargs: Any):
    ctx = request.state.context
    return await compute_api(request).volume.request(
        method, f"/v3/{segment(ctx.project_id)}{path}", headers={"X-Auth-Token": ctx.token}, **kwargs)


def _fail(response, not_found: str | None = None) -> HTTPError:
    message = cinder_message(response)
    if response.status_code == 404:
        return HTTPError(404, not_found or message)
    if response.status_code == 413:  # Cinder's over-quota
        return HTTPError(403, message)
    if response.status_code in (400, 403, 409):
        return HTTPError(response.status_code if response.status_code != 409 else 400, message)
    return HTTPError(502, f"The volume service answered {response.status_code}: {message}")


def _volume_view(volume: dict[str, Any]) -> dict[str, Any]:
    attachments = [{"id": a.get("volume_id") or volume["id"], "volumeId": a.get("volume_id") or volume["id"],
                    "serverId": a.get("server_id"), **({"device": a["device"]} if a.get("device") else {})}
                   for a in volume.get("attachments") or []]
    return {"id": volume["id"], "status": volume["status"], "size": volume["size"],
            "availabilityZone": volume.get("availability_zone"), "createdAt": volume.get("created_at"),
            "attachments": attachments or [{}], "displayName": volume.get("name"),
            "displayDescription": volume.get("description"), "volumeType": volume.get("volume_type"),
            "snapshotId": volume.get("snapshot_id"), "metadata": volume.get("metadata") or {}}


def _snapshot_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {"id": snapshot["id"], "volumeId": snapshot["volume_id"], "status": snapshot["status"],
            "size": snapshot["size"], "createdAt": snapshot.get("created_at"),
            "displayName": snapshot.get("name"), "displayDescription": snapshot.get("description")}


async def _listed(request: Request, collection: str, view) -> Any:
    check_version(request)
    offset, limit = common.offset_and_limit(request)
    response = await _call(request, "GET", f"/{collection}/detail")
    if response.status_code != 200:
        raise _fail(response)
    items = response.json()[collection][offset:offset + limit]
    return json_response({collection: [view(item) for item in items]})


async def list_volumes(request: Request):
    return await _listed(request, "volumes", _volume_view)


async def _shown(request: Request, collection: str, item_id: str, what: str, view) -> Any:
    check_version(request)
    response = await _call(request, "GET", f"/{collection}/{segment(item_id)}")
    if response.status_code != 200:
        raise _fail(response, f"{what} {item_id} could not be found.")
    return json_response({collection[:-1]: view(response.json()[collection[:-1]])})


async def _deleted(request: Request, collection: str, item_id: str, what: str) -> Any:
    check_version(request)
    response = await _call(request, "DELETE", f"/{collection}/{segment(item_id)}")
    if response.status_code not in (202, 204):
        raise _fail(response, f"{what} {item_id} could not be found.")
    return empty_response(202)


async def show_volume(request: Request, volume_id: str):
    return await _shown(request, "volumes", volume_id, "Volume", _volume_view)


async def create_volume(request: Request):
    check_version(request)
    body = await read_json(request)
    validation.validate(CREATE, body)
    asked = body["volume"]
    volume = {"size": int(asked["size"]), "name": asked.get("display_name"),
              "description": asked.get("display_description")}
    for key in ("volume_type", "metadata", "snapshot_id", "availability_zone"):
        if asked.get(key) is not None:
            volume[key] = asked[key]
    response = await _call(request, "POST", "/volumes", json={"volume": volume})
    if response.status_code not in (200, 202):
        raise _fail(response)
    made = response.json()["volume"]
    location = f"{str(request.url).rstrip('/')}/{made['id']}"
    return json_response({"volume": _volume_view(made)}, headers={"Location": location})


async def delete_volume(request: Request, volume_id: str):
    return await _deleted(request, "volumes", volume_id, "Volume")


async def list_snapshots(request: Request):
    return await _listed(request, "snapshots", _snapshot_view)


async def show_snapshot(request: Request, snapshot_id: str):
    return await _shown(request, "snapshots", snapshot_id, "Snapshot", _snapshot_view)


async def create_snapshot(request: Request):
    check_version(request)
    body = await read_json(request)
    validation.validate(SNAPSHOT_CREATE, body)
    asked = body["snapshot"]
    snapshot = {"volume_id": asked["volume_id"], "force": validation.is_true(asked.get("force", False)),
                "name": asked.get("display_name"), "description": asked.get("display_description")}
    response = await _call(request, "POST", "/snapshots", json={"snapshot": snapshot})
    if response.status_code not in (200, 202):
        raise _fail(response)
    return json_response({"snapshot": _snapshot_view(response.json()["snapshot"])})


async def delete_snapshot(request: Request, snapshot_id: str):
    return await _deleted(request, "snapshots", snapshot_id, "Snapshot")


def register(router: Router) -> None:
    for collection, listing, show, create, delete, key in (
            ("os-volumes", list_volumes, show_volume, create_volume, delete_volume, "volume_id"),
            ("os-snapshots", list_snapshots, show_snapshot, create_snapshot, delete_snapshot, "snapshot_id")):
        router.add("GET", f"/v2.1/{collection}", listing)
        router.add("GET", f"/v2.1/{collection}/detail", listing)
        router.add("POST", f"/v2.1/{collection}", create)
        router.add("GET", f"/v2.1/{collection}/{{{key}}}", show)
        router.add("DELETE", f"/v2.1/{collection}/{{{key}}}", delete)
