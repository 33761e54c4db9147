"""Power actions on this host: one driver call each (stop, start, pause, unpause, suspend, resume), and reboot.

What each does -- the driver call, the vm_state and power state it ends in -- is read from the one
table of actions (kilonova/compute/actions.py), shared with the API.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kilonova.compute import actions
from kilonova.compute.agent.operations import remote
from kilonova.compute.virt import driver as power

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


async def _power(agent: ComputeManager, method: str, instance: dict, request_id: str | None) -> None:
    action = actions.BY_RPC_METHOD[method]
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, f"compute_{method}") as event:
        try:
            await getattr(agent.driver, action.driver_method)(instance)
        except Exception as exc:  # noqa: BLE001 - report and leave the server usable
            LOG.warning("%s of %s failed on %s: %s", method, uuid, agent.host, exc)
            event.failed(exc)
            await agent._update(uuid, {"task_state": None})
            await agent.conductor.call("add_fault", instance_uuid=uuid, code=500, message=str(exc)[:255],
                                       host=agent.host)
        else:
            await agent._update(uuid, {"vm_state": action.vm_state_after, "power_state": action.power_state_after,
                                       "task_state": None})
    await agent.finish_action(uuid, request_id, action.instance_action, failed=event.error is not None)


def _power_method(method: str):
    async def operation(agent: ComputeManager, instance: dict, request_id: str | None = None) -> None:
        await _power(agent, method, instance, request_id)

    operation.__name__ = operation.__qualname__ = method
    operation.__doc__ = f"The {actions.BY_RPC_METHOD[method].name} action: one driver call."
    return remote(operation)


for _method in actions.BY_RPC_METHOD:
    _power_method(_method)


@remote
async def reboot_instance(agent: ComputeManager, instance: dict, reboot_type: str = "SOFT",
                          request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_reboot_instance") as event:
        try:
            # A simulated guest lost with its agent is recreated first; a real hypervisor's reboot
            # rebuilds a missing domain itself.
            if not agent.driver.syncs_power_state and uuid not in agent.driver.list_instance_uuids():
                await agent.driver.power_on(instance)
            await agent.driver.reboot(instance, reboot_type)
        except Exception as exc:  # noqa: BLE001
            LOG.warning("reboot of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await agent._update(uuid, {"task_state": None})
        else:
            await agent._update(uuid, {"vm_state": "active", "power_state": power.RUNNING, "task_state": None})
    await agent.finish_action(uuid, request_id, "reboot", failed=event.error is not None)
