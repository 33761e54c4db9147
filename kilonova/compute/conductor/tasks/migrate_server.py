"""Resize and cold migration on the conductor: record the move, hand the source claim to it, schedule,
then hand the move to the destination host (``prep_resize``); the hosts do the rest between them
(kilonova/compute/agent/operations/resize.py).

Its reconcile passes keep moves from getting stuck: a move that has not changed step for
``[compute] move_timeout`` seconds is rolled back to its source host (or ended there in ERROR when its
guest cannot come back), a confirm nobody finished is finished, a server left in RESIZE by a lost
message gets its state back -- and VERIFY_RESIZE is confirmed after ``[DEFAULT] resize_confirm_window``.
"""
from __future__ import annotations

import contextlib
import logging
import uuid as uuidlib
from datetime import datetime, timedelta

from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError, redelivered
from kilonova.compute import events, move_claims, move_endings
from kilonova.compute.conductor.tasks import reconcile, remote
from kilonova.compute.db import build_requests, instance_actions, instances, migrations, services
from kilonova.compute.move_endings import CellStore
from kilonova.compute.operation import Operation, PrecheckFailed

LOG = logging.getLogger(__name__)

# Statuses in which a resize or cold migration is under way (``finished`` waits for the user: not stuck).
MOVING = ("pre-migrating", "migrating", "post-migrating", "reverting", "confirming")
TYPES = ("resize", "migration")


class MoveRefused(Exception):
    """The move cannot go on before the guest left its source (no host, destination unreachable)."""


class MigrateServer(Operation):
    name = "migrate_server"

    def __init__(self, conductor, cell, instance_uuid: str, flavor: dict | None, host: str | None,
                 request_id: str | None):
        self.conductor = conductor
        self.cell = cell
        self.uuid = instance_uuid
        self.new_flavor = flavor
        self.requested_host = host
        self.request_id = request_id
        self.instance: dict = {}
        self.migration: dict | None = None

    async def prechecks(self) -> None:
        self.instance = await self.cell.db.read(instances.get, self.uuid)
        if self.instance.get("task_state") != "resize_prep":
            raise PrecheckFailed(f"instance {self.uuid} is no longer waiting for its move "
                                 f"(task_state {self.instance.get('task_state')})")
        under_way = await self.cell.db.read(migrations.in_progress_for, self.uuid, None, MOVING)
        if under_way is None:
            return
        if redelivered() and under_way["status"] == "pre-migrating" and under_way["step"] == "schedule":
            # The conductor that began it died while scheduling: this one takes the move over from there.
            LOG.info("taking over move %s of %s from a conductor that died scheduling it", under_way["uuid"],
                     self.uuid)
            self.migration = under_way
            return
        raise PrecheckFailed(f"instance {self.uuid} already has a move under way (a repeated message)")

    async def claim(self) -> None:
        instance, flavor = self.instance, self.new_flavor
        if self.migration is not None:  # taken over: the source claim may already be the migration's (and the
            # instance may hold a destination's the scheduler then keeps)
            if not (await move_claims.held(self.conductor.placement, self.migration["uuid"]))[0]:
                await move_claims.hand_to_migration(self.conductor.placement, self.uuid, self.migration["uuid"],
                                                    instance["project_id"], instance["user_id"])
            return
        kind = "resize" if flavor is not None and flavor.get("id") != instance["flavor"].get("id") else "migration"
        self.migration = await self.cell.db.write(migrations.create, {
            "instance_uuid": self.uuid, "migration_type": kind, "status": "pre-migrating", "step": "schedule",
            "source_compute": instance["host"], "source_node": instance["node"],
            "user_id": instance["user_id"], "project_id": instance["project_id"]})
        await move_claims.hand_to_migration(self.conductor.placement, self.uuid, self.migration["uuid"],
                                            instance["project_id"], instance["user_id"])

    async def _request_spec(self) -> dict:
        instance = self.instance
        spec = dict(await self.conductor.cells.api_db.read(build_requests.get_spec, self.uuid) or {})
        spec.pop("requested_destination", None)  # where it was created is no rule for where it moves
        spec.update(flavor=self.new_flavor or instance["flavor"], project_id=instance["project_id"],
                    user_id=instance["user_id"], num_instances=1, requested_cell=self.cell.uuid)
        spec.setdefault("image", {"id": instance.get("image_ref"), "properties": {}})
        if self.requested_host:
            spec["requested_destination"] = {"host": self.requested_host}
        return spec

    async def execute(self) -> None:
        conf, migration = self.conductor.conf, self.migration
        spec = await self._request_spec()
        same_host_ok = migration["migration_type"] == "resize" and conf.getbool("DEFAULT", "allow_resize_to_same_host")
        try:
            selections = await self.conductor.scheduler.call(
                "select_destinations", request_spec=spec, instance_uuids=[self.uuid],
                ignore_hosts=[] if same_host_ok else [self.instance["host"]])
        except RemoteError as exc:
            raise MoveRefused(exc.message) from None
        except RPCError as exc:
            raise MoveRefused(f"The scheduler did not answer: {exc}") from None
        chosen = selections[0][0]
        self.migration = migration = await self.cell.db.write(migrations.update, migration["uuid"], {
            "dest_compute": chosen["host"], "dest_node": chosen["nodename"], "step": "prep_resize"}, ["pre-migrating"])
        LOG.info("event=compute.instance.%s.scheduled instance=%s source=%s dest=%s", migration["migration_type"],
                 self.uuid, migration["source_compute"], chosen["host"])
        try:
            await self.conductor.compute_rpc(chosen["host"]).cast(
                "prep_resize", instance=self.instance, migration=migration, flavor=spec["flavor"],
                image=spec.get("image") or {}, request_id=self.request_id)
        except NoSuchTarget:
            raise MoveRefused(f"Compute host {chosen['host']} could not be reached.") from None

    async def rollback(self, exc: BaseException) -> None:
        if self.migration is None:
            return
        await move_endings.end_on_source(CellStore(self.cell), self.conductor.placement, self.migration,
                                         str(exc) or type(exc).__name__, request_id=self.request_id)


