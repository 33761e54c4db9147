"""The ``createImage`` server action: snapshot a server's root disk into a new image.

The API makes the image (queued, no data) in the image service as the caller, so the
caller's rights decide; the compute agent of the server's host then copies the disk
and uploads it. The image starts from the source image's properties (so a snapshot
boots like its source) plus what marks it as a snapshot of this server; disk and
container formats are left to the driver, which knows what it uploads.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, empty_response, json_response
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import lookup, microversions, validation, volume_backed_snapshot
from kilonova.compute.api.app import compute_api
from kilonova.compute import quota

BODY = {"type": "object", "properties": {"createImage": {
    "type": "object", "properties": {"name": validation.NAME, "metadata": validation.METADATA},
    "required": ["name"], "additionalProperties": False}},
    "required": ["createImage"], "additionalProperties": False}

# Image fields that are the image service's own, never copied from the source image.
_CORE_FIELDS = {"id", "name", "status", "visibility", "owner", "protected", "os_hidden", "checksum", "os_hash_algo",
                "os_hash_value", "size", "virtual_size", "disk_format", "container_format", "min_disk", "min_ram",
                "created_at", "updated_at", "tags", "self", "file", "schema", "direct_url", "locations", "stores"}
# Properties that describe one particular image (its signature, its own snapshot lineage): not inherited.
_NOT_INHERITED_PREFIXES = ("os_glance", "img_signature", "cinder_encryption_key", "instance_uuid", "image_type",
                           "base_image_ref", "user_id", "owner_", "image_location", "image_state")


def parse_body(body: Any) -> tuple[str, dict[str, str]]:
    """(name, metadata) of a createImage body, or a 400 saying what is wrong."""
    validation.validate(BODY, body)
    args = body["createImage"]
    return args["name"], dict(args.get("metadata") or {})


def image_values(server: dict, source: dict, name: str, metadata: dict[str, str], requester_project: str | None,
                 requester_user: str | None) -> dict[str, Any]:
    """The body of the image-create request for a snapshot of ``server`` (booted from ``source``)."""
    values: dict[str, Any] = {
        key: str(value) for key, value in source.items()
        if key not in _CORE_FIELDS and not key.startswith(_NOT_INHERITED_PREFIXES) and value is not None
        and not isinstance(value, (dict, list))}
    values.update(metadata)
    flavor = server.get("flavor") or {}
    values.update({
        "name": name,
        "min_disk": max(int(source.get("min_disk") or 0), int(flavor.get("root_gb") or 0)),
        "min_ram": int(source.get("min_ram") or 0),
        "image_type": "snapshot",
        "instance_uuid": server["uuid"],
        "base_image_ref": server.get("image_ref") or "",
        "user_id": requester_user or server.get("user_id") or "",
    })
    if requester_project != server.get("project_id"):
        # An admin snapshotting someone else's server: the image belongs to the server's project.
        values["owner"] = server.get("project_id")
        values["visibility"] = "private"
    return values


def _check_state(ref: lookup.ServerRef) -> None:
    """The createImage row's state rule (kilonova/compute/actions.py), checked before the image is made;
    server_actions.begin checks it again as the compare-and-set that starts the action."""
    server = ref.server
    action = ACTIONS["createImage"]
    vm_state = server.get("vm_state") or "building"
    if ref.cell is None or ref.cell.is_cell0 or not server.get("host") or \
            not action.allows(vm_state, server.get("task_state")):
        raise HTTPError(409, action.conflict_message(ref.uuid, vm_state, server.get("task_state")))


async def _source_image(svc, token: str, image_ref: str | None) -> dict:
    """The image the server was booted from, or {} when it is gone (a snapshot is still possible)."""
    if not image_ref:
        return {}
    response = await svc.image.get(f"/v2/images/{image_ref}", headers={"X-Auth-Token": token})
    return response.json() if response.status_code == 200 else {}


async def create_snapshot_image(svc, ctx, server: dict, name: str, metadata: dict[str, str],
                                **extra: str) -> dict:
    """The image (queued, no data yet) that a snapshot of ``server`` fills, made in the image service as
    the caller ``ctx``, from the source image's properties, ``metadata`` and ``extra`` (createImage,
    createBackup and shelve)."""
    source = await _source_image(svc, ctx.token, server.get("image_ref"))
    values = image_values(server, source, name, metadata, ctx.project_id, ctx.user_id)
    values.update(extra)
    response = await svc.image.post("/v2/images", json=values, headers={"X-Auth-Token": ctx.token})
    if response.status_code == 201:
        return response.json()
    detail = response.text[:300]
    if response.status_code in (400, 403, 413):
        raise HTTPError(response.status_code, f"The image service refused the snapshot image: {detail}")
    raise HTTPError(503, f"The image service answered {response.status_code} creating the snapshot image.")


async def discard_image(svc, token: str, image_id: str) -> None:
    """Delete a snapshot image whose action did not start (best effort)."""
    try:
        await svc.image.delete(f"/v2/images/{image_id}", headers={"X-Auth-Token": token})
    except Exception:  # noqa: BLE001 - best effort: an orphan queued image is harmless
        pass


async def create_image(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    from kilonova.compute.api import server_actions  # it imports this module to route createImage here

    name, metadata = parse_body(body)
    ctx = request.state.context
    svc = compute_api(request)
    server_actions.check_policy(request, ref, ACTIONS["createImage"])
    _check_state(ref)
    await quota.check_local(svc, ref.server["project_id"], "metadata_items", 0, len(metadata),
                            "Quota exceeded for metadata_items: too many metadata items")

    bdms = await volume_backed_snapshot.root_volume(ref)
    if bdms is not None:  # volume-backed: the volumes are snapshotted, the image only points at them
        server_actions.authorize(request, "os_compute_api:servers:create_image:allow_volume_backed",
                                 server_actions.server_target(ref.server))
        image = await volume_backed_snapshot.snapshot(request, svc, ctx, ref, bdms, name, metadata)
        return _answer(request, svc, image)
    image = await create_snapshot_image(svc, ctx, ref.server, name, metadata)
    try:
        # The task state and the "createImage" action, together; 409 if the server changed meanwhile.
        server = await server_actions.begin(request, ref, "createImage")
    except HTTPError:
        await discard_image(svc, ctx.token, image["id"])
        raise
    try:
        await server_actions.tell_host(svc, server, "snapshot_instance", image_id=image["id"],
                                       request_id=ctx.request_id)
    except HTTPError:
        await server_actions.undo_begin(ref, "createImage", ctx.request_id)
        await discard_image(svc, ctx.token, image["id"])
        raise

    return _answer(request, svc, image)


def _answer(request: Request, svc, image: dict):
    if microversions.want(request, "2.45"):
        return json_response({"image_id": image["id"]}, status=202)
    location = str(svc.image.base_url).rstrip("/") + f"/v2/images/{image['id']}"
    return empty_response(202, headers={"Location": location})

