"""The conductor's side of volumes: a server's block device mappings for its host (agents never open a
database), and the reconcile pass for attaches and detaches a crash cut short.

A mapping ``attaching`` past ``[compute] volume_attach_timeout`` (its host died before connecting it, the
cast was lost): when the volume service says the attachment was completed the mapping is marked attached
(the volume is ``in-use``), else the reservation is given back -- attachment deleted, the volume
``available`` -- and the mapping removed. A mapping ``detaching`` past it is attached again (``in-use``;
the user may detach again). A mapping of a server that no longer exists is released.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kilonova.common.db import NotFound
from kilonova.compute import volume_reservations
from kilonova.compute.cleanup import release_volumes
from kilonova.compute.conductor.tasks import reconcile, remote
from kilonova.compute.db import block_devices, instances
from kilonova.compute.volume_api import VolumeError, VolumeNotFound, as_service

LOG = logging.getLogger(__name__)
# Operations that connect a server's volumes themselves, with deadlines of their own.
BUILDING_TASKS = ("spawning", "unshelving", "rebuilding", "rebuild_spawning")


@remote
async def bdm_list(conductor, instance_uuid: str) -> list[dict]:
    cell = await conductor.cell_for_instance(instance_uuid)
    return await cell.db.read(block_devices.for_instance, instance_uuid)


@remote
async def bdm_update(conductor, instance_uuid: str, bdm_uuid: str, values: dict) -> dict:
    cell = await conductor.cell_for_instance(instance_uuid)
    return await cell.db.write(block_devices.update, bdm_uuid, values)


@remote
async def bdm_destroy(conductor, instance_uuid: str, bdm_uuid: str) -> bool:
    cell = await conductor.cell_for_instance(instance_uuid)
    return await cell.db.write(block_devices.destroy, bdm_uuid)


@reconcile
async def reconcile_volume_attachments(conductor) -> int:
    """Settle the attaches and detaches stuck past their deadline in every cell; how many were."""
    if conductor.volumes is None:
        return 0
    timeout = conductor.conf.getfloat("compute", "volume_attach_timeout")
    older_than = datetime.utcnow() - timedelta(seconds=timeout)
    settled = 0
    for cell in conductor.cells.real():
        try:
            stuck = await cell.db.read(block_devices.in_status, ("attaching", "detaching", "swapping"), older_than)
            if stuck:
                volumes = await as_service(conductor.volumes)
            for bdm in stuck:
                await _settle(cell, volumes, bdm)
                settled += 1
        except Exception:  # noqa: BLE001 - a cell or volume service that is down: the next pass retries
            LOG.warning("settling volume attachments in cell %s failed; next pass retries", cell.name, exc_info=True)
    return settled


async def _settle(cell, volumes, bdm: dict) -> None:
    uuid, volume_id = bdm["instance_uuid"], bdm["volume_id"]
    try:
        server = await cell.db.read(instances.get, uuid)
    except NotFound:
        LOG.warning("volume %s of deleted server %s released", volume_id, uuid)
        await release_volumes(volumes, [bdm])
        await cell.db.write(block_devices.destroy, bdm["uuid"])
        return
    if server["vm_state"] == "building" or server.get("task_state") in BUILDING_TASKS:
        return  # its build (or unshelve, evacuation) connects it, or fails and gives it back, before its deadline
    if bdm["status"] in ("detaching", "swapping"):
        LOG.warning("detach of volume %s from %s did not finish: it stays attached", volume_id, uuid)
        await cell.db.write(block_devices.update, bdm["uuid"], {"status": "attached"})
        return
    completed = False
    if bdm.get("attachment_id"):
        try:
            attachment = await volumes.attachment_get(bdm["attachment_id"])
            completed = attachment.get("attach_status", attachment.get("status")) == "attached"
        except VolumeNotFound:
            completed = False
        except VolumeError:
            raise
    if completed:
        LOG.warning("attach of volume %s to %s was completed but not recorded: recorded", volume_id, uuid)
        await cell.db.write(block_devices.update, bdm["uuid"], {"status": "attached"})
        return
    LOG.warning("attach of volume %s to %s did not finish: its reservation is given back", volume_id, uuid)
    if bdm.get("attachment_id"):
        await volumes.attachment_delete(bdm["attachment_id"])
    await cell.db.write(block_devices.destroy, bdm["uuid"])


async def reserve_again(conductor, cell, instance_uuid: str) -> None:
    """A server whose move was given up on with its destination gone (an evacuation past its deadline): each
    volume's connection, which may be the dead destination's (half made, ``attaching``), is replaced by a
    reservation for the server, so that no volume stays ``attaching`` for it and it can be moved again."""
    if conductor.volumes is None:
        return
    mappings = [b for b in await cell.db.read(block_devices.for_instance, instance_uuid) if b.get("volume_id")]
    if not mappings:
        return
    volumes = await as_service(conductor.volumes)

    async def update(bdm: dict, values: dict) -> dict:
        return await cell.db.write(block_devices.update, bdm["uuid"], values)

    for bdm in mappings:
        await volume_reservations.reserve_again(volumes, bdm, update)