def _writer(conductor):
    async def write(phase: str, **fields) -> None:
        await conductor.action_event(phase=phase, **fields)
    return write


@remote
async def migrate_server(conductor, instance_uuid: str, flavor: dict | None = None, host: str | None = None,
                         request_id: str | None = None, **_context) -> None:
    """resize (``flavor``) or cold migration (to ``host`` when given): the API set task_state resize_prep."""
    cell = await conductor.cell_for_instance(instance_uuid)
    operation = MigrateServer(conductor, cell, instance_uuid, flavor, host, request_id)
    try:
        async with events.record(_writer(conductor), instance_uuid, request_id, "conductor_migrate_server",
                                 conductor.conf.get("DEFAULT", "host")):
            await operation.run()
    except PrecheckFailed as exc:
        LOG.info("move of %s dropped: %s", instance_uuid, exc)
    except Exception as exc:  # noqa: BLE001 - rolled back (or left to the reconcile pass); recorded as the event
        LOG.warning("move of %s refused: %s", instance_uuid, exc)


# ---------------------------------------------------------------------------------------- never stuck


def _fault_for(migration: dict, timeout: float, what: str) -> str:
    """A fault short enough to be read whole (255 characters): what got stuck, and what now."""
    kind = "Resize" if migration["migration_type"] == "resize" else "Cold migration"
    return (f"{kind} to {migration.get('dest_compute') or 'a new host'} stuck at {migration.get('step')} "
            f"({migration['status']}) for {timeout:.0f}s; {what}")


async def _host_up(conductor, cell, host: str | None) -> bool:
    return bool(host) and await cell.db.read(services.compute_is_up, host, conductor.conf.getfloat(
        "DEFAULT", "service_down_time"))


async def _restore_on_source(conductor, cell, migration: dict, timeout: float) -> None:
    """The guest left (or was leaving) its source and is not running anywhere: the source brings it back
    from the copy it keeps; when that was already asked, or the source is down, ERROR on the source."""
    store, source = CellStore(cell), migration["source_compute"]
    asked = migration.get("step") == "restore on source"
    if not asked and await _host_up(conductor, cell, source):
        reason = _fault_for(migration, timeout, f"rolled back: the server runs on its source host {source} again, "
                                                "as before. Retry the move.")
        moved = await store.migration_update(migration["instance_uuid"], migration["uuid"],
                                             {"status": "reverting", "step": "restore on source"},
                                             expected_status=[migration["status"]])
        if moved is not None:
            try:
                await conductor.compute_rpc(source).cast("finish_revert_resize", instance={"uuid": moved[
                    "instance_uuid"]}, migration=moved, request_id=None, failure=reason)
                return
            except NoSuchTarget:
                migration = moved
    reason = _fault_for(migration, timeout, f"its guest could not be brought back on its source host {source}: "
                                            f"ERROR there. Once {source}'s compute service is up, hard reboot or "
                                            "rebuild the server.")
    await move_endings.end_on_source(store, conductor.placement, migration, reason, request_id=None,
                                     vm_state="error")


async def _heal(conductor, cell, migration: dict, timeout: float) -> None:
    store = CellStore(cell)
    status = migration["status"]
    LOG.warning("move %s of %s is stuck at %s (%s) past %.0fs: ending it", migration["uuid"],
                migration["instance_uuid"], migration.get("step"), status, timeout)
    if status == "pre-migrating":  # the guest never left its source
        reason = _fault_for(migration, timeout, f"rolled back: the server is on its source host "
                                                f"{migration['source_compute']} as before. Check the destination's "
                                                "compute service and retry.")
        await move_endings.end_on_source(store, conductor.placement, migration, reason, request_id=None)
    elif status == "confirming":  # the guest is at its destination already
        await move_endings.confirm(store, conductor.placement, migration, request_id=None)
    else:
        await _restore_on_source(conductor, cell, migration, timeout)


