"""Volumes of a server (``/servers/{id}/os-volume_attachments``), as upstream's volume attachments API.

List and show read the server's block device mappings. An attach (200, the attach itself goes on after
the answer, as upstream's) looks the volume up with the caller's token (another project's volume is a
404), records the mapping with its device name, reserves the volume for the server in the volume service
(a Cinder attachment, with the caller's token: an ``in-use`` volume is refused there, a 400 with Cinder's
message), records the ``attach_volume`` instance action and casts to the server's host
(``agent/operations/volumes.py``), which connects it. A detach (202) casts ``detach_volume``; a swap
(admin) reserves the new volume and casts ``swap_volume``; from 2.85 the same PUT changes
``delete_on_termination``. A shelved-offloaded server has no host: its volume is attached or detached
here, in the volume service only, and connected when the server is unshelved.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.common.rpc import NoSuchTarget, UnsupportedVersion
from kilonova.compute import volume_api
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import common, lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_actions import begin, check_startable, undo_begin
from kilonova.compute.db import block_devices, instance_actions
from kilonova.compute.db.block_devices import AlreadyAttached, DeviceInUse

_UUID = {"type": "string", "format": "uuid"}
_DEVICE = {"type": ["string", "null"], "pattern": "(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$"}
_TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}
_BOOL = {"type": ["boolean", "string"], "enum": [True, False, "true", "false", "True", "False", "1", "0", "t",
                                                  "f", "yes", "no", "on", "off", "y", "n"]}


def _body_schema(properties: dict[str, Any]) -> dict:
    return {"type": "object", "properties": {"volumeAttachment": {
        "type": "object", "properties": properties, "required": ["volumeId"], "additionalProperties": False}},
        "required": ["volumeAttachment"], "additionalProperties": False}


CREATE = _body_schema({"volumeId": _UUID, "device": _DEVICE})
CREATE_2_49 = _body_schema({"volumeId": _UUID, "device": _DEVICE, "tag": _TAG})
CREATE_2_79 = _body_schema({"volumeId": _UUID, "device": _DEVICE, "tag": _TAG, "delete_on_termination": _BOOL})
UPDATE = _body_schema({"volumeId": _UUID})
UPDATE_2_85 = _body_schema({"volumeId": _UUID, "device": _DEVICE, "tag": _TAG, "delete_on_termination": _BOOL,
                            "id": _UUID, "serverId": _UUID})
_SHELVED = ("shelved", "shelved_offloaded")


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "t", "yes", "on", "y")


def _view(request: Request, bdm: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    if not want(request, "2.89"):
        view["id"] = bdm["volume_id"]
    view.update(volumeId=bdm["volume_id"], serverId=bdm["instance_uuid"])
    if bdm.get("device_name"):
        view["device"] = bdm["device_name"]
    if want(request, "2.70"):
        view["tag"] = bdm.get("tag")
    if want(request, "2.79"):
        view["delete_on_termination"] = bool(bdm.get("delete_on_termination"))
    if want(request, "2.89"):
        view.update(attachment_id=bdm.get("attachment_id"), bdm_uuid=bdm["uuid"])
    return view


async def _find(request: Request, server_id: str) -> lookup.ServerRef:
    return await lookup.find(compute_api(request), request.state.context, server_id)


async def _bdms(ref: lookup.ServerRef) -> list[dict[str, Any]]:
    if ref.cell is None or ref.cell.is_cell0:
        return []
    return [b for b in await ref.cell.db.read(block_devices.for_instance, ref.uuid) if b["volume_id"]]


def _volumes(request: Request) -> volume_api.VolumeAPI:
    return volume_api.for_caller(compute_api(request).volume, request.state.context)


def _check_writer(request: Request, what: str) -> None:
    common.authorize(request, f"os_compute_api:os-volumes-attachments:{what}")


def _check_shelved(request: Request, ref: lookup.ServerRef, method: str) -> None:
    """Before 2.20 a shelved server's volumes cannot change (upstream's 409)."""
    if ref.server.get("vm_state") in _SHELVED and not want(request, "2.20"):
        raise HTTPError(409, f"Cannot '{method}' instance {ref.uuid} while it is in vm_state {ref.server['vm_state']}")


async def _volume(request: Request, volume_id: str, status: int = 404) -> dict[str, Any]:
    try:
        return await _volumes(request).get(volume_id)
    except volume_api.VolumeNotFound:
        raise HTTPError(status, f"Volume {volume_id} could not be found.") from None
    except volume_api.VolumeError as exc:
        raise HTTPError(503 if exc.status >= 500 else 400, exc.message) from None


async def index(request: Request, server_id: str):
    ref = await _find(request, server_id)
    bdms = await _bdms(ref)
    offset, limit = common.offset_and_limit(request)
    return json_response({"volumeAttachments": [_view(request, b) for b in bdms[offset:offset + limit]]})


async def show(request: Request, server_id: str, volume_id: str):
    ref = await _find(request, server_id)
    bdm = next((b for b in await _bdms(ref) if b["volume_id"] == volume_id), None)
    if bdm is None:
        raise HTTPError(404, f"Instance {server_id} is not attached to volume {volume_id}")
    return json_response({"volumeAttachment": _view(request, bdm)})


def _create_schema(request: Request) -> dict:
    if want(request, "2.79"):
        return CREATE_2_79
    return CREATE_2_49 if want(request, "2.49") else CREATE


async def create(request: Request, server_id: str):
    body = await read_json(request)
    validation.validate(_create_schema(request), body)
    attachment = body["volumeAttachment"]
    volume_id, device = attachment["volumeId"], attachment.get("device")
    ref = await _find(request, server_id)
    _check_writer(request, "create")
    _check_shelved(request, ref, "attach_volume")
    check_startable(request, ref, "attach_volume")
    volume = await _volume(request, volume_id)
    if volume.get("multiattach") and not want(request, "2.60"):
        raise HTTPError(400, "Multiattach volumes are only supported starting with compute API version 2.60.")
    if device and not block_devices.valid_device(device):
        raise HTTPError(400, f"The supplied device path ({device}) is invalid.")
    values = {"volume_id": volume_id, "tag": attachment.get("tag"),
              "delete_on_termination": _bool(attachment.get("delete_on_termination", False))}
    try:
        bdm = await ref.cell.db.write(_reserve_device, ref.uuid, ref.server, values, device)
    except AlreadyAttached as exc:
        raise HTTPError(400, str(exc)) from None
    except DeviceInUse as exc:
        raise HTTPError(409, str(exc)) from None
    bdm = await _reserve_volume(request, ref, bdm)
    if ref.server.get("vm_state") == "shelved_offloaded":
        await _attach_offloaded(request, ref, bdm)
    else:
        await _hand_over(request, ref, "attach_volume", bdm, volume_id=volume_id)
    view = {"id": volume_id, "serverId": ref.uuid, "volumeId": volume_id, "device": bdm["device_name"]}
    if want(request, "2.70"):
        view["tag"] = bdm.get("tag")
    if want(request, "2.79"):
        view["delete_on_termination"] = bool(bdm["delete_on_termination"])
    # 2.101: the attach is accepted, not done (the host finishes it, as it always did here).
    return json_response({"volumeAttachment": view}, status=202 if want(request, "2.101") else 200)


def _reserve_device(session, uuid: str, server: dict, values: dict, device: str | None) -> dict:
    """The mapping, at ``device`` or the first device name after the disks the server's flavor gives it."""
    flavor = server.get("flavor") or {}
    local = 1 + bool(flavor.get("ephemeral_gb")) + bool(flavor.get("swap")) + bool(server.get("config_drive"))
    if not device:
        used = {b["device_name"] for b in block_devices.for_instance(session, uuid) if b["device_name"]}
        used |= {f"/dev/vd{chr(ord('a') + i)}" for i in range(local)}
        device = block_devices.next_device(used)
    return block_devices.reserve(session, uuid, values, device)


