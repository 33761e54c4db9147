"""Rebuild and evacuate on a compute host, and the clean-up of evacuated guests when a failed host comes back.

* ``rebuild_instance`` (same host): the guest gets a new root disk from the image and boots it; its
  ports and addresses stay. A server that was stopped is stopped again afterwards, as upstream.
* ``rebuild_instance`` with ``evacuate`` (on the destination): the server moves here (its host and
  node), its existing ports are bound to this host, its volumes get new attachments connected here (the
  failed source's are deleted, as upstream) and the guest is spawned from its image or boot volume. A
  failure puts it back on its source host in ERROR, without this host's claim or connections: its
  volumes stay reserved for it, to be evacuated again.
* ``clean_evacuated`` (agent start-up): guests evacuated away from this host while it was down are
  destroyed here (their volumes disconnected locally only: their attachments are the destination's now),
  the instance's claim on this host is released and the migration says ``completed``.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from kilonova.common.rpc import RemoteError
from kilonova.compute import evacuate_target, evacuation_claims
from kilonova.compute.agent.operations import remote, volumes

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)

# Evacuations the source host cleans up when it comes back (upstream's list, "done" ones included).
EVACUATIONS_TO_CLEAN = ["accepted", "pre-migrating", "done"]


def _now() -> str:
    return datetime.utcnow().isoformat(timespec="microseconds")


@remote
async def rebuild_instance(agent: ComputeManager, instance: dict, image_meta: dict, admin_password: str | None = None,
                           evacuate: bool = False, migration: dict | None = None,
                           request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    # The step's end finishes the action (Error when the step failed), in one conductor call.
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_rebuild_instance",
                                               finishes="evacuate" if evacuate else "rebuild") as event:
        if evacuate and migration is not None:
            await _evacuate_here(agent, instance, image_meta, admin_password, migration, event)
        else:
            await _rebuild_here(agent, instance, image_meta, admin_password, event)


async def _fail(agent: ComputeManager, uuid: str, message: str, values: dict | None = None) -> None:
    """ERROR with a fault (only while the rebuild is still this host's: a reconciled or deleted server is left)."""
    await agent._update(uuid, {"vm_state": "error", "task_state": None, **(values or {})},
                        expected_task_state=["rebuild_spawning"], fault=message)


async def _rebuild_here(agent: ComputeManager, instance: dict, image_meta: dict, admin_password: str | None,
                        event) -> None:
    uuid = instance["uuid"]
    current = await agent._update(uuid, {"task_state": "rebuild_spawning"}, expected_task_state=["rebuilding"],
                                  expected_host=agent.host)
    if current is None:
        LOG.info("rebuild of %s dropped on %s: the server is no longer rebuilding here", uuid, agent.host)
        return
    was_stopped = current["vm_state"] == "stopped"
    network_info = current.get("network_info") or []
    try:
        if uuid in agent.driver.list_instance_uuids():
            await agent.driver.rebuild(current, image_meta, network_info, admin_password)
        else:  # no guest to rebuild (a failed build, a host that lost it): a new one, as upstream's default
            await agent.driver.spawn({**current, "admin_password": admin_password}, image_meta, network_info)
        if was_stopped:
            await agent.driver.power_off(current)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the server in ERROR with the reason
        LOG.warning("rebuild of %s failed on %s: %s", uuid, agent.host, exc)
        event.failed(exc)
        await _fail(agent, uuid, f"Rebuild failed on {agent.host}: {exc}. Rebuild the server again or delete it.")
        return
    await agent._update(uuid, {"vm_state": "stopped" if was_stopped else "active", "task_state": None,
                               "power_state": await agent.driver.get_power_state(current), "launched_at": _now()},
                        expected_task_state=["rebuild_spawning"])


async def _migration(agent: ComputeManager, uuid: str, migration_uuid: str, status: str, expected: list[str]) -> bool:
    try:
        await agent.conductor.call("migration_update", instance_uuid=uuid, migration_uuid=migration_uuid,
                                   values={"status": status}, expected_status=expected)
        return True
    except RemoteError as exc:
        LOG.info("migration %s of %s not set to %s: %s", migration_uuid, uuid, status, exc.message)
        return False


async def _bind_ports(agent: ComputeManager, network_info: list[dict], host: str) -> None:
    for vif in network_info:
        response = await agent.ports.network.put(f"/v2.0/ports/{vif['port_id']}",
                                                 json={"port": {"binding:host_id": host}})
        if response.status_code != 200:
            raise RuntimeError(f"port {vif['port_id']} could not be bound to {host}: {response.status_code} "
                               f"{response.text[:200]}")


async def _evacuate_here(agent: ComputeManager, instance: dict, image_meta: dict, admin_password: str | None,
                         migration: dict, event) -> None:
    uuid, source = instance["uuid"], migration["source_compute"]
    if not await _migration(agent, uuid, migration["uuid"], "pre-migrating", ["accepted"]):
        return  # ended meanwhile (the reconcile pass gave up on it)
    current = await agent._update(uuid, {"host": agent.host, "node": agent.host, "task_state": "rebuild_spawning"},
                                  expected_task_state=["rebuilding"], expected_host=source)
    if current is None:  # deleted, or given up on: nothing of it is here yet
        await _migration(agent, uuid, migration["uuid"], "failed", ["pre-migrating"])
        return
    # Stopped before, or evacuated at microversion 2.95 or later (the API's mark): stopped here too.
    to_stopped, recorded = evacuate_target.take(current.get("system_metadata"))
    was_stopped = current["vm_state"] == "stopped" or to_stopped
    network_info = current.get("network_info") or []
    try:
        await _bind_ports(agent, network_info, agent.host)
        # As upstream's evacuation: each volume's attachment of the failed source is replaced by a new one
        # (the source, down, disconnects nothing; it forgets its side when it comes back), which this host
        # then connects with its own connector and completes once the guest runs.
        await volumes.disconnect_for_offload(agent, uuid)
        block_devices = await volumes.connect_for_spawn(agent, uuid)
        await agent.driver.spawn({**current, "admin_password": admin_password}, image_meta, network_info,
                                 **({"block_device_info": block_devices} if block_devices else {}))
        await volumes.complete_for_spawn(agent, block_devices)
        if was_stopped:
            await agent.driver.power_off(current)
    except Exception as exc:  # noqa: BLE001 - undo here, back to the source in ERROR
        LOG.warning("evacuation of %s to %s failed: %s", uuid, agent.host, exc)
        event.failed(exc)
        with contextlib.suppress(Exception):
            await agent.driver.destroy(current)
        with contextlib.suppress(Exception):
            await _bind_ports(agent, network_info, source)
        try:  # this host's connections go; the volumes stay reserved for the server, to evacuate it again
            await volumes.disconnect_for_offload(agent, uuid)
        except Exception:  # noqa: BLE001 - the conductor's and the volume service's reconcile passes settle it
            LOG.warning("volumes of %s not handed back after its failed evacuation", uuid, exc_info=True)
        await evacuation_claims.remove_provider(agent.reporter.placement, uuid, agent.node_uuid)
        await _fail(agent, uuid, f"Evacuation to {agent.host} failed: {exc}. The server is back on {source}; "
                                 "evacuate it again or delete it.", {"host": source, "node": migration.get("source_node")
                                                                       or source, "system_metadata": recorded})
        await _migration(agent, uuid, migration["uuid"], "failed", ["pre-migrating"])
        return
    done = await agent._update(uuid, {"vm_state": "stopped" if was_stopped else "active", "task_state": None,
                                      "power_state": await agent.driver.get_power_state(current),
                                      "launched_at": _now(), "system_metadata": recorded},
                               expected_task_state=["rebuild_spawning"], expected_host=agent.host)
    if done is None:  # deleted, or given up on by the reconcile pass: the guest must not stay here
        with contextlib.suppress(Exception):
            await agent.driver.destroy(current)
        return
    # "completed" when the source came back meanwhile and already cleaned up.
    await _migration(agent, uuid, migration["uuid"], "done", ["pre-migrating"])
    agent.usage_changed()


async def clean_evacuated(agent: ComputeManager) -> set[str]:
    """At start-up: the servers evacuated away from this host while it was down. Their guests here are
    destroyed, their claim on this host released, their migration marked ``completed``. Returns their
    uuids (start-up leaves them alone otherwise)."""
    try:
        found = await agent.conductor.call("migrations_on_host", host=agent.host, statuses=EVACUATIONS_TO_CLEAN)
    except RemoteError:
        LOG.exception("could not look for evacuations from %s", agent.host)
        return set()
    evacuations = [m for m in found if m["migration_type"] == "evacuation" and m["source_compute"] == agent.host]
    local = set(agent.driver.list_instance_uuids())
    cleaned: set[str] = set()
    for migration in evacuations:
        uuid = migration["instance_uuid"]
        cleaned.add(uuid)
        async with agent._locks[uuid]:
            instance = await agent._current(uuid)
            if uuid in local:
                LOG.warning("destroying the guest of %s on %s: it was evacuated while this host was down",
                            uuid, agent.host)
                try:
                    await agent.driver.destroy(instance or {"uuid": uuid})
                except Exception:  # noqa: BLE001 - the next start tries again (the migration stays as it is)
                    LOG.exception("could not destroy evacuated guest %s on %s", uuid, agent.host)
                    continue
            if instance is not None and agent.node_uuid:
                await evacuation_claims.remove_provider(agent.reporter.placement, uuid, agent.node_uuid)
            await _migration(agent, uuid, migration["uuid"], "completed", [migration["status"]])
            LOG.info("evacuation %s of %s from %s cleaned up", migration["uuid"], uuid, agent.host)
    if cleaned:
        agent.usage_changed()
    return cleaned
