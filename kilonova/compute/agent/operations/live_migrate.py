"""Live migration on the compute hosts, as upstream's compute manager does it.

The conductor (kilonova/compute/conductor/tasks/live_migrate.py) has checked both hosts, claimed the
destination for the instance and handed the source allocation to the migration record; it casts
``live_migration`` to the source host, which runs the migration:

    queued -> preparing (destination's pre_live_migration) -> running (driver.live_migration, its progress
    written to the record) -> post-migrating (post_live_migration_at_source, then the destination's
    post_live_migration_at_destination switches the instance's host) -> completed (the source allocation,
    the migration's, is dropped)

A failure or an abort before the guest left the source rolls back: the destination removes what
pre_live_migration made, the instance holds its source allocation again, the record ends error
(cancelled for an abort) and the server stays ACTIVE (or PAUSED) on the source.

Deleting the server cuts its live migration short (``cancel_for_delete``, called by the delete on the
source): the migration stops at its next step, a running copy through the driver's abort, rolls back
(the record ends error, as upstream's does when its delete destroys the guest under the migration),
and the delete then removes the guest from the source. A guest that had already left the source is
removed by the destination, which refuses to take over a server being deleted.

Force-complete and abort reach the migration through ``RUNNING``, this process's registry of the live
migrations under way on each of its hosts (they do not take the instance lock the migration holds).
A migration whose source agent died is ended by the conductor's reconcile pass, which asks the hosts
where the guest runs (``live_migration_whereabouts``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kilonova.common.rpc import RemoteError, RPCError, redelivered
from kilonova.compute import move_claims
from kilonova.compute.agent.operations import remote, volumes
from kilonova.compute.agent.security_groups import security_groups
from kilonova.compute.virt import driver as virt
from kilonova.compute.virt.driver import LiveMigrationAborted, NoActiveMigration

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)

# The statuses of a live migration under way (it ends completed, error or cancelled).
UNDER_WAY = ("accepted", "queued", "preparing", "running", "post-migrating")
# Progress is written to the migration record at most this often (the last report always is).
PROGRESS_INTERVAL = 0.2


@dataclass
class Job:
    """A live migration under way with this host as its source."""
    migration: dict
    dest: str
    availability_zone: str | None = None  # the destination's, which the server takes when it lands
    running: bool = False     # driver.live_migration has started: abort and force-complete go to the driver
    cancelled: bool = False   # aborted while queued or preparing (2.65): rolled back at the next step
    deleted: bool = False     # cut short by the server's delete: the record ends error, not cancelled
    volumes: dict = field(default_factory=dict)  # the destination's attachments (connect_for_live_migration)

    @property
    def cancelled_status(self) -> str:
        return "error" if self.deleted else "cancelled"


# (source host, instance uuid) -> the live migration under way (hosts of one process share this module).
RUNNING: dict[tuple[str, str], Job] = {}


def _peer(agent: ComputeManager, host: str):
    """The compute RPC of another host of this cell (live migration stays within a cell)."""
    return agent.compute_rpc(host)


async def _status(agent: ComputeManager, migration: dict, status: str, expected: list[str] | None = None,
                  **values) -> dict | None:
    """Move the record to ``status`` (compare-and-set on ``expected``); None when it was not in them."""
    try:
        return await agent.conductor.call("migration_update", instance_uuid=migration["instance_uuid"],
                                          migration_uuid=migration["uuid"], values={"status": status, **values},
                                          expected_status=expected)
    except RemoteError as exc:
        if exc.exc_type in ("UnexpectedStatus", "NotFound"):
            LOG.info("live migration %s: not moved to %s (%s)", migration["uuid"], status, exc.message)
            return None
        raise


async def _fault(agent: ComputeManager, uuid: str, message: str) -> None:
    try:
        await agent.conductor.call("add_fault", instance_uuid=uuid, code=500, message=message[:255],
                                   host=agent.host)
    except RPCError:
        LOG.warning("could not record the fault of %s: %s", uuid, message)


async def _finish_action(agent: ComputeManager, uuid: str, request_id: str | None, failed: bool) -> None:
    if request_id is None:
        return
    try:
        await agent.conductor.call("action_finish", instance_uuid=uuid, request_id=request_id,
                                   action="live-migration", message="Error" if failed else None)
    except RPCError:
        LOG.warning("could not finish the live-migration action of %s", uuid)


# ---------------------------------------------------------------------------- prechecks (no changes)

@remote
async def check_can_live_migrate_destination(agent: ComputeManager, instance: dict, block_migration=None,
                                             request_id: str | None = None) -> dict:
    """Destination: can the guest run here? The first migrate_data (MigrationPreCheckError when not)."""
    async with agent.event(instance["uuid"], request_id, "compute_check_can_live_migrate_destination"):
        return await agent.driver.check_can_live_migrate_destination(instance, block_migration)


@remote
async def check_can_live_migrate_source(agent: ComputeManager, instance: dict, migrate_data: dict,
                                        request_id: str | None = None) -> dict:
    """Source: can the guest leave? migrate_data completed for the destination."""
    async with agent.event(instance["uuid"], request_id, "compute_check_can_live_migrate_source"):
        return await agent.driver.check_can_live_migrate_source(instance, migrate_data)


@remote
async def live_migration_whereabouts(agent: ComputeManager, instance: dict) -> dict:
    """For the reconcile pass of a stalled live migration: does the guest run on this host, and does a
    live migration of it run from here?"""
    uuid = instance["uuid"]
    guest = uuid in agent.driver.list_instance_uuids() and \
        await agent.driver.get_power_state(instance) in (virt.RUNNING, virt.PAUSED)
    return {"guest": guest, "migrating": (agent.host, uuid) in RUNNING}


# ---------------------------------------------------------------------------- destination

def _network_info(instance: dict) -> list[dict]:
    return instance.get("network_info") or []


async def _set_ports(agent: ComputeManager, instance: dict, binding: dict) -> None:
    """Change the binding of the instance's ports (the network service has one binding per port)."""
    for vif in _network_info(instance):
        response = await agent.ports.network.put(f"/v2.0/ports/{vif['port_id']}", json={"port": binding})
        if response.status_code != 200:
            LOG.warning("port %s of %s: binding %s refused: %s %s", vif["port_id"], instance["uuid"], binding,
                        response.status_code, response.text[:200])


