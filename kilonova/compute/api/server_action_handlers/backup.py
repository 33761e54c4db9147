"""The ``createBackup`` server action, as upstream's create_backup controller.

The backup image is made first (as the caller, image_type backup, with backup_type and the caller's
metadata among its properties), then the state change (image_backup) and the instance action, then
the server's host snapshots into it and rotates that type's older backups. From 2.45 the body gives
the image id; before, the Location header does (only when rotation is not 0), as upstream.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, empty_response, json_response
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import create_image, lookup, server_actions, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.db import instances, quotas
from kilonova.compute.db.instances import UnexpectedTaskState

NON_NEGATIVE_INT = {"type": ["integer", "string"], "pattern": r"^[0-9]*$", "minimum": 0, "minLength": 1}


def _schema(name: dict) -> dict:
    return {"type": "object", "properties": {"createBackup": {
        "type": "object", "properties": {"name": name, "backup_type": {"type": "string"},
                                         "rotation": NON_NEGATIVE_INT, "metadata": validation.METADATA},
        "required": ["name", "backup_type", "rotation"], "additionalProperties": False}},
        "required": ["createBackup"], "additionalProperties": False}


BODY = _schema(validation.NAME)


@handles("createBackup")
async def create_backup(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(BODY, body)
    ctx = request.state.context
    svc = compute_api(request)
    args = body["createBackup"]
    name, backup_type, rotation = args["name"], args["backup_type"], int(args["rotation"])
    metadata = dict(args.get("metadata") or {})
    if not want(request, "2.39"):  # image metadata quota, checked until the image-proxy APIs went (2.39)
        limits = await svc.api_db.read(quotas.get_limits, ref.server["project_id"], svc.conf)
        limit = limits.get("metadata_items", -1)
        if 0 <= limit < len(metadata):
            raise HTTPError(403, "Quota exceeded for metadata_items: too many metadata items")
    action = ACTIONS["createBackup"]
    server = ref.server
    # No lock check: upstream's backup does not refuse a locked server.
    if ref.cell is None or ref.cell.is_cell0 or not server.get("host") or \
            not action.allows(server["vm_state"], server.get("task_state")):
        raise HTTPError(409, action.conflict_message(ref.uuid, server["vm_state"], server.get("task_state")))

    source = await create_image._source_image(svc, ctx.token, server.get("image_ref"))
    values = create_image.image_values(server, source, name, metadata, ctx.project_id, ctx.user_id)
    values.update(image_type="backup", backup_type=backup_type)
    image = await create_image._create_image(svc, ctx.token, values)
    try:
        server = await ref.cell.db.write(server_actions._begin_in_cell, ref.uuid, action, ctx.to_dict(), {})
    except UnexpectedTaskState:
        await create_image._delete_image(svc, ctx.token, image["id"])
        current = await ref.cell.db.read(instances.get, ref.uuid)
        raise HTTPError(409, action.conflict_message(ref.uuid, current["vm_state"], current.get("task_state"))) \
            from None
    try:
        await server_actions.tell_host(svc, server, "backup_instance", image_id=image["id"], backup_type=backup_type,
                                       rotation=rotation, request_id=ctx.request_id)
    except HTTPError:
        try:
            await ref.cell.db.write(instances.update, ref.uuid, {"task_state": None},
                                    expected_task_state=["image_backup"])
        except Exception:  # noqa: BLE001 - changed meanwhile: nothing of ours to undo
            pass
        await create_image._delete_image(svc, ctx.token, image["id"])
        raise
    if want(request, "2.45"):
        return json_response({"image_id": image["id"]}, status=202)
    headers = {}
    if rotation > 0:
        headers["Location"] = str(request.base_url).rstrip("/") + f"/v2.1/images/{image['id']}"
    return empty_response(202, headers=headers)
