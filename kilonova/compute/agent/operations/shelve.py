"""Shelving on this host: shelve (snapshot, power off), shelve offload (the guest and its claim leave the
host) and the host's part of unshelve (power on where it is, or spawn from the shelved image).

Task states as upstream: shelving -> shelving_image_pending_upload -> shelving_image_uploading -> (None,
or shelving_offloading when ``[DEFAULT] shelved_offload_time`` is 0); shelving_offloading -> None;
unshelving -> spawning -> None. Every state change is a compare-and-set through the conductor, so a
step the conductor's reconcile pass (kilonova/compute/conductor/tasks/unshelve.py) already undid is
not done twice.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from kilonova.common.rpc import RemoteError
from kilonova.compute import shelved_images
from kilonova.compute.agent.operations import remote, volumes
from kilonova.compute.agent.operations.snapshot import SnapshotAborted, _check_image_active, _discard_image
from kilonova.compute.shelved_images import shelved_image_id, without_shelved_keys
from kilonova.compute.virt import driver as power

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)

# The driver reports createImage's task states; a shelve shows its own names for them.
_SHELVING_NAMES = {"image_pending_upload": "shelving_image_pending_upload",
                   "image_uploading": "shelving_image_uploading"}


async def _fault(agent: ComputeManager, uuid: str, message: str) -> None:
    with contextlib.suppress(RemoteError):
        await agent.conductor.call("add_fault", instance_uuid=uuid, code=500, host=agent.host, message=message[:255])


@remote
async def shelve_instance(agent: ComputeManager, instance: dict, image_id: str,
                          request_id: str | None = None) -> None:
    """The API set task_state shelving and made image ``image_id`` (queued) named "<name>-shelved", recorded
    as the server's ``shelved_image_id``."""
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_shelve_instance") as event:
        latest = await agent._current(uuid)
        if latest is None or latest["task_state"] != "shelving" or latest["host"] != agent.host:
            # A repeated delivery (this agent died during the shelve) or a shelve given up meanwhile.
            LOG.info("shelve of %s on %s dropped: the server no longer waits for it", uuid, agent.host)
            await _discard_image(agent, image_id)
            return
        current = ["shelving"]

        async def progress(task_state: str) -> None:
            task_state = _SHELVING_NAMES.get(task_state, task_state)
            if task_state in current:
                return
            if await agent._update(uuid, {"task_state": task_state}, expected_task_state=current) is None:
                raise SnapshotAborted(f"instance {uuid} changed (deleted?) during its shelve")
            current[:] = [task_state]

        was_running = await agent.driver.get_power_state(instance) == power.RUNNING
        try:
            await agent.driver.power_off(instance)
            await progress("image_pending_upload")
            await agent.driver.snapshot(instance, image_id, progress)
            await _check_image_active(agent, image_id)
        except Exception as exc:  # noqa: BLE001 - undo: the server stays where it was, as it was
            LOG.warning("shelve of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await _discard_image(agent, image_id)
            if was_running:
                with contextlib.suppress(Exception):
                    await agent.driver.power_on(instance)
            latest = await agent._current(uuid) or latest
            await agent._update(uuid, {"task_state": None, "power_state": await agent.driver.get_power_state(
                instance), "system_metadata": without_shelved_keys(latest.get("system_metadata"))},
                expected_task_state=current)
            if not isinstance(exc, SnapshotAborted):
                await _fault(agent, uuid, f"Shelve failed (snapshot to image {image_id}): {exc}")
            await agent.finish_action(uuid, request_id, "shelve", failed=True)
            return
        offload_now = agent.conf.getint("DEFAULT", "shelved_offload_time") == 0
        latest = await agent._current(uuid) or instance
        shelved = await agent._update(uuid, {
            "vm_state": "shelved", "task_state": "shelving_offloading" if offload_now else None,
            "power_state": await agent.driver.get_power_state(instance),
            "system_metadata": {**(latest.get("system_metadata") or {}),
                                "shelved_at": datetime.utcnow().isoformat(timespec="microseconds"),
                                "shelved_image_id": image_id, "shelved_host": agent.host}},
            expected_task_state=current)
        if shelved is None:  # deleted meanwhile: nothing will unshelve from the image
            LOG.info("instance %s changed during its shelve on %s", uuid, agent.host)
            await _delete_shelved_image(agent, image_id)
            return
    if offload_now:  # part of the shelve, as upstream: no event of its own
        await _offload(agent, shelved, None, "compute_shelve_offload_instance")
    await agent.finish_action(uuid, request_id, "shelve")


@remote
async def shelve_offload_instance(agent: ComputeManager, instance: dict, request_id: str | None = None) -> None:
    """shelveOffload (or the periodic pass, or a shelve with shelved_offload_time 0): task shelving_offloading."""
    await _offload(agent, instance, request_id, "compute_shelve_offload_instance")


async def _offload(agent: ComputeManager, instance: dict, request_id: str | None, event_name: str) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, event_name) as event:
        current = await agent._current(uuid)
        if current is None or current["task_state"] != "shelving_offloading" or current["host"] != agent.host:
            LOG.info("offload of %s on %s dropped: the server no longer waits for it", uuid, agent.host)
            return
        try:
            # Guest, then ports, then claim, then the record: a crash half-way leaves the server
            # shelving_offloading, which the conductor's reconcile pass finishes.
            await agent.driver.destroy(current)
            await unbind_ports(agent, current.get("network_info") or [])
            await volumes.disconnect_for_offload(agent, uuid)
            await agent.reporter.release(uuid)
        except Exception as exc:  # noqa: BLE001 - leave it shelved on this host, say why
            LOG.warning("shelve offload of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await agent._update(uuid, {"task_state": None}, expected_task_state=["shelving_offloading"])
            await _fault(agent, uuid, f"Shelve offload failed: {exc}")
            await agent.finish_action(uuid, request_id, "shelveOffload", failed=True)
            return
        await agent._update(uuid, {"vm_state": "shelved_offloaded", "task_state": None, "power_state": power.NOSTATE,
                                   "host": None, "node": None},
                            expected_task_state=["shelving_offloading"], expected_host=agent.host)
        agent.usage_changed()
    await agent.finish_action(uuid, request_id, "shelveOffload")


async def unbind_ports(agent: ComputeManager, network_info: list[dict]) -> None:
    """The server's ports stay its own (addresses kept) but are bound to no host while it is offloaded."""
    for vif in network_info:
        reply = await agent.ports.network.put(f"/v2.0/ports/{vif['port_id']}", json={"port": {"binding:host_id": ""}})
        if reply.status_code not in (200, 404):
            raise RuntimeError(f"port {vif['port_id']} could not be unbound: {reply.status_code} {reply.text[:200]}")


async def bind_ports(agent: ComputeManager, network_info: list[dict]) -> None:
    for vif in network_info:
        reply = await agent.ports.network.put(f"/v2.0/ports/{vif['port_id']}",
                                              json={"port": {"binding:host_id": agent.host}})
        if reply.status_code != 200:
            raise RuntimeError(f"port {vif['port_id']} could not be bound to {agent.host}: {reply.status_code} "
                               f"{reply.text[:200]}")


@remote
async def unshelve_instance(agent: ComputeManager, instance: dict, image: dict | None = None,
                            request_id: str | None = None) -> None:
    """The conductor's last step of unshelve: a SHELVED server (task powering-on) is powered on here; a
    SHELVED_OFFLOADED one (task unshelving, this host claimed for it) is spawned from its shelved image."""
    if instance["vm_state"] == "shelved":
        await _power_on_shelved(agent, instance, request_id)
    else:
        await _spawn_offloaded(agent, instance, image or {}, request_id)


async def _delete_shelved_image(agent: ComputeManager, image_id: str | None) -> None:
    """As upstream, the snapshot of a shelved server is deleted once the server runs again."""
    await shelved_images.delete(agent.images, image_id)


async def _power_on_shelved(agent: ComputeManager, instance: dict, request_id: str | None) -> None:
    uuid = instance["uuid"]
    # Upstream unshelves a server that kept its guest with start_instance: its event has that name.
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_start_instance") as event:
        current = await agent._current(uuid)
        if current is None or current["task_state"] != "powering-on" or current["vm_state"] != "shelved":
            return
        try:
            if uuid not in agent.driver.list_instance_uuids():  # a simulated guest lost with its agent
                await agent.driver.spawn(current, {"id": current.get("image_ref")}, current.get("network_info") or [])
            else:
                await agent.driver.power_on(current)
        except Exception as exc:  # noqa: BLE001 - still shelved here; say why
            event.failed(exc)
            await agent._update(uuid, {"task_state": None}, expected_task_state=["powering-on"])
            await _fault(agent, uuid, f"Unshelve failed: {exc}")
            await agent.finish_action(uuid, request_id, "unshelve", failed=True)
            return
        image_id = shelved_image_id(current)
        done = await agent._update(uuid, {"vm_state": "active", "task_state": None, "power_state": power.RUNNING,
                                          "system_metadata": without_shelved_keys(current.get("system_metadata"))},
                                   expected_task_state=["powering-on"], expected_vm_state=["shelved"])
        if done is None:  # given up by the conductor (past its deadline) meanwhile: still shelved, so off
            with contextlib.suppress(Exception):
                await agent.driver.power_off(current)
            return
        await _delete_shelved_image(agent, image_id)
    await agent.finish_action(uuid, request_id, "unshelve")


async def _spawn_offloaded(agent: ComputeManager, instance: dict, image: dict, request_id: str | None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_unshelve_instance") as event:
        current = await agent._update(uuid, {"task_state": "spawning"}, expected_task_state=["unshelving"],
                                      expected_vm_state=["shelved_offloaded"], expected_host=agent.host)
        if current is None:
            LOG.info("unshelve of %s on %s dropped: the server no longer waits for it", uuid, agent.host)
            return
        network_info = current.get("network_info") or []
        image_id = shelved_image_id(current)
        try:
            await bind_ports(agent, network_info)
            block_devices = await volumes.connect_for_spawn(agent, uuid)
            await agent.driver.spawn(current, {**image, "id": image.get("id") or image_id}, network_info,
                                     **({"block_device_info": block_devices} if block_devices else {}))
            await volumes.complete_for_spawn(agent, block_devices)
        except Exception as exc:  # noqa: BLE001 - back to SHELVED_OFFLOADED, holding nothing
            LOG.warning("unshelve of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await agent.driver.destroy(current)
            with contextlib.suppress(Exception):
                await volumes.disconnect_for_offload(agent, uuid)
            with contextlib.suppress(Exception):
                await unbind_ports(agent, network_info)
            await agent.reporter.release(uuid)
            await agent._update(uuid, {"task_state": None, "host": None, "node": None, "power_state": power.NOSTATE},
                                expected_task_state=["spawning"], expected_host=agent.host)
            await _fault(agent, uuid, f"Unshelve of instance {uuid} failed on host {agent.host}: {exc}")
            await agent.finish_action(uuid, request_id, "unshelve", failed=True)
            return
        done = await agent._update(uuid, {
            "vm_state": "active", "task_state": None, "power_state": await agent.driver.get_power_state(current),
            "launched_at": datetime.utcnow().isoformat(timespec="microseconds"),
            "system_metadata": without_shelved_keys(current.get("system_metadata"))},
            expected_task_state=["spawning"], expected_host=agent.host)
        if done is None:
            # The conductor gave up on this unshelve (past its deadline) or the server was deleted
            # meanwhile: whoever did that released its claim and ports; the guest must go too.
            LOG.warning("unshelve of %s on %s finished too late: undoing the guest", uuid, agent.host)
            event.failed(RuntimeError(f"The unshelve was given up (past its deadline, or the server was deleted) "
                                      f"while the guest was spawning on {agent.host}; the guest was removed."))
            await agent.driver.destroy(current)
            await agent.finish_action(uuid, request_id, "unshelve", failed=True)
            return
        agent.usage_changed()
    await _delete_shelved_image(agent, image_id)
    await agent.finish_action(uuid, request_id, "unshelve")
