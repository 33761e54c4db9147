"""Resize and cold migration on the compute hosts, step by step as upstream's hosts hand it over:

    conductor --prep_resize--> destination --resize_instance--> source --finish_resize--> destination
    confirm:  API --confirm_resize--> source (removes what is left there; the source claim is dropped)
    revert:   API --revert_resize--> destination (destroys the new guest) --finish_revert_resize--> source

Each step is recorded on the migration record (its ``step`` and status, compare-and-set, so a late or
repeated message finds the move elsewhere and does nothing) and as an event of the instance action.
A step that fails rolls the move back to the source (``move_endings.end_on_source``): the instance
holds the source claim again and runs there as before, with a fault saying what failed; when its
guest cannot come back, it is ERROR there. A step nobody finishes is ended by the conductor's
reconcile pass (kilonova/compute/conductor/tasks/migrate_server.py).
"""
from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from kilonova.common.rpc import NoSuchTarget
from kilonova.compute import move_endings
from kilonova.compute.agent.operations import remote, volumes
from kilonova.compute.move_endings import AgentStore
from kilonova.compute.virt.driver import MigrationError, ResizeError

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


def _was_running(instance: dict) -> bool:
    """Whether the guest ran before the move (a stopped server stays stopped after it)."""
    return (instance.get("system_metadata") or {}).get("old_vm_state", instance.get("vm_state")) != "stopped"


async def _bind_ports(agent: ComputeManager, instance: dict, host: str) -> None:
    """The server's ports follow its guest (``binding:host_id``)."""
    for vif in instance.get("network_info") or []:
        response = await agent.ports.network.put(f"/v2.0/ports/{vif['port_id']}",
                                                 json={"port": {"binding:host_id": host}})
        if response.status_code != 200:
            LOG.warning("port %s of %s could not be bound to %s: %s", vif["port_id"], instance["uuid"], host,
                        response.status_code)


async def _roll_back(agent: ComputeManager, migration: dict, reason: str, request_id: str | None, **kwargs) -> None:
    await move_endings.end_on_source(AgentStore(agent.conductor), agent.reporter.placement, migration, reason,
                                     request_id=request_id, **kwargs)
    agent.usage_changed()


def _kind(migration: dict) -> str:
    return "Resize" if migration["migration_type"] == "resize" else "Cold migration"


@remote
async def prep_resize(agent: ComputeManager, instance: dict, migration: dict, flavor: dict, image: dict | None = None,
                      request_id: str | None = None) -> None:
    """Destination: can the server come here? Then the source is told to send it."""
    uuid, store = instance["uuid"], AgentStore(agent.conductor)
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_prep_resize") as event:
        try:
            if migration["migration_type"] == "migration" and migration["source_compute"] == agent.host:
                raise MigrationError(f"Unable to migrate instance ({uuid}) to current host ({agent.host}).")
            current = await store.instance_update(uuid, {"old_flavor": instance["flavor"], "new_flavor": flavor},
                                                  expected_task_state=["resize_prep"])
            moved = await store.migration_update(uuid, migration["uuid"], {"step": "resize_instance"},
                                                 expected_status=["pre-migrating"])
            if current is None or moved is None:
                LOG.info("prep_resize of %s dropped on %s: the server or its move changed", uuid, agent.host)
                return
            await agent.compute_rpc(migration["source_compute"]).cast(
                "resize_instance", instance=current, migration=moved, flavor=flavor, image=image or {},
                request_id=request_id)
        except Exception as exc:  # noqa: BLE001 - nothing moved yet: back to the source as it was
            event.failed(exc)
            await _roll_back(agent, migration, f"{_kind(migration)} refused by {agent.host}: {exc}", request_id)