async def _reserve_volume(request: Request, ref: lookup.ServerRef, bdm: dict) -> dict:
    """The volume reserved for the server in the volume service (a Cinder attachment without a connector)."""
    try:
        attachment = await _volumes(request).attachment_create(bdm["volume_id"], ref.uuid)
    except volume_api.VolumeError as exc:
        await ref.cell.db.write(block_devices.destroy, bdm["uuid"])
        if isinstance(exc, volume_api.VolumeNotFound):
            raise HTTPError(404, f"Volume {bdm['volume_id']} could not be found.") from None
        raise HTTPError(503 if exc.status >= 500 else 400, exc.message) from None
    return await ref.cell.db.write(block_devices.update, bdm["uuid"], {"attachment_id": attachment["id"]})


async def _give_back(request: Request, ref: lookup.ServerRef, bdm: dict) -> None:
    try:
        await _volumes(request).attachment_delete(bdm["attachment_id"])
    finally:
        await ref.cell.db.write(block_devices.destroy, bdm["uuid"])


async def _hand_over(request: Request, ref: lookup.ServerRef, key: str, bdm: dict | None = None, **kwargs) -> None:
    """Begin action ``key`` and cast it to the server's host; what was reserved is given back if it cannot be."""
    try:
        server = await begin(request, ref, key)
    except HTTPError:
        if bdm is not None:
            await _give_back(request, ref, bdm)
        raise
    try:
        await compute_api(request).compute_rpc(server["host"]).cast(
            ACTIONS[key].rpc_method, instance=server, request_id=request.state.context.request_id, **kwargs)
    except (NoSuchTarget, UnsupportedVersion) as exc:
        await undo_begin(ref, key, request.state.context.request_id)
        if bdm is not None:
            await _give_back(request, ref, bdm)
        why = "could not be reached" if isinstance(exc, NoSuchTarget) else \
            f"does not support {ACTIONS[key].rpc_method} yet (upgrade it first)"
        raise HTTPError(409, f"Compute host {server['host']} {why}.") from None


