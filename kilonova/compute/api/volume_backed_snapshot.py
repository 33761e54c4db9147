"""``createImage`` of a volume-backed server, as upstream's snapshot_volume_backed: no disk is uploaded.

Each of the server's volumes is snapshotted in the volume service (``force``: it is in use) with the caller's
token, and the image made in the image service holds no data (active, size 0) but the block device mapping that
rebuilds the server's disks from those snapshots (``block_device_mapping``, ``bdm_v2``, ``root_device_name``):
a server booted from that image gets volumes made from the snapshots (``boot_volumes``). The ``createImage``
instance action is recorded and finished here, as nothing goes to the server's host.
"""
from __future__ import annotations

import json
from typing import Any

from kilonova.common.http import HTTPError
from kilonova.compute import volume_api
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import lookup
from kilonova.compute.db import block_devices, instance_actions, instances


async def root_volume(ref: lookup.ServerRef) -> list[dict] | None:
    """The server's volume mappings when its boot disk is a volume, else None."""
    bdms = [b for b in await ref.cell.db.read(block_devices.for_instance, ref.uuid) if b["volume_id"]]
    return bdms if any(b.get("boot_index") == 0 for b in bdms) else None


async def snapshot(request, svc, ctx, ref: lookup.ServerRef, bdms: list[dict], name: str,
                   metadata: dict[str, str]) -> dict[str, Any]:
    from kilonova.compute.api import create_image, server_actions

    volumes = volume_api.for_caller(svc.volume, ctx)
    await server_actions.begin(request, ref, "createImage")
    try:
        mappings = []
        for bdm in bdms:
            made = await volumes.create_snapshot(bdm["volume_id"], f"snapshot for {name}")
            mappings.append({"source_type": "snapshot", "destination_type": "volume", "snapshot_id": made["id"],
                             "volume_size": made.get("size") or bdm.get("volume_size"),
                             "boot_index": bdm.get("boot_index"), "device_name": bdm.get("device_name"),
                             "delete_on_termination": bool(bdm.get("delete_on_termination")), "tag": bdm.get("tag"),
                             "volume_id": None, "image_id": None, "no_device": None})
        image = await create_image.create_snapshot_image(
            svc, ctx, ref.server, name, metadata, block_device_mapping=json.dumps(mappings), bdm_v2="True",
            root_device_name="/dev/vda", disk_format="raw", container_format="bare")
        upload = await svc.image.put(f"/v2/images/{image['id']}/file", content=b"",
                                     headers={"X-Auth-Token": ctx.token, "Content-Type": "application/octet-stream"})
        if upload.status_code != 204:
            await create_image.discard_image(svc, ctx.token, image["id"])
            raise HTTPError(503, f"The image service answered {upload.status_code} activating the snapshot image.")
    except volume_api.VolumeError as exc:
        await _end(ref, ctx, failed=True)
        raise HTTPError(400 if exc.status < 500 else 503, exc.message) from None
    except BaseException:
        await _end(ref, ctx, failed=True)
        raise
    await _end(ref, ctx)
    return image


async def _end(ref: lookup.ServerRef, ctx, failed: bool = False) -> None:
    def end(session) -> None:
        instances.update(session, ref.uuid, {"task_state": None},
                         expected_task_state=[ACTIONS["createImage"].task_state])
        instance_actions.finish(session, ref.uuid, "createImage", "Error" if failed else None, ctx.request_id)
    await ref.cell.db.write(end)


def image_mappings(image: dict[str, Any]) -> list[dict[str, Any]]:
    """The block device mapping an image made by ``snapshot`` carries (``bdm_v2`` images only)."""
    if str(image.get("bdm_v2", "")).lower() != "true" or not image.get("block_device_mapping"):
        return []
    raw = image["block_device_mapping"]
    try:
        found = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return [{k: v for k, v in m.items() if v is not None} for m in found if isinstance(m, dict)]
