"""Live migration, the conductor's part (upstream's LiveMigrationTask), and its reconcile pass.

``live_migrate_instance`` (cast by the API from 2.34, called before: its refusals are then the API's
400s) records a ``live-migration`` migration (``accepted``), checks the source is up, hands the
source allocation to the migration (move_claims), finds the destination -- the scheduler's choice
(the source ignored; a named host from 2.30 as the only candidate), or a forced host checked here
and claimed for the instance -- asks both hosts whether the guest can move
(``check_can_live_migrate_destination`` / ``_source``), then casts ``live_migration`` to the
source, whose agent runs the rest (kilonova/compute/agent/operations/live_migrate.py). A refusal
gives the allocation back to the instance, ends the record ``error`` and the server's task, with a
fault; the server stays where it was.

``reconcile_live_migrations`` ends the live migrations whose record stopped moving for
``[conductor] live_migration_stall_timeout`` (a source agent killed mid-way, a destination gone):
the hosts are asked where the guest runs; it stays there, on exactly one host, with the allocations
to match, and the record ends ``completed`` or ``error``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from kilonova.common.db import NotFound
from kilonova.common.rpc import ExpectedError, NoSuchTarget, RemoteError, RPCError, RPCTimeout
from kilonova.compute import events, move_claims
from kilonova.compute.conductor import group_check
from kilonova.compute.conductor.tasks import reconcile, remote
from kilonova.compute.db import aggregates, build_requests, compute_nodes, flavors, instances, migrations, services
from kilonova.compute.db.instances import UnexpectedTaskState

LOG = logging.getLogger(__name__)

TYPE = "live-migration"
UNDER_WAY = ("accepted", "queued", "preparing", "running", "post-migrating")
# How long the reconcile pass waits for a host's answer about where a guest runs.
ASK_TIMEOUT = 10.0


class Refused(ExpectedError):
    """The live migration cannot happen (upstream's precheck exceptions: the API answers 400 before 2.34)."""


class NoValidHost(Refused):
    pass


class UnableToMigrateToSelf(Refused):
    pass


class ComputeServiceUnavailable(Refused):
    pass


class ComputeHostNotFound(Refused):
    pass


class InvalidHypervisorType(Refused):
    pass


class DestinationHypervisorTooOld(Refused):
    pass


class MigrationPreCheckError(Refused):
    pass


class NoLongerMigrating(Refused):
    """The server was deleted (or its state reset) while its live migration was being checked."""


REFUSALS = tuple(cls.__name__ for cls in (Refused, NoValidHost, UnableToMigrateToSelf, ComputeServiceUnavailable,
                                          ComputeHostNotFound, InvalidHypervisorType, DestinationHypervisorTooOld,
                                          MigrationPreCheckError, NoLongerMigrating))


def _writer(conductor):
    async def write(phase: str, **fields) -> None:
        await conductor.action_event(phase=phase, **fields)
    return write


def _node_of(session, host: str) -> dict | None:
    """The compute node of ``host`` with its service's state (None when the host has none)."""
    node = compute_nodes.node_of_host(session, host)
    if node is None:
        return None
    return {"uuid": node.uuid, "nodename": node.hypervisor_hostname, "hypervisor_type": node.hypervisor_type,
            "hypervisor_version": node.hypervisor_version, "host_ip": node.host_ip, "disabled": bool(node.disabled)}


def _still_migrating(session, uuid: str) -> dict | None:
    """The instance, unless it was deleted (or is being deleted, or reset) since its live migration began."""
    try:
        instance = instances.get(session, uuid)
    except NotFound:
        return None
    return instance if instance["task_state"] == "migrating" else None


def _being_deleted(session, uuid: str) -> bool:
    try:
        return instances.get(session, uuid)["task_state"] == "deleting"
    except NotFound:
        return True


def _flavor_id(session, flavorid: str) -> int:
    return flavors.row_id(session, flavorid)


async def _flavor_row_id(conductor, instance: dict) -> int | None:
    """The flavor's database id, which migration records keep (old/new_instance_type_id: the same one here)."""
    try:
        return await conductor.cells.api_db.read(_flavor_id, (instance.get("flavor") or {}).get("id"))
    except NotFound:
        return None  # deleted since the server was created


@remote
async def live_migrate_instance(conductor, instance_uuid: str, migration_uuid: str, host: str | None = None,
                                block_migration: bool | None = None, force: bool = False,
                                request_id: str | None = None, wait: bool = False) -> dict | None:
    """Check, claim and start the live migration of a server the API put in task_state ``migrating``.

    ``host`` with ``force``: that host, not scheduled (before 2.30, or force=true); ``host`` alone: the
    scheduler checks that host only; no host: the scheduler picks one. ``block_migration`` None is
    "auto". With ``wait`` (API before 2.34) a refusal is raised to the caller; as a cast it is recorded.
    """
    cell = await conductor.cell_for_instance(instance_uuid)
    instance = await cell.db.read(instances.get, instance_uuid)
    if instance["task_state"] != "migrating":
        return None  # a redelivered message of a migration already over
    try:
        await cell.db.read(migrations.get, migration_uuid)
        return None  # redelivered: the conductor that took it first (or the reconcile pass) ends it
    except NotFound:
        pass
    flavor_id = await _flavor_row_id(conductor, instance)
    migration = await cell.db.write(migrations.create, {
        "uuid": migration_uuid, "instance_uuid": instance_uuid, "migration_type": TYPE, "status": "accepted",
        "source_compute": instance["host"], "source_node": instance["node"], "dest_compute": host,
        "old_instance_type_id": flavor_id, "new_instance_type_id": flavor_id,
        "user_id": instance["user_id"], "project_id": instance["project_id"]})
    task = _Task(conductor, cell, instance, migration, block_migration, request_id)
    async with events.record(_writer(conductor), instance_uuid, request_id, "conductor_live_migrate_instance") \
            as event:
        try:
            await task.run(host, force)
        except Refused as exc:
            LOG.info("live migration of %s refused: %s", instance_uuid, exc)
            event.failed(exc)
            await task.undo(str(exc), code=400)
            if wait:
                raise
        except Exception as exc:  # noqa: BLE001 - upstream: the server goes to ERROR, with a fault
            LOG.exception("live migration of %s failed unexpectedly", instance_uuid)
            event.failed(exc)
            await task.undo(f"Migration error: {exc}", code=500, error=True)
            if wait:
                raise ExpectedError(f"Migration error: {exc}") from None
    return None


class _Task:
    def __init__(self, conductor, cell, instance: dict, migration: dict, block_migration, request_id):
        self.conductor = conductor
        self.cell = cell
        self.instance = instance
        self.migration = migration
        self.block_migration = block_migration
        self.request_id = request_id
        self.source = instance["host"]
        self.uuid = instance["uuid"]

    # ------------------------------------------------------------ the steps

    async def run(self, host: str | None, force: bool) -> None:
        down_time = self.conductor.conf.getfloat("DEFAULT", "service_down_time")
        if not await self.cell.db.read(services.compute_is_up, self.source, down_time):
            raise ComputeServiceUnavailable(f"Compute service of {self.source} is unavailable at this time.")
        source_node = await self.cell.db.read(_node_of, self.source)
        await move_claims.hand_to_migration(self.conductor.placement, self.uuid, self.migration["uuid"],
                                            self.instance["project_id"], self.instance["user_id"])
        if host and force:
            dest, migrate_data = await self._forced(host, source_node, down_time)
        else:
            dest, migrate_data = await self._scheduled(host, source_node)
        dest_node = await self.cell.db.read(_node_of, dest)
        # The server takes the destination's zone when it lands there (upstream sets it for the move).
        migrate_data["dest_availability_zone"] = await self.conductor.cells.api_db.read(
            aggregates.host_availability_zone, dest, self.conductor.conf.get("DEFAULT", "default_availability_zone"))
        self.migration = await self.cell.db.write(migrations.update, self.migration["uuid"], {
            "dest_compute": dest, "dest_node": dest_node["nodename"], "dest_host": dest_node["host_ip"]},
            ["accepted"])
        instance = await self.cell.db.read(_still_migrating, self.uuid)
        if instance is None:
            raise NoLongerMigrating(f"Instance {self.uuid} is no longer migrating (deleted meanwhile?): its live "
                                    f"migration is cancelled.")
        try:
            await self.conductor.compute_rpc(self.source).cast(
                "live_migration", instance=instance, migration=self.migration, dest=dest,
                migrate_data=migrate_data, request_id=self.request_id)
        except NoSuchTarget:
            raise ComputeServiceUnavailable(f"Compute service of {self.source} is unavailable at this time.") \
                from None

    async def _forced(self, host: str, source_node: dict | None, down_time: float) -> tuple[str, dict]:
        """A destination named with force (or before 2.30): checked here, claimed without the scheduler."""
        if host == self.source:
            raise UnableToMigrateToSelf(f"Unable to migrate instance ({self.uuid}) to current host ({host}).")
        node = await self.cell.db.read(_node_of, host)
        if node is None:
            raise ComputeHostNotFound(f"Compute host {host} could not be found.")
        if not await self.cell.db.read(services.compute_is_up, host, down_time):
            raise ComputeServiceUnavailable(f"Compute service of {host} is unavailable at this time.")
        self._compatible(source_node, node)
        await self._claim(host, node)
        try:
            return host, await self._host_checks(host)
        except Exception:
            await move_claims.drop(self.conductor.placement, self.uuid)
            raise

    async def _claim(self, host: str, node: dict) -> None:
        """The instance claims on the forced destination what the migration holds on the source."""
        held = (await move_claims.held(self.conductor.placement, self.migration["uuid"]))[0]
        resources: dict[str, int] = {}
        for allocation in held.values():
            for rc, amount in allocation["resources"].items():
                resources[rc] = resources.get(rc, 0) + amount
        if not resources:
            return  # the server held nothing (a lost claim): nothing to move
        body = {"allocations": {node["uuid"]: {"resources": resources}}, "project_id": self.instance["project_id"],
                "user_id": self.instance["user_id"], "consumer_generation": None}
        response = await self.conductor.placement.put(f"/allocations/{self.uuid}", json=body)
        if response.status_code != 204:
            raise NoValidHost(f"No valid host was found. Unable to move instance {self.uuid} to host {host}. "
                              f"There is not enough capacity on the host for the instance.")

    async def _scheduled(self, host: str | None, source_node: dict | None) -> tuple[str, dict]:
        """The scheduler picks (and claims) a destination other than the source; one that fails the hosts'
        checks is left out and the next one is tried, as upstream retries."""
        spec = dict(await self.conductor.cells.api_db.read(build_requests.get_spec, self.uuid) or {})
        spec.update(flavor=self.instance["flavor"], project_id=self.instance["project_id"],
                    user_id=self.instance["user_id"])
        spec.pop("requested_destination", None)
        spec["requested_cell"] = self.cell.uuid  # no cross-cell live migration, as upstream
        if host:
            node = await self.cell.db.read(_node_of, host)
            spec["requested_destination"] = {"host": host, **({"node": node["nodename"]} if node else {})}
        ignored = [self.source]
        while True:
            try:
                selections = await self.conductor.scheduler.call("select_destinations", request_spec=spec,
                                                                 instance_uuids=[self.uuid], ignore_hosts=ignored)
            except RemoteError as exc:
                if exc.exc_type == "NoValidHost":
                    raise NoValidHost(exc.message) from None
                raise
            dest = selections[0][0]["host"]
            try:
                self._compatible(source_node, await self.cell.db.read(_node_of, dest))
                return dest, await self._host_checks(dest)
            except Refused as exc:
                LOG.info("live migration of %s: %s refused (%s); trying another host", self.uuid, dest, exc)
                await move_claims.drop(self.conductor.placement, self.uuid)
                ignored.append(dest)

    async def _group_check(self, dest: str) -> None:
        """Upstream's destination validates the server group's hard policy in its pre-check: a forced host
        skips the scheduler's group filters, and a scheduled one may have been taken by a racing member."""
        spec = await self.conductor.cells.api_db.read(build_requests.get_spec, self.uuid) or {}
        broken = await group_check.violation(self.conductor.cells, spec, self.uuid, dest)
        if broken:
            raise MigrationPreCheckError(f"Migration pre-check error: Failed to validate instance group policy due "
                                         f"to: Build of instance {self.uuid} was re-scheduled: {broken}")

    @staticmethod
    def _compatible(source_node: dict | None, node: dict | None) -> None:
        if source_node is None or node is None:
            return
        if source_node["hypervisor_type"] != node["hypervisor_type"]:
            raise InvalidHypervisorType("The supplied hypervisor type of is invalid.")
        if (node["hypervisor_version"] or 0) < (source_node["hypervisor_version"] or 0):
            raise DestinationHypervisorTooOld("The instance requires a newer hypervisor version than has been "
                                              "provided.")

    async def _host_checks(self, dest: str) -> dict:
        """The destination's then the source's driver check (MigrationPreCheckError when either refuses)."""
        await self._group_check(dest)
        timeout = self.conductor.conf.getfloat("DEFAULT", "rpc_response_timeout")
        try:
            migrate_data = await self.conductor.compute_rpc(dest).prepare(timeout=timeout).call(
                "check_can_live_migrate_destination", instance=self.instance, block_migration=self.block_migration,
                request_id=self.request_id)
            migrate_data = await self.conductor.compute_rpc(self.source).prepare(timeout=timeout).call(
                "check_can_live_migrate_source", instance=self.instance, migrate_data=migrate_data,
                request_id=self.request_id)
        except NoSuchTarget:
            raise ComputeServiceUnavailable(f"Compute service of {dest} is unavailable at this time.") from None
        except RPCTimeout:
            raise MigrationPreCheckError(f"Migration pre-check error: Timeout while checking if we can live "
                                         f"migrate to host: {dest}") from None
        except RemoteError as exc:
            raise MigrationPreCheckError(f"Migration pre-check error: {exc.message}") from None
        return {**migrate_data, "source_host": self.source, "dest_host": dest}

    async def undo(self, message: str, code: int, error: bool = False) -> None:
        """Nothing moved: the instance holds its source allocation again, its task ends (ERROR for an
        unexpected failure, as upstream), the record ends ``error``, with a fault saying why."""
        try:
            await move_claims.give_back_to_instance(self.conductor.placement, self.migration["uuid"], self.uuid,
                                                    self.instance["project_id"], self.instance["user_id"])
            if await self.cell.db.read(_being_deleted, self.uuid):
                # Deleted meanwhile: its delete may have released its claims before they were given back.
                await move_claims.drop(self.conductor.placement, self.uuid)
        except move_claims.ClaimError:
            LOG.exception("live migration of %s: the source allocation could not be given back", self.uuid)
        values = {"task_state": None, **({"vm_state": "error"} if error else {})}
        fault = {"code": code, "message": message[:255]}
        try:
            await self.cell.db.write(instances.update_with_fault, self.uuid, values, fault,
                                     expected_task_state=["migrating"])
        except (UnexpectedTaskState, NotFound):
            await self.cell.db.write(instances.add_fault, self.uuid, code, message[:255], None, None)
        await _end(self.cell, self.migration, "error")
        await self.conductor.action_finish(instance_uuid=self.uuid, request_id=self.request_id,
                                           action="live-migration", message="Error")


async def _end(cell, migration: dict, status: str) -> bool:
    try:
        await cell.db.write(migrations.update, migration["uuid"], {"status": status}, list(UNDER_WAY))
        return True
    except migrations.UnexpectedStatus:
        return False


# ---------------------------------------------------------------------------- never stuck

@reconcile
async def reconcile_live_migrations(conductor) -> int:
    """End the live migrations nothing has moved for ``[conductor] live_migration_stall_timeout``, and the
    servers left in task_state ``migrating`` with no live migration under way (a lost cast)."""
    stall = conductor.conf.getfloat("conductor", "live_migration_stall_timeout")
    older = datetime.utcnow() - timedelta(seconds=stall)
    ended = 0
    for cell in conductor.cells.real():
        try:
            for migration in await cell.db.read(migrations.find_stale, older, UNDER_WAY, TYPE):
                if await _end_stalled(conductor, cell, migration):
                    ended += 1
            for instance in await cell.db.read(instances.find_stuck, None, older, task_state="migrating"):
                if await cell.db.read(migrations.in_progress_for, instance["uuid"], TYPE, UNDER_WAY):
                    continue
                if await cell.db.write(instances.claim_stale, instance["uuid"], "migrating", older):
                    LOG.warning("instance %s was left migrating with no live migration under way: task ended",
                                instance["uuid"])
                    await _settle_instance(cell, instance["uuid"], {"task_state": None})
                    ended += 1
        except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
            LOG.warning("reconciling live migrations in cell %s failed; next pass retries", cell.name, exc_info=True)
    return ended


async def _settle_instance(cell, uuid: str, values: dict) -> None:
    try:
        await cell.db.write(instances.update, uuid, values, expected_task_state=["migrating"])
    except (UnexpectedTaskState, NotFound):
        pass


async def _ask(conductor, host: str | None, instance: dict) -> dict | None:
    """What ``host`` says of the guest ({"guest": runs there, "migrating": a migration job there}); None
    when it does not answer."""
    if not host:
        return None
    try:
        return await conductor.compute_rpc(host).prepare(timeout=ASK_TIMEOUT).call(
            "live_migration_whereabouts", instance=instance)
    except (RPCError, asyncio.TimeoutError) as exc:
        LOG.info("host %s did not say where %s runs: %s", host, instance["uuid"], exc)
        return None


async def _end_stalled(conductor, cell, migration: dict) -> bool:
    uuid = migration["instance_uuid"]
    # Taking it over bumps updated_at: another conductor's pass (or this one's next) leaves it alone.
    try:
        migration = await cell.db.write(migrations.update, migration["uuid"], {"step": migration["step"]},
                                        [migration["status"]])
    except migrations.UnexpectedStatus:
        return False
    try:
        instance = await cell.db.read(instances.get, uuid)
    except NotFound:
        await _end(cell, migration, "error")
        await move_claims.drop(conductor.placement, migration["uuid"])
        await _undo_destination_of_deleted(conductor, cell, migration)
        return True
    source, dest = migration["source_compute"], migration["dest_compute"]
    at_source = await _ask(conductor, source, instance)
    if at_source and at_source.get("migrating") and migration["step"] != "abort-requested":
        # The source still runs the job (a stalled copy): abort it there; the next pass forces the end.
        LOG.warning("live migration %s of %s stalled on %s: aborting it", migration["uuid"], uuid, source)
        await cell.db.write(migrations.update, migration["uuid"], {"step": "abort-requested"})
        try:
            await conductor.compute_rpc(source).cast("live_migration_abort", instance=instance,
                                                     migration_id=migration["id"])
        except RPCError:
            pass
        return False
    at_dest = await _ask(conductor, dest, instance) if dest and dest != source else None
    # post-migrating: the source's driver said the guest runs on the destination (whose agent may be down).
    moved = migration["status"] == "post-migrating" or bool(at_dest and at_dest.get("guest"))
    guest_at_dest = moved and not (at_source and at_source.get("guest"))
    if guest_at_dest and instance["host"] == source:
        await _finish_at_destination(conductor, cell, instance, migration)
    elif instance["host"] == dest and dest != source:
        # The destination switched the instance before the source could finish: only the claim is left.
        await move_claims.drop(conductor.placement, migration["uuid"])
        await _end(cell, migration, "completed")
        await _settle_instance(cell, uuid, {"task_state": None})
    else:
        await _roll_back(conductor, cell, instance, migration)
    return True


async def _undo_destination_of_deleted(conductor, cell, migration: dict) -> None:
    """A server deleted without its source (down, so the API deleted it there): what its destination prepared,
    or the guest the destination got before the source died, goes too."""
    dest = migration["dest_compute"]
    if not dest or dest == migration["source_compute"]:
        return
    try:
        instance = await cell.db.read(instances.get, migration["instance_uuid"], True)
    except NotFound:
        return
    LOG.warning("live migration %s of deleted server %s: undoing it on %s", migration["uuid"], instance["uuid"],
                dest)
    with contextlib.suppress(RPCError):
        await conductor.compute_rpc(dest).cast("rollback_live_migration_at_destination", instance=instance)


async def _finish_at_destination(conductor, cell, instance: dict, migration: dict) -> None:
    """The guest runs on the destination: make it the server's host there, drop the source claim."""
    uuid, dest = instance["uuid"], migration["dest_compute"]
    LOG.warning("live migration %s of %s stalled after the guest moved: finishing it on %s", migration["uuid"],
                uuid, dest)
    zone = await conductor.cells.api_db.read(aggregates.host_availability_zone, dest,
                                             conductor.conf.get("DEFAULT", "default_availability_zone"))
    try:
        await conductor.compute_rpc(dest).prepare(timeout=ASK_TIMEOUT * 3).call(
            "post_live_migration_at_destination", instance=instance, migration=migration, availability_zone=zone)
    except RPCError as exc:
        # The destination's agent is away: its guest is taken over when it starts (the server is its own then).
        LOG.warning("post_live_migration_at_destination of %s on %s: %s; switching the host here", uuid, dest, exc)
        await _settle_instance(cell, uuid, {"host": dest, "node": migration["dest_node"] or dest, "task_state": None,
                                            "availability_zone": zone})
        await _bind_ports(conductor, instance, dest)
    await move_claims.drop(conductor.placement, migration["uuid"])
    await _end(cell, migration, "completed")
    await conductor.action_finish(instance_uuid=uuid, request_id=None, action="live-migration")


async def _bind_ports(conductor, instance: dict, host: str) -> None:
    for vif in instance.get("network_info") or []:
        try:
            response = await conductor.network.put(f"/v2.0/ports/{vif['port_id']}",
                                                   json={"port": {"binding:host_id": host, "binding:profile": {}}})
            if response.status_code != 200:
                LOG.warning("port %s of %s not bound to %s: %s", vif["port_id"], instance["uuid"], host,
                            response.status_code)
        except Exception:  # noqa: BLE001 - a port left bound to the source is fixed by the next move
            LOG.warning("port %s of %s not bound to %s", vif["port_id"], instance["uuid"], host, exc_info=True)


async def _roll_back(conductor, cell, instance: dict, migration: dict) -> None:
    """The guest is (or will be, when its host's agent restores it) on the source: undo the rest."""
    uuid, dest = instance["uuid"], migration["dest_compute"]
    LOG.warning("live migration %s of %s stalled (%s): the server stays on %s", migration["uuid"], uuid,
                migration["status"], migration["source_compute"])
    if dest and dest != migration["source_compute"]:
        try:
            await conductor.compute_rpc(dest).cast("rollback_live_migration_at_destination", instance=instance)
        except RPCError:
            pass  # a destination that is gone has nothing of it running
    await move_claims.give_back_to_instance(conductor.placement, migration["uuid"], uuid, instance["project_id"],
                                            instance["user_id"])
    await _settle_instance(cell, uuid, {"task_state": None})
    await cell.db.write(instances.add_fault, uuid, 500,
                        f"Live migration to {dest} did not finish in time: it was rolled back and the server "
                        f"stays on {migration['source_compute']}."[:255], None, None)
    await _end(cell, migration, "error")
    await conductor.action_finish(instance_uuid=uuid, request_id=None, action="live-migration", message="Error")