async def _record(request: Request, ref: lookup.ServerRef, key: str) -> None:
    """An action done here, on a server without a host: recorded and finished at once."""
    await begin(request, ref, key, needs_host=False)
    await ref.cell.db.write(instance_actions.finish, ref.uuid, ACTIONS[key].instance_action)


async def _attach_offloaded(request: Request, ref: lookup.ServerRef, bdm: dict) -> None:
    try:
        await _record(request, ref, "attach_volume")
        await _volumes(request).attachment_complete(bdm["attachment_id"])
    except (HTTPError, volume_api.VolumeError) as exc:
        await _give_back(request, ref, bdm)
        if isinstance(exc, HTTPError):
            raise
        raise HTTPError(400, exc.message) from None
    await ref.cell.db.write(block_devices.update, bdm["uuid"], {"status": "attached"})


async def delete(request: Request, server_id: str, volume_id: str):
    ref = await _find(request, server_id)
    _check_writer(request, "delete")
    _check_shelved(request, ref, "detach_volume")
    await _volume(request, volume_id)
    bdm = next((b for b in await _bdms(ref) if b["volume_id"] == volume_id), None)
    if bdm is None:
        raise HTTPError(404, f"Instance {server_id} is not attached to volume {volume_id}")
    if bdm.get("boot_index") == 0:
        raise HTTPError(400, "Cannot detach a root device volume")
    check_startable(request, ref, "detach_volume")
    if bdm["status"] != "attached":
        raise HTTPError(400, "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and "
                             "attach_status must be 'attached' to detach.")
    if not ref.server.get("host"):
        await _record(request, ref, "detach_volume")
        await _give_back(request, ref, bdm)
        return empty_response(202)
    await ref.cell.db.write(block_devices.update, bdm["uuid"], {"status": "detaching"})
    try:
        await _hand_over(request, ref, "detach_volume", volume_id=volume_id)
    except HTTPError:
        await ref.cell.db.write(block_devices.update, bdm["uuid"], {"status": "attached"})
        raise
    return empty_response(202)


async def update(request: Request, server_id: str, volume_id: str):
    body = await read_json(request)
    only_swap = not want(request, "2.85")
    validation.validate(UPDATE if only_swap else UPDATE_2_85, body)
    attachment = body["volumeAttachment"]
    ref = await _find(request, server_id)
    swapping = only_swap or attachment["volumeId"] != volume_id
    if swapping:
        common.authorize(request, "os_compute_api:os-volumes-attachments:swap", common.server_target(ref.server))
    _check_writer(request, "update")
    if not only_swap:
        await _update_regular(ref, volume_id, attachment)
    if swapping:
        await _swap(request, ref, volume_id, attachment["volumeId"])
    return empty_response(202)


async def _update_regular(ref: lookup.ServerRef, volume_id: str, attachment: dict) -> None:
    bdm = next((b for b in await _bdms(ref) if b["volume_id"] == volume_id), None)
    if bdm is None:
        raise HTTPError(404, f"No volume Block Device Mapping with id {volume_id}.")
    for key, current in (("id", volume_id), ("serverId", ref.uuid), ("device", bdm["device_name"]),
                         ("tag", bdm.get("tag"))):
        if key in attachment and attachment[key] != current:
            raise HTTPError(400, f"The {key} property is not mutable")
    if "delete_on_termination" in attachment:
        await ref.cell.db.write(block_devices.update, bdm["uuid"],
                                {"delete_on_termination": _bool(attachment["delete_on_termination"])})


async def _swap(request: Request, ref: lookup.ServerRef, old_id: str, new_id: str) -> None:
    old = await _volume(request, old_id)
    new = await _volume(request, new_id, status=400)
    check_startable(request, ref, "swap_volume")
    bdm = next((b for b in await _bdms(ref) if b["volume_id"] == old_id), None)
    if bdm is None or bdm["status"] != "attached":
        raise HTTPError(404, "The volume was either invalid or not attached to the instance.")
    if new.get("status") != "available":
        raise HTTPError(400, "Invalid volume: New volume must be detached in order to swap.")
    if int(new.get("size") or 0) < int(old.get("size") or 0):
        raise HTTPError(400, "Invalid volume: New volume must be the same size or larger.")
    try:
        reservation = await _volumes(request).attachment_create(new_id, ref.uuid)
    except volume_api.VolumeError as exc:
        raise HTTPError(400, exc.message) from None
    try:
        await ref.cell.db.write(block_devices.update, bdm["uuid"], {"status": "swapping"})
        await _hand_over(request, ref, "swap_volume", old_volume_id=old_id, new_volume_id=new_id,
                         new_attachment_id=reservation["id"])
    except (HTTPError, NotFound, Conflict):
        await ref.cell.db.write(block_devices.update, bdm["uuid"], {"status": "attached"})
        await _volumes(request).attachment_delete(reservation["id"])
        raise


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/os-volume_attachments", index)
    router.add("POST", "/v2.1/servers/{server_id}/os-volume_attachments", create)
    router.add("GET", "/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", show)
    router.add("PUT", "/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", update)
    router.add("DELETE", "/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", delete)
