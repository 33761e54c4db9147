"""The ``createBackup`` server action, as upstream's create_backup controller.

The backup image is made first (as the caller, image_type backup, with backup_type and the caller's
metadata among its properties), then the state change (image_backup) and the instance action, then
the server's host snapshots into it and rotates that type's older backups. From 2.45 the body gives
the image id; before, the Location header does (only when rotation is not 0), as upstream.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, empty_response, json_response
from kilonova.compute.api import create_image, lookup, server_actions, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute import quota

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
        await quota.check_local(svc, ref.server["project_id"], "metadata_items", 0, len(metadata),
                                "Quota exceeded for metadata_items: too many metadata items")
    server_actions.check_startable(request, ref, key)  # before the image is made, as upstream's decorators
    image = await create_image.create_snapshot_image(svc, ctx, ref.server, name, metadata, image_type="backup",
                                                     backup_type=backup_type)
    try:
        server = await server_actions.begin(request, ref, key)
    except HTTPError:
        await create_image.discard_image(svc, ctx.token, image["id"])
        raise
    try:
        await server_actions.tell_host(svc, server, "backup_instance", image_id=image["id"], backup_type=backup_type,
                                       rotation=rotation, request_id=ctx.request_id)
    except HTTPError:
        await server_actions.undo_begin(ref, key, ctx.request_id)
        await create_image.discard_image(svc, ctx.token, image["id"])
        raise
    if want(request, "2.45"):
        return json_response({"image_id": image["id"]}, status=202)
    headers = {}
    if rotation > 0:
        headers["Location"] = str(request.base_url).rstrip("/") + f"/v2.1/images/{image['id']}"
    return empty_response(202, headers=headers)
