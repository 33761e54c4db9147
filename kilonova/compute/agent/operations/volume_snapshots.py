"""Assisted volume snapshots on this host (``os-assisted-volume-snapshots``), as upstream's libvirt driver
does them for Cinder's file-based drivers: the driver switches the guest's disk of the volume onto the new
overlay file the volume service made (or merges a snapshot's file out of the chain), then the volume service
is told with ``os-update_snapshot_status`` -- ``creating`` / ``deleting`` at 90% when done (the volume
service finishes the snapshot), ``error`` / ``error_deleting`` when the driver failed -- and the mapping's
``connection_info`` is read again from the volume service (it names the volume's new active file).

The report is what makes the volume service keep the guest's new chain: a volume service that is restarting is
asked again (for ``REPORT_RETRY_SECONDS``), and the report goes after the instance's lock is given back."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from kilonova.compute import volume_api
from kilonova.compute.agent.operations import remote
from kilonova.compute.agent.operations.volumes import _bdm, _update, _volumes, initialize

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)
REPORT_RETRY_SECONDS = 300.0


async def _report(agent: ComputeManager, snapshot_id: str, status: str) -> None:
    deadline, pause = time.monotonic() + REPORT_RETRY_SECONDS, 1.0
    while True:
        try:
            await (await _volumes(agent)).update_snapshot_status(snapshot_id, status, "90%")
            return
        except Exception as exc:  # noqa: BLE001 - the volume service ends the snapshot at its deadline then
            refused = isinstance(exc, volume_api.VolumeError) and exc.status < 500   # the snapshot ended already
            if refused or time.monotonic() >= deadline:
                LOG.warning("could not tell the volume service snapshot %s is %s: %s", snapshot_id, status, exc)
                return
            LOG.info("the volume service did not take the report on snapshot %s (%s): asked again", snapshot_id, exc)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 10.0)


async def _refresh(agent: ComputeManager, uuid: str, volume_id: str) -> None:
    """The mapping's connection_info as the volume service has it now (its active file changed)."""
    try:
        bdm = await _bdm(agent, uuid, volume_id)
        if bdm.get("attachment_id"):
            await _update(agent, bdm, {"connection_info": await initialize(agent, await _volumes(agent), bdm)})
    except Exception as exc:  # noqa: BLE001 - the next connection reads it anyway
        LOG.warning("connection_info of volume %s of %s not refreshed: %s", volume_id, uuid, exc)


@remote
async def volume_snapshot_create(agent: ComputeManager, instance: dict, volume_id: str, create_info: dict,
                                 request_id: str | None = None) -> None:
    uuid, snapshot_id = instance["uuid"], create_info["snapshot_id"]
    async with agent._locks[uuid]:
        try:
            await agent.driver.volume_snapshot_create(instance, volume_id, create_info)
        except Exception as exc:  # noqa: BLE001 - reported to the volume service, which fails the snapshot
            LOG.warning("assisted snapshot %s of volume %s of %s failed on %s: %s", snapshot_id, volume_id, uuid,
                        agent.host, exc)
            done = False
        else:
            done = True
            LOG.info("assisted snapshot %s of volume %s of %s taken on %s", snapshot_id, volume_id, uuid, agent.host)
    await _report(agent, snapshot_id, "creating" if done else "error")
    if done:
        await _refresh(agent, uuid, volume_id)


@remote
async def volume_snapshot_delete(agent: ComputeManager, instance: dict, volume_id: str, snapshot_id: str,
                                 delete_info: dict, request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid]:
        try:
            await agent.driver.volume_snapshot_delete(instance, volume_id, snapshot_id, delete_info)
        except Exception as exc:  # noqa: BLE001
            LOG.warning("assisted delete of snapshot %s of volume %s of %s failed on %s: %s", snapshot_id,
                        volume_id, uuid, agent.host, exc)
            done = False
        else:
            done = True
            LOG.info("assisted delete of snapshot %s of volume %s of %s done on %s", snapshot_id, volume_id, uuid,
                     agent.host)
    await _report(agent, snapshot_id, "deleting" if done else "error_deleting")
    if done:
        await _refresh(agent, uuid, volume_id)
