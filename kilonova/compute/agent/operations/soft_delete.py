"""Soft delete and restore on this host: the guest is powered off and kept, or powered on again.

No driver here has a soft delete of its own: as upstream falls back to, it is a power off (and a
restore a power on). Ports and Placement allocations stay with the server until it is reclaimed
(then ``terminate_instance`` gives them back).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


@remote
async def soft_delete_instance(agent: ComputeManager, instance: dict, request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_soft_delete_instance", finishes="delete") as event:
        try:
            if uuid in agent.driver.list_instance_uuids() or agent.driver.syncs_power_state:
                await agent.driver.power_off(instance)
        except Exception as exc:  # noqa: BLE001 - the guest may still run: the server is still soft-deleted
            LOG.warning("powering off soft-deleted %s on %s failed: %s", uuid, agent.host, exc)
            event.failed(exc)
        await agent._update(uuid, {"vm_state": "soft-delete", "task_state": None,
                                   "power_state": await agent.driver.get_power_state(instance)},
                            expected_task_state=["soft-deleting"])


@remote
async def restore_instance(agent: ComputeManager, instance: dict, request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_restore_instance", finishes="restore") as event:
        try:
            await agent.driver.power_on(instance)
        except Exception as exc:  # noqa: BLE001 - stays SOFT_DELETED, restorable again
            LOG.warning("restore of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await agent._update(uuid, {"task_state": None}, expected_task_state=["restoring"])
            await agent.conductor.call("add_fault", instance_uuid=uuid, code=500, message=str(exc)[:255],
                                       host=agent.host)
            return
        await agent._update(uuid, {"vm_state": "active", "task_state": None,
                                   "power_state": await agent.driver.get_power_state(instance)},
                            expected_task_state=["restoring"])