@reconcile
async def reconcile_stuck_moves(conductor) -> int:
    """Resizes and cold migrations that have not moved on for ``[compute] move_timeout``: ended."""
    timeout = conductor.conf.getfloat("compute", "move_timeout")
    horizon = datetime.utcnow() - timedelta(seconds=timeout)
    healed = 0
    for cell in conductor.cells.real():
        try:
            stale = await cell.db.read(migrations.find_stale, horizon, MOVING)
        except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
            LOG.warning("cannot look for stuck moves in cell %s", cell.name, exc_info=True)
            continue
        for migration in stale:
            if migration["migration_type"] not in TYPES or \
                    not await cell.db.write(migrations.claim_stale, migration["uuid"], migration["status"], horizon):
                continue
            try:
                await _heal(conductor, cell, migration, timeout)
                healed += 1
            except Exception:  # noqa: BLE001 - the next pass tries again
                LOG.exception("ending stuck move %s failed", migration["uuid"])
        healed += await _lost_requests(conductor, cell, horizon, timeout)
    return healed


async def _lost_requests(conductor, cell, horizon: datetime, timeout: float) -> int:
    """Servers left in RESIZE whose move never began (the message to the conductor was lost), or whose
    move finished without the server being told (its destination died between the two updates)."""
    healed = 0
    for instance in await cell.db.read(instances.find_stuck, None, horizon, task_state="resize_finish"):
        if await cell.db.read(migrations.in_progress_for, instance["uuid"], None, ("finished",)) is None:
            continue
        with contextlib.suppress(Exception):  # moved on meanwhile
            await cell.db.write(instances.update, instance["uuid"], {"vm_state": "resized", "task_state": None},
                                expected_task_state=["resize_finish"])
            healed += 1
    for instance in await cell.db.read(instances.find_stuck, None, horizon, task_state="resize_prep"):
        uuid = instance["uuid"]
        if await cell.db.read(migrations.in_progress_for, uuid, None, MOVING) is not None:
            continue
        if not await cell.db.write(instances.claim_stale, uuid, "resize_prep", horizon):
            continue
        if await cell.db.write(_give_up_before_start, uuid, timeout, instance.get("host")):
            healed += 1
    return healed


def _give_up_before_start(session, uuid: str, timeout: float, host: str | None) -> bool:
    try:
        instances.update(session, uuid, {"task_state": None}, expected_task_state=["resize_prep"])
    except Exception:  # noqa: BLE001 - it moved on meanwhile
        return False
    instances.add_fault(session, uuid, 500, "The move of the server was not started within "
                        f"{timeout:.0f} seconds; nothing was changed: retry it.", None, host)
    for action in ("resize", "migrate"):
        instance_actions.finish(session, uuid, action, "Error")
    return True


@reconcile
async def confirm_expired_resizes(conductor) -> int:
    """VERIFY_RESIZE for longer than ``[DEFAULT] resize_confirm_window`` seconds: confirmed (0: never)."""
    window = conductor.conf.getfloat("DEFAULT", "resize_confirm_window")
    if window <= 0:
        return 0
    horizon = datetime.utcnow() - timedelta(seconds=window)
    confirmed = 0
    for cell in conductor.cells.real():
        expired: list[dict] = []
        with contextlib.suppress(Exception):  # a cell that is down waits for the next pass
            expired = await cell.db.read(migrations.find_stale, horizon, ("finished",))
        for migration in expired:
            if migration["migration_type"] not in TYPES:
                continue
            request_id = f"req-{uuidlib.uuid4()}"
            if not await cell.db.write(_begin_auto_confirm, migration, request_id):
                continue
            LOG.info("confirming the resize of %s after %.0fs in VERIFY_RESIZE", migration["instance_uuid"], window)
            instance = await cell.db.read(instances.get, migration["instance_uuid"])
            try:
                await conductor.compute_rpc(migration["source_compute"]).cast(
                    "confirm_resize", instance=instance, migration={**migration, "status": "confirming"},
                    request_id=request_id)
            except (NoSuchTarget, RPCError):
                await move_endings.confirm(CellStore(cell), conductor.placement, migration, request_id=request_id)
            confirmed += 1
    return confirmed


def _begin_auto_confirm(session, migration: dict, request_id: str) -> bool:
    """finished -> confirming, with the confirmResize action the confirm is recorded on (one conductor wins)."""
    try:
        instances.update(session, migration["instance_uuid"], {}, expected_vm_state=["resized"],
                         expected_task_state=[None])
        migrations.update(session, migration["uuid"], {"status": "confirming"}, ["finished"])
    except Exception:  # noqa: BLE001 - confirmed, reverted or deleted meanwhile
        return False
    instance_actions.start(session, migration["instance_uuid"], "confirmResize", request_id, None, None)
    return True
