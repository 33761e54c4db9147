"""createImage on this host: the root disk uploaded into the image service."""
from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from kilonova.common.rpc import RemoteError
from kilonova.compute.agent.operations import remote

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


SNAPSHOT_TASK_STATES = ("image_snapshot_pending", "image_snapshot", "image_pending_upload", "image_uploading")


class SnapshotAborted(Exception):
    """The snapshot cannot finish: the server changed under it or the image did not become active."""


@remote
async def snapshot_instance(agent: ComputeManager, instance: dict, image_id: str,
                            request_id: str | None = None) -> None:
    """createImage: the API made image ``image_id`` (queued), set task_state image_snapshot_pending and
    started the "createImage" action of ``request_id``.

    Task states follow Nova: image_snapshot, image_pending_upload (the disk is copied),
    image_uploading, then None. A failure (or the server being deleted meanwhile) removes
    the image unless it became active, clears the task state and records a fault; the step
    (compute_snapshot_instance, as upstream names it) records Error and the action ends with it.
    """
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_snapshot_instance") as event:
        done = await take_snapshot(agent, instance, image_id, "image_snapshot_pending", "image_snapshot", event)
    await agent.finish_action(uuid, request_id, "createImage", failed=not done)


async def take_snapshot(agent: ComputeManager, instance: dict, image_id: str, pending: str,
                        first: str | None = None, event=None) -> bool:
    """Upload the server's disk into image ``image_id``, from task state ``pending`` (createImage's
    image_snapshot_pending, createBackup's image_backup) through ``first`` (when it has one),
    image_pending_upload and image_uploading to None. True when the image is active; on failure
    the image is discarded, the task state cleared, a fault recorded (and ``event``, the instance action's
    step when given, marked failed). The caller holds the lock."""
    uuid = instance["uuid"]
    current = [pending]
    if first is not None:
        if await agent._update(uuid, {"task_state": first}, expected_task_state=[pending]) is None:
            await _discard_image(agent, image_id)
            if event is not None:
                event.failed(SnapshotAborted(f"instance {uuid} is no longer waiting for its snapshot"))
            return False
        current = [first]

    async def progress(task_state: str) -> None:
        if await agent._update(uuid, {"task_state": task_state}, expected_task_state=current) is None:
            raise SnapshotAborted(f"instance {uuid} changed (deleted?) during its snapshot")
        current[:] = [task_state]

    try:
        await progress("image_pending_upload")
        await agent.driver.snapshot(instance, image_id, progress)
        await _check_image_active(agent, image_id)
    except Exception as exc:  # noqa: BLE001 - report, and leave the server as it was
        LOG.warning("event=compute.instance.snapshot.error instance=%s image=%s host=%s: %s",
                    uuid, image_id, agent.host, exc)
        if event is not None:  # the instance action's step (events.Event) records the failure
            event.failed(exc)
        await _discard_image(agent, image_id)
        await agent._update(uuid, {"task_state": None}, expected_task_state=current)
        if not isinstance(exc, SnapshotAborted):
            with contextlib.suppress(RemoteError):
                await agent.conductor.call("add_fault", instance_uuid=uuid, code=500, host=agent.host,
                                          message=f"Snapshot to image {image_id} failed: {exc}"[:255])
        return False
    await agent._update(uuid, {"task_state": None}, expected_task_state=current)
    LOG.info("event=compute.instance.snapshot.end instance=%s image=%s host=%s", uuid, image_id, agent.host)
    return True


async def _check_image_active(agent: ComputeManager, image_id: str) -> None:
    if agent.images is None:
        return
    response = await agent.images.get(f"/v2/images/{image_id}")
    status = response.json().get("status") if response.status_code == 200 else f"gone ({response.status_code})"
    if status != "active":
        raise RuntimeError(f"image {image_id} is {status} after its upload, not active")


async def _discard_image(agent: ComputeManager, image_id: str) -> None:
    """Delete a snapshot image that did not become active (nothing usable is in it)."""
    if agent.images is None:
        return
    try:
        response = await agent.images.get(f"/v2/images/{image_id}")
        if response.status_code == 200 and response.json().get("status") != "active":
            await agent.images.delete(f"/v2/images/{image_id}")
    except Exception:  # noqa: BLE001 - an orphan queued image is harmless; say so and go on
        LOG.warning("could not delete the failed snapshot image %s", image_id, exc_info=True)