@remote
async def pre_live_migration(agent: ComputeManager, instance: dict, migrate_data: dict,
                             request_id: str | None = None) -> dict:
    """Destination, before the guest moves: the ports say where they are going (as upstream's
    ``migrating_to`` profile), the driver plugs networks and prepares disks."""
    async with agent.event(instance["uuid"], request_id, "compute_pre_live_migration"):
        await _set_ports(agent, instance, {"binding:profile": {"migrating_to": agent.host}})
        await security_groups(agent).expect([vif["port_id"] for vif in _network_info(instance)])
        made = await volumes.connect_for_live_migration(agent, instance["uuid"])
        try:
            prepared = await agent.driver.pre_live_migration(instance, _network_info(instance),
                                                             {**migrate_data, "volumes": made})
        except Exception:
            await volumes.drop_live_migration_attachments(agent, made)
            raise
        return {**prepared, "volumes": made}


@remote
async def post_live_migration_at_destination(agent: ComputeManager, instance: dict, migration: dict,
                                             availability_zone: str | None = None,
                                             request_id: str | None = None) -> dict | None:
    """Destination, once the guest runs here: the driver makes it this host's own, the ports are bound
    here, and the instance's host and node become this host's (its task ends)."""
    uuid = instance["uuid"]
    async with agent.event(uuid, request_id, "compute_post_live_migration_at_destination"):
        await agent.driver.post_live_migration_at_destination(instance, _network_info(instance))
        await _set_ports(agent, instance, {"binding:host_id": agent.host, "binding:profile": {}})
        power_state = await agent.driver.get_power_state(instance)
        values = {"host": agent.host, "node": agent.host, "power_state": power_state, "task_state": None,
                  "progress": 0}
        if availability_zone:
            values["availability_zone"] = availability_zone
        moved = await agent._update(uuid, values,
                                    expected_task_state=["migrating"], expected_host=migration["source_compute"])
        if moved is None and await _being_deleted(agent, uuid):
            # Deleted once the guest had left the source (too late to cut the move short there): the
            # delete finds no guest on the source, so the one this host got goes now.
            LOG.warning("%s was deleted during its live migration: removing the guest it got on %s", uuid,
                        agent.host)
            await agent.driver.destroy(instance)
        agent.usage_changed()
        return moved


async def _being_deleted(agent: ComputeManager, uuid: str) -> bool:
    current = await agent._current(uuid)
    return current is None or current.get("task_state") in ("deleting", "soft-deleting") or \
        current.get("vm_state") in ("deleted", "soft-delete")


@remote
async def rollback_live_migration_at_destination(agent: ComputeManager, instance: dict,
                                                 request_id: str | None = None) -> None:
    """Destination, after a failed or aborted live migration: remove what pre_live_migration made."""
    async with agent.event(instance["uuid"], request_id, "compute_rollback_live_migration_at_destination"):
        await agent.driver.rollback_live_migration_at_destination(instance, _network_info(instance))
        await _set_ports(agent, instance, {"binding:profile": {}})
        await volumes.drop_unmapped_attachments(agent, instance["uuid"])