@remote
async def resize_instance(agent: ComputeManager, instance: dict, migration: dict, flavor: dict,
                          image: dict | None = None, request_id: str | None = None) -> None:
    """Source: stop the guest, make its disks ready to move, move its ports, tell the destination."""
    uuid, store = instance["uuid"], AgentStore(agent.conductor)
    dest = migration["dest_compute"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_resize_instance") as event:
        moved = await store.migration_update(uuid, migration["uuid"], {"status": "migrating", "step": "resize_instance"},
                                             expected_status=["pre-migrating"])
        if moved is None:
            return
        current = await store.instance_update(uuid, {"task_state": "resize_migrating"},
                                              expected_task_state=["resize_prep"])
        if current is None:
            await _roll_back(agent, moved, "", request_id)  # deleted (or reset) meanwhile: free the claims
            return
        try:
            disk_info = await agent.driver.migrate_disk_and_power_off(current, dest, flavor)
        except ResizeError as exc:  # refused before anything changed (e.g. a smaller disk)
            event.failed(exc)
            await _roll_back(agent, moved, f"{_kind(migration)} of the server failed on {agent.host}: {exc}",
                             request_id)
            return
        except Exception as exc:  # noqa: BLE001 - the guest may be half-stopped: bring it back if it can
            event.failed(exc)
            await _restore_here(agent, current, moved, f"{_kind(migration)} of the server failed on {agent.host} "
                                                       f"while its guest was being stopped: {exc}", request_id)
            return
        try:  # the guest is off: its volumes' connections to this host go, the destination makes its own
            await volumes.disconnect_for_offload(agent, uuid)
        except Exception as exc:  # noqa: BLE001 - the guest comes back here, connected again
            event.failed(exc)
            await _restore_here(agent, current, moved, f"{_kind(migration)} of the server failed on {agent.host}: "
                                                       f"its volumes could not be handed over: {exc}", request_id)
            return
        moved = await store.migration_update(uuid, moved["uuid"], {"status": "post-migrating", "step": "finish_resize"},
                                             expected_status=["migrating"])
        current = await store.instance_update(uuid, {"task_state": "resize_migrated"},
                                              expected_task_state=["resize_migrating"])
        if moved is None or current is None:
            return  # ended by the reconcile pass or a delete meanwhile
        await _bind_ports(agent, current, dest)
        agent.usage_changed()
        try:
            await agent.compute_rpc(dest).cast("finish_resize", instance=current, migration=moved, disk_info=disk_info,
                                               image=image or {}, request_id=request_id)
        except NoSuchTarget:
            await _restore_here(agent, current, moved, f"Compute host {dest} could not be reached to finish the "
                                                       f"{_kind(migration).lower()}.", request_id)


async def _restore_here(agent: ComputeManager, instance: dict, migration: dict, reason: str,
                        request_id: str | None) -> None:
    """On the source: the guest back from the copy kept here, or ERROR here when there is none."""
    old = {**instance, "flavor": instance.get("old_flavor") or instance["flavor"], "host": agent.host}
    await _bind_ports(agent, instance, agent.host)
    try:
        await _revert_here(agent, old, instance.get("network_info") or [], _was_running(instance))
    except Exception as exc:  # noqa: BLE001 - nothing to come back to: ERROR, with what the operator can do
        LOG.warning("instance %s could not be restored on %s: %s", instance["uuid"], agent.host, exc)
        await _roll_back(agent, migration, f"{reason} Its guest could not be restored on {agent.host} ({exc}): "
                                           "hard reboot or rebuild the server.", request_id, vm_state="error",
                         power_state=await agent.driver.get_power_state(old))
        return
    await _roll_back(agent, migration, reason, request_id, power_state=await agent.driver.get_power_state(old))


async def _revert_here(agent: ComputeManager, old: dict, network_info: list[dict], power_on: bool) -> None:
    """The guest back on this host (the source) from its kept copy, its volumes connected to this host again."""
    connected = await volumes.connect_for_spawn(agent, old["uuid"])
    await agent.driver.finish_revert_migration(old, network_info, power_on, block_device_info=connected)
    await volumes.complete_for_spawn(agent, connected)


async def _let_go_of_volumes(agent: ComputeManager, uuid: str) -> None:
    """A destination whose guest went (a revert, a failed move): its volume connections go too, so that the
    source can connect them again."""
    try:
        await volumes.disconnect_for_offload(agent, uuid)
    except Exception as exc:  # noqa: BLE001 - the source's reconnect fails then, saying so
        LOG.warning("the volumes of %s could not be disconnected from %s: %s", uuid, agent.host, exc)


@remote
async def finish_resize(agent: ComputeManager, instance: dict, migration: dict, disk_info: dict,
                        image: dict | None = None, request_id: str | None = None) -> None:
    """Destination: the guest made here with the new flavor; the server waits in VERIFY_RESIZE."""
    uuid, store = instance["uuid"], AgentStore(agent.conductor)
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_finish_resize") as event:
        new_flavor = instance.get("new_flavor") or instance["flavor"]
        current = await store.instance_update(uuid, {"task_state": "resize_finish", "host": agent.host,
                                                     "node": migration["dest_node"], "flavor": new_flavor},
                                              expected_task_state=["resize_migrated"])
        if current is None:
            return
        power_on = _was_running(current)
        try:
            connected = await volumes.connect_for_spawn(agent, uuid)  # the server's volumes, for this host
            await agent.driver.finish_migration(current, disk_info, current.get("network_info") or [], image or {},
                                                new_flavor.get("id") != (current.get("old_flavor") or {}).get("id"),
                                                power_on, block_device_info=connected)
            await volumes.complete_for_spawn(agent, connected)
        except Exception as exc:  # noqa: BLE001 - the guest goes back to the source, which kept its copy
            event.failed(exc)
            with contextlib.suppress(Exception):
                await agent.driver.destroy(current)
            await _let_go_of_volumes(agent, uuid)
            reason = (f"{_kind(migration)} of the server failed on {agent.host}: {exc}. It was rolled back to "
                      f"{migration['source_compute']}, where it runs with its old flavor as before.")
            moved = await store.migration_update(uuid, migration["uuid"], {"status": "reverting",
                                                                           "step": "restore on source"},
                                                 expected_status=["post-migrating"])
            if moved is None:
                return
            try:
                await agent.compute_rpc(migration["source_compute"]).cast(
                    "finish_revert_resize", instance=current, migration=moved, request_id=request_id, failure=reason)
            except NoSuchTarget:
                await _roll_back(agent, moved, f"{reason[:-1]} -- but {migration['source_compute']} could not be "
                                               "reached: once its compute service is up, hard reboot the server.",
                                 request_id, vm_state="error")
            return
        power = await agent.driver.get_power_state(current)
        # The record first: a server the user sees in VERIFY_RESIZE can be confirmed at once. (A crash
        # between the two is finished by the conductor's reconcile pass.)
        if await store.migration_update(uuid, migration["uuid"], {"status": "finished", "step": "verify"},
                                        expected_status=["post-migrating"]) is None:
            # Ended without this host meanwhile (rolled back past its deadline, or deleted): the guest just
            # made here is nobody's.
            LOG.warning("the move of %s ended while %s finished it: its guest here goes", uuid, agent.host)
            if migration["source_compute"] != agent.host:
                with contextlib.suppress(Exception):
                    await agent.driver.destroy(current)
            return
        await store.instance_update(uuid, {"vm_state": "resized", "task_state": None, "power_state": power},
                                    expected_task_state=["resize_finish"])
        agent.usage_changed()
        LOG.info("event=compute.instance.finish_resize.end instance=%s host=%s", uuid, agent.host)


@remote
async def confirm_resize(agent: ComputeManager, instance: dict, migration: dict,
                         request_id: str | None = None) -> None:
    """Source: what is left of the guest here goes, and so does the migration's claim on this host."""
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_confirm_resize") as event:
        try:
            await agent.driver.confirm_migration(instance)
        except Exception as exc:  # noqa: BLE001 - leftovers here do not keep the server from being confirmed
            event.failed(exc)
            LOG.warning("confirm of %s could not clean up %s: %s", uuid, agent.host, exc)
        if migration["status"] != "confirmed":  # (a server deleted in VERIFY_RESIZE was confirmed already)
            await move_endings.confirm(AgentStore(agent.conductor), agent.reporter.placement, migration,
                                       request_id=request_id, host=agent.host)
        agent.usage_changed()


@remote
async def revert_resize(agent: ComputeManager, instance: dict, migration: dict,
                        request_id: str | None = None) -> None:
    """Destination: the new guest goes; the source brings the old one back."""
    uuid, store = instance["uuid"], AgentStore(agent.conductor)
    source = migration["source_compute"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_revert_resize") as event:
        current = await store.instance_get(uuid)
        if current is None or current.get("task_state") != "resize_reverting":
            return
        moved = await store.migration_update(uuid, migration["uuid"], {"step": "finish_revert_resize"},
                                             expected_status=["reverting"])
        if moved is None:
            return
        try:
            await agent.driver.destroy(current)
        except Exception as exc:  # noqa: BLE001 - carry on: the source brings its copy back
            event.failed(exc)
            LOG.warning("the guest of %s could not be destroyed on %s during its revert: %s", uuid, agent.host, exc)
        await _let_go_of_volumes(agent, uuid)
        agent.usage_changed()
        try:
            await agent.compute_rpc(source).cast("finish_revert_resize", instance=current, migration=moved,
                                                 request_id=request_id)
        except NoSuchTarget:
            await _roll_back(agent, moved, f"The revert could not reach the source host {source}: once its compute "
                                           "service is up, hard reboot the server.", request_id, vm_state="error")


@remote
async def finish_revert_resize(agent: ComputeManager, instance: dict, migration: dict,
                               request_id: str | None = None, failure: str | None = None) -> None:
    """Source: the guest back from the copy kept here, with its old flavor; the claims back as before.

    Also how a move that failed after the guest left ends (``failure``: the fault to record)."""
    uuid, store = instance["uuid"], AgentStore(agent.conductor)
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_finish_revert_resize") as event:
        record = await store.migration_get(uuid, migration["uuid"])
        if record is None or record["status"] != "reverting":
            # A late message (this host was down): the move was ended without it; the server is left as it is.
            LOG.info("finish_revert_resize of %s dropped on %s: its move is %s", uuid, agent.host,
                     record and record["status"])
            return
        current = await store.instance_get(uuid)
        if current is None:
            await _roll_back(agent, migration, "", request_id)  # deleted: only the claims are left to free
            return
        old = {**current, "flavor": current.get("old_flavor") or current["flavor"], "host": agent.host}
        power_on = _was_running(current)
        await _bind_ports(agent, current, agent.host)
        try:
            await _revert_here(agent, old, current.get("network_info") or [], power_on)
        except Exception as exc:  # noqa: BLE001 - nothing to come back to: ERROR here, saying so
            event.failed(exc)
            reason = f"{failure or 'The revert of the resize failed.'} Its guest could not be brought back on " \
                     f"{agent.host} ({exc}): hard reboot or rebuild the server."
            await _roll_back(agent, migration, reason, request_id, vm_state="error",
                             power_state=await agent.driver.get_power_state(old))
            return
        power = await agent.driver.get_power_state(old)
        await _roll_back(agent, migration, failure or "", request_id, vm_state="active" if power_on else "stopped",
                         power_state=power, status="error" if failure else "reverted",
                         action=None if failure else "revertResize")
