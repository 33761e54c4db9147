"""Building a server on this host, and deleting it."""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import events, live_migrate, remote, volumes
from kilonova.compute.agent.security_groups import security_groups
from kilonova.compute.virt.driver import BuildAbort

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


@remote
async def build_and_run_instance(agent: ComputeManager, instance: dict, request_spec: dict, alternates: list,
                                 attempt: int = 1, deadline: float | None = None) -> None:
    uuid = instance["uuid"]
    if deadline is not None and time.time() > deadline:
        LOG.warning("the build of %s reached %s after its deadline: left to the conductor", uuid, agent.host)
        return
    async with agent._locks[uuid]:
        # Only a server still waiting for this host is built: a late or repeated message (the server
        # timed out to ERROR and gave back its claim, is ACTIVE already, was rescheduled elsewhere or
        # deleted) finds it in another state and is dropped.
        if await agent._update(uuid, {"task_state": "spawning"}, expected_task_state=[None],
                              expected_vm_state=["building"], expected_host=agent.host) is None:
            LOG.info("build of %s on %s dropped: the server no longer waits for this build", uuid, agent.host)
            return
        if agent._started_builds is not None:
            agent._started_builds.add(uuid)
        network_info: list[dict] = []
        # Upstream's name for the step (its manager method _do_build_and_run_instance).
        request_id = (request_spec.get("context") or {}).get("request_id")
        try:
            async with agent.event(uuid, request_id, "compute__do_build_and_run_instance"):
                # A driver that waits for its ports to be plugged collects their events from before the binding.
                with events.instance_events(agent).collecting(uuid) as collector:
                    network_info = await agent.ports.allocate(instance, request_spec.get("requested_networks") or [])
                    await security_groups(agent).refresh()  # the new ports' rules before the guest runs
                    block_devices = await volumes.connect_for_spawn(agent, uuid)
                    if block_devices:
                        await agent.driver.spawn(instance, request_spec.get("image") or {}, network_info,
                                                 block_device_info=block_devices)
                    else:
                        await agent.driver.spawn(instance, request_spec.get("image") or {}, network_info)
                    if events.waits_for_vif_plugging(agent):
                        await events.wait_for_vif_plugged(agent, collector, uuid, network_info)
                    await volumes.complete_for_spawn(agent, block_devices)
        except Exception as exc:  # noqa: BLE001 - any failure here is a failed build to report
            LOG.info("build of %s failed on %s: %s", uuid, agent.host, exc)
            await agent.ports.release(uuid, network_info)
            await agent.driver.destroy(instance)
            await volumes.disconnect_after_failed_spawn(agent, uuid)
            # An abort (conductor RPC 1.6) ends the build in ERROR without trying the alternates; a conductor
            # of an older release retries them as before.
            aborted = {"aborted": True} if isinstance(exc, BuildAbort) else {}
            agent.failed_builds += 1
            agent.usage_changed()
            await agent.conductor.cast("build_failed", instance_uuid=uuid, host=agent.host, reason=str(exc),
                                      request_spec=request_spec, alternates=alternates, attempt=attempt,
                                      **aborted)
            return
        done = await agent._update(uuid, {
            "vm_state": "active", "task_state": None, "power_state": await agent.driver.get_power_state(instance),
            "launched_at": datetime.utcnow().isoformat(timespec="microseconds"), "network_info": network_info,
        }, expected_task_state=["spawning"])
        if done is None:  # deleted while spawning: undo
            await agent.driver.destroy(instance)
            await agent.ports.release(uuid, network_info)
            return
        agent.failed_builds = 0
        agent.usage_changed()
    await agent.finish_action(uuid, request_id, "create")


@remote
async def terminate_instance(agent: ComputeManager, instance: dict, request_id: str | None = None) -> None:
    """Delete the server (``request_id``: of its "delete" action; the conductor finishes the action)."""
    uuid = instance["uuid"]
    await live_migrate.cancel_for_delete(agent, instance)  # a live migration holding the lock stops, as upstream
    async with agent._locks[uuid]:
        async with agent.event(uuid, request_id, "compute_terminate_instance"):
            await agent.driver.destroy(instance)
            current = await agent._current(uuid) or instance
            await agent.ports.release(uuid, current.get("network_info") or [])
            await volumes.release_all(agent, uuid)
            await agent.reporter.release(uuid)
        await agent.conductor.call("instance_destroy", instance_uuid=uuid)
        agent.usage_changed()
    agent._locks.pop(uuid, None)