# ---------------------------------------------------------------------------- source

@remote
async def live_migration(agent: ComputeManager, instance: dict, migration: dict, dest: str, migrate_data: dict,
                         request_id: str | None = None) -> None:
    """Source: run the live migration the conductor prepared (see the module's docstring)."""
    uuid = instance["uuid"]
    if redelivered():  # a previous life of this agent took it: the reconcile pass ends what it left
        current = await agent.conductor.call("migration_get", instance_uuid=uuid, migration_uuid=migration["uuid"])
        if current["status"] != "accepted":
            return
    if await _status(agent, migration, "queued", ["accepted"]) is None:
        return  # ended meanwhile (the reconcile pass undid it)
    job = RUNNING[(agent.host, uuid)] = Job(migration, dest, migrate_data.get("dest_availability_zone"))
    try:
        async with agent._locks[uuid], agent.event(uuid, request_id, "compute_live_migration") as event:
            await _migrate(agent, instance, job, migrate_data, request_id, event)
    finally:
        RUNNING.pop((agent.host, uuid), None)


async def _migrate(agent: ComputeManager, instance: dict, job: Job, migrate_data: dict, request_id: str | None,
                   event) -> None:
    migration, dest, uuid = job.migration, job.dest, instance["uuid"]
    if job.cancelled or await _status(agent, migration, "preparing", ["queued"]) is None:
        await _rollback(agent, instance, job, job.cancelled_status, request_id, prepared=False)
        return
    try:
        migrate_data = await _peer(agent, dest).call("pre_live_migration", instance=instance,
                                                     migrate_data=migrate_data, request_id=request_id)
    except Exception as exc:  # noqa: BLE001 - the guest has not moved: undo and say why
        LOG.warning("pre_live_migration of %s on %s failed: %s", uuid, dest, exc)
        event.failed(exc)
        await _fault(agent, uuid, f"Live migration to {dest} failed before it started: "
                                  f"{getattr(exc, 'message', None) or exc}")
        await _rollback(agent, instance, job, "error", request_id)
        return
    job.volumes = migrate_data.get("volumes") or {}
    if job.cancelled or await _status(agent, migration, "running", ["preparing"]) is None or job.cancelled:
        await _rollback(agent, instance, job, job.cancelled_status, request_id)
        return
    job.running = True  # no await since the check above: an abort now goes to the driver
    try:
        await agent.driver.live_migration(instance, dest, migrate_data, progress=_progress_writer(agent, migration))
    except LiveMigrationAborted as exc:
        LOG.info("live migration of %s to %s aborted: %s", uuid, dest, exc)
        await _rollback(agent, instance, job, job.cancelled_status, request_id)
        return
    except Exception as exc:  # noqa: BLE001 - the driver says the guest still runs here
        LOG.warning("live migration of %s to %s failed: %s", uuid, dest, exc)
        event.failed(exc)
        await _fault(agent, uuid, f"Live migration to {dest} failed: {exc}")
        await _rollback(agent, instance, job, "error", request_id)
        return
    job.running = False
    await _post(agent, instance, job, request_id)


def _progress_writer(agent: ComputeManager, migration: dict):
    """The driver's progress callback: memory_* / disk_* of the migration record (GET .../migrations)."""
    last = [0.0]

    async def progress(info: dict) -> None:
        done = info.get("memory_remaining_bytes") == 0 and info.get("disk_remaining_bytes") == 0
        if not done and time.monotonic() - last[0] < PROGRESS_INTERVAL:
            return
        last[0] = time.monotonic()
        values = {column: info.get(f"{column}_bytes") for column in (
            "memory_total", "memory_processed", "memory_remaining", "disk_total", "disk_processed",
            "disk_remaining")}
        await agent.conductor.call("migration_update", instance_uuid=migration["instance_uuid"],
                                   migration_uuid=migration["uuid"], values=values, expected_status=["running"])
    return progress


