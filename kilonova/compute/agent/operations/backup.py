"""createBackup on this host: a snapshot (createImage's code), then the rotation of that backup type."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote
from kilonova.compute.agent.operations.snapshot import take_snapshot

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


@remote
async def backup_instance(agent: ComputeManager, instance: dict, image_id: str, backup_type: str, rotation: int,
                          request_id: str | None = None) -> None:
    """The API made image ``image_id`` (image_type backup) and set task_state image_backup.

    Task states as upstream: image_backup -> image_pending_upload -> image_uploading -> None; then the
    backups of this server and ``backup_type`` beyond the ``rotation`` newest are deleted (with rotation
    0, every one of them, the new one too, as upstream).
    """
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_backup_instance") as event:
        if await take_snapshot(agent, instance, image_id, "image_backup", event=event):
            try:
                await rotate_backups(agent, uuid, backup_type, rotation)
            except Exception as exc:  # noqa: BLE001 - the backup itself is done; the rotation is retried next time
                LOG.warning("rotating the %s backups of %s failed: %s", backup_type, uuid, exc)
                event.failed(exc)
    await agent.finish_action(uuid, request_id, "createBackup", failed=event.error is not None)


async def rotate_backups(agent: ComputeManager, uuid: str, backup_type: str, rotation: int) -> list[str]:
    """Delete the oldest backups of ``uuid`` of ``backup_type`` beyond ``rotation``; their ids."""
    if agent.images is None:
        return []
    backups: list[dict] = []
    query: dict[str, str] = {"image_type": "backup", "backup_type": backup_type, "instance_uuid": uuid,
                             "sort_key": "created_at", "sort_dir": "desc", "limit": "100"}
    while True:
        reply = await agent.images.get("/v2/images", params=query)
        if reply.status_code != 200:
            raise RuntimeError(f"listing the backups failed: {reply.status_code} {reply.text[:200]}")
        page = reply.json().get("images", [])
        backups += page
        if not page or "next" not in reply.json():
            break
        query["marker"] = page[-1]["id"]
    deleted = []
    for image in backups[rotation:]:
        reply = await agent.images.delete(f"/v2/images/{image['id']}")
        if reply.status_code not in (204, 404):
            raise RuntimeError(f"deleting backup {image['id']} failed: {reply.status_code}")
        LOG.info("rotation of %s backups of %s: deleted image %s", backup_type, uuid, image["id"])
        deleted.append(image["id"])
    return deleted
