"""What is asked of a running guest on this host: its admin password, a crash dump (NMI), its network
configuration again, its diagnostics.

set_admin_password and get_diagnostics are calls (the API waits for the answer); the others casts.
The errors set_admin_password raises are the ones the API turns into upstream's answers (409 for
InstancePasswordSetFailed / InstanceAgentNotEnabled, 501 for NotImplementedError); any other
failure becomes InstancePasswordSetFailed without its details, as upstream hides them from the caller.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote
from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import InstanceAgentNotEnabled, InstancePasswordSetFailed

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


@remote
async def set_admin_password(agent: ComputeManager, instance: dict, new_pass: str,
                             request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_set_admin_password", finishes="changePassword") as event:
        try:
            if await agent.driver.get_power_state(instance) != power.RUNNING:
                raise InstancePasswordSetFailed(uuid, f"instance {uuid} is not running")
            await agent.driver.set_admin_password(instance, new_pass)
        except (InstancePasswordSetFailed, InstanceAgentNotEnabled, NotImplementedError) as exc:
            event.failed(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - its text may hold the password: logged here only
            LOG.exception("setting the admin password of %s failed on %s", uuid, agent.host)
            failed = InstancePasswordSetFailed(uuid, "error setting admin password")
            event.failed(failed)
            raise failed from None
        finally:
            await agent._update(uuid, {"task_state": None}, expected_task_state=["updating_password"])


@remote
async def trigger_crash_dump(agent: ComputeManager, instance: dict, request_id: str | None = None) -> None:
    """An NMI to the guest; neither its task state nor its power state change (what the guest does with the
    NMI is its own configuration), as upstream. A failure is an Error event and a fault."""
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_trigger_crash_dump", finishes="trigger_crash_dump") as event:
        try:
            await agent.driver.trigger_crash_dump(instance)
        except Exception as exc:  # noqa: BLE001
            LOG.warning("crash dump of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await agent.conductor.call("add_fault", instance_uuid=uuid, code=500, message=str(exc)[:255],
                                       host=agent.host)


@remote
async def inject_network_info(agent: ComputeManager, instance: dict) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid]:
        current = await agent._current(uuid) or instance
        try:
            await agent.driver.inject_network_info(current, current.get("network_info") or [])
        except Exception:  # noqa: BLE001 - nothing to give back to anybody: logged
            LOG.exception("injecting the network info of %s failed on %s", uuid, agent.host)


@remote
async def get_diagnostics(agent: ComputeManager, instance: dict) -> dict:
    """The driver's diagnostics in the 2.48 format (the API derives the older one from it)."""
    return await agent.driver.get_diagnostics(instance)