async def _post(agent: ComputeManager, instance: dict, job: Job, request_id: str | None) -> None:
    """The guest runs on the destination: clean up here, switch the instance there, drop the source claim."""
    migration, dest, uuid = job.migration, job.dest, instance["uuid"]
    await _status(agent, migration, "post-migrating", ["running"])
    try:  # the guest uses the destination's volume connections now
        await volumes.switch_after_live_migration(agent, uuid, job.volumes)
    except Exception:  # noqa: BLE001 - the audit finds what the volume service and the mappings disagree on
        LOG.exception("the volumes of %s could not be switched to %s", uuid, dest)
    try:
        await agent.driver.post_live_migration_at_source(instance, _network_info(instance))
    except Exception:  # noqa: BLE001 - leftovers on the source are untidy, the guest is fine
        LOG.exception("post_live_migration_at_source of %s failed on %s", uuid, agent.host)
    try:
        moved = await _peer(agent, dest).call("post_live_migration_at_destination", instance=instance,
                                              migration=migration, request_id=request_id,
                                              availability_zone=job.availability_zone)
    except Exception as exc:  # noqa: BLE001 - the record stays post-migrating: the reconcile pass finishes it
        LOG.warning("post_live_migration_at_destination of %s on %s failed: %s; the conductor will finish it",
                    uuid, dest, exc)
        return
    await move_claims.drop(agent.reporter.placement, migration["uuid"])
    # Not switched to the destination: the server was deleted (or changed) meanwhile; the move did not
    # end as asked, as upstream's migration of a server deleted under it ends in error.
    await _status(agent, migration, "completed" if moved else "error", ["post-migrating"])
    agent.usage_changed()
    await _finish_action(agent, uuid, request_id, failed=not moved)


async def _rollback(agent: ComputeManager, instance: dict, job: Job, status: str, request_id: str | None,
                    prepared: bool = True) -> None:
    """The guest still runs here: the destination undoes its preparation, the instance holds its source
    allocation again (the destination's goes in the same Placement call), the task ends."""
    migration, uuid = job.migration, instance["uuid"]
    await volumes.drop_live_migration_attachments(agent, job.volumes)
    if prepared:
        try:
            await _peer(agent, job.dest).call("rollback_live_migration_at_destination", instance=instance,
                                              request_id=request_id)
        except Exception as exc:  # noqa: BLE001 - a destination that is gone has nothing of it running
            LOG.warning("rollback_live_migration_at_destination of %s on %s failed: %s", uuid, job.dest, exc)
    await move_claims.give_back_to_instance(agent.reporter.placement, migration["uuid"], uuid,
                                            instance["project_id"], instance["user_id"])
    if not job.deleted and await agent._current(uuid) is None:
        # Deleted before this migration took the instance's lock: what was given back has no one to hold it.
        await move_claims.drop(agent.reporter.placement, uuid)
    await agent._update(uuid, {"task_state": None, "progress": 0}, expected_task_state=["migrating"])
    await _status(agent, migration, status, list(UNDER_WAY))
    agent.usage_changed()
    await _finish_action(agent, uuid, request_id, failed=status == "error")


# ---------------------------------------------------------------------------- force-complete and abort

async def cancel_for_delete(agent: ComputeManager, instance: dict) -> None:
    """The server is being deleted on this host: its live migration from here stops at its next step (a
    running one through the driver) and rolls back, instead of the delete waiting for the whole move."""
    uuid = instance["uuid"]
    job = RUNNING.get((agent.host, uuid))
    if job is None:
        return
    LOG.warning("%s is being deleted: cutting its live migration to %s short", uuid, job.dest)
    job.deleted = True
    if not job.running:
        job.cancelled = True
        return
    try:
        await agent.driver.live_migration_abort(instance)
    except NoActiveMigration:
        pass  # the copy has just finished: the destination removes the guest it got
    except Exception:  # noqa: BLE001 - the delete goes on once the migration ends by itself
        LOG.warning("the live migration of %s could not be aborted for its delete", uuid, exc_info=True)


@remote
async def live_migration_force_complete(agent: ComputeManager, instance: dict, migration_id: int | None = None,
                                        request_id: str | None = None) -> None:
    """Make the running live migration of the instance finish (the driver pauses the guest, as upstream)."""
    async with agent.event(instance["uuid"], request_id, "compute_live_migration_force_complete"):
        job = RUNNING.get((agent.host, instance["uuid"]))
        if job is not None and not job.running:
            raise NoActiveMigration(f"The live migration of instance {instance['uuid']} is not running yet")
        # No job here: the driver may still run one an earlier life of this agent started (libvirt).
        await agent.driver.live_migration_force_complete(instance)


@remote
async def live_migration_abort(agent: ComputeManager, instance: dict, migration_id: int | None = None,
                               request_id: str | None = None) -> None:
    """Cancel the instance's live migration: a running one through the driver, a queued or preparing one
    (2.65) at its next step. Either way the migration ends cancelled with the guest on this host."""
    uuid = instance["uuid"]
    async with agent.event(uuid, request_id, "compute_live_migration_abort"):
        job = RUNNING.get((agent.host, uuid))
        if job is not None and migration_id is not None and job.migration["id"] != migration_id:
            raise NoActiveMigration(f"Migration {migration_id} of instance {uuid} is not under way on {agent.host}")
        if job is not None and not job.running:
            job.cancelled = True
            return
        # Running here, or started by an earlier life of this agent that the driver still runs (libvirt).
        await agent.driver.live_migration_abort(instance)
