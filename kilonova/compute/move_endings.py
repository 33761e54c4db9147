"""How a resize or cold migration ends: confirmed, reverted, rolled back to its source, or ERROR there.

The same endings are reached by different processes -- the compute agents doing the steps, the
conductor's reconcile pass finishing a move cut short by a crash, the API confirming a resize
of a server being deleted -- so they are written once, over a small *store* with the same methods
on each side (``CellStore``: the cell database, for the conductor and the API; ``AgentStore``:
through the conductor, for an agent, which never opens a database).

Every ending is safe to run twice or concurrently: the instance changes are compare-and-set, the
Placement steps recognise a step already done, and only the process whose compare-and-set ends the
migration record adds the fault and finishes the instance action. The migration record ends last,
so a crash half-way leaves it in progress for the reconcile pass to finish.
"""
from __future__ import annotations

import logging
from typing import Any

from kilonova.common.db import NotFound
from kilonova.common.rpc import RemoteError
from kilonova.compute import faults, move_claims
from kilonova.compute.db import instance_actions, instances, migrations
from kilonova.compute.db.instances import UnexpectedTaskState
from kilonova.compute.virt import driver as power

LOG = logging.getLogger(__name__)

# The task states of a server being resized or cold-migrated (upstream's).
RESIZE_TASK_STATES = ("resize_prep", "resize_migrating", "resize_migrated", "resize_finish", "resize_reverting")
# Errors meaning "that record changed or is gone": the ending is someone else's now.
_CHANGED = ("NotFound", "UnexpectedTaskState", "UnexpectedStatus")


class CellStore:
    """The records of a move in its cell database (the conductor, the API)."""

    def __init__(self, cell):
        self.cell = cell

    async def instance_get(self, uuid: str) -> dict | None:
        try:
            return await self.cell.db.read(instances.get, uuid)
        except NotFound:
            return None

    async def instance_update(self, uuid: str, values: dict, fault: dict | None = None,
                              **expected: Any) -> dict | None:
        try:
            return await self.cell.db.write(instances.update_with_fault, uuid, values, fault, **expected)
        except (NotFound, UnexpectedTaskState):
            return None

    async def migration_update(self, instance_uuid: str, migration_uuid: str, values: dict,
                               expected_status: list | None = None) -> dict | None:
        try:
            return await self.cell.db.write(migrations.update, migration_uuid, values, expected_status)
        except (NotFound, migrations.UnexpectedStatus):
            return None

    async def add_fault(self, uuid: str, message: str, host: str | None, code: int = 500) -> None:
        try:
            await self.cell.db.write(instances.add_fault, uuid, code, message[:255], message, host)
        except NotFound:
            pass

    async def action_finish(self, uuid: str, request_id: str | None, action: str, message: str | None) -> None:
        await self.cell.db.write(instance_actions.finish, uuid, action, message, request_id)


class AgentStore:
    """The same records, through the conductor (a compute agent)."""

    def __init__(self, conductor):
        self.conductor = conductor

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await self.conductor.call(method, **kwargs)
        except RemoteError as exc:
            if exc.exc_type in _CHANGED:
                return None
            raise

    async def instance_get(self, uuid: str) -> dict | None:
        return await self._call("instance_get", instance_uuid=uuid)

    async def instance_update(self, uuid: str, values: dict, fault: dict | None = None,
                              **expected: Any) -> dict | None:
        try:
            return await faults.update(self.conductor, uuid, values, fault, **expected)
        except RemoteError as exc:
            if exc.exc_type in _CHANGED:
                return None
            raise

    async def migration_get(self, instance_uuid: str, migration_uuid: str) -> dict | None:
        return await self._call("migration_get", instance_uuid=instance_uuid, migration_uuid=migration_uuid)

    async def migration_update(self, instance_uuid: str, migration_uuid: str, values: dict,
                               expected_status: list | None = None) -> dict | None:
        return await self._call("migration_update", instance_uuid=instance_uuid, migration_uuid=migration_uuid,
                                values=values, expected_status=expected_status)

    async def add_fault(self, uuid: str, message: str, host: str | None, code: int = 500) -> None:
        await self._call("add_fault", instance_uuid=uuid, code=code, message=message[:255], details=message,
                         host=host)

    async def action_finish(self, uuid: str, request_id: str | None, action: str, message: str | None) -> None:
        await self._call("action_finish", instance_uuid=uuid, request_id=request_id, action=action,
                         message=message)


def action_of(migration: dict) -> str:
    """The instance action a move's failure is recorded on."""
    return "resize" if migration["migration_type"] == "resize" else "migrate"


def vm_state_for(power_state: int | None) -> str:
    return "stopped" if power_state in (power.SHUTDOWN, power.CRASHED, power.NOSTATE) else "active"


async def _end_record(store, migration: dict, status: str, step: str, expected: tuple = migrations.IN_PROGRESS):
    return await store.migration_update(migration["instance_uuid"], migration["uuid"],
                                        {"status": status, "step": step}, expected_status=list(expected))


async def _being_deleted(store, migration: dict, placement) -> bool:
    """The server is gone or being deleted: its delete frees the instance's claims; the migration's own
    (the source's) is dropped here and the record ends in error. True when that was the case."""
    current = await store.instance_get(migration["instance_uuid"])
    if current is not None and current.get("task_state") != "deleting":
        return False
    await move_claims.drop(placement, migration["uuid"])
    await _end_record(store, migration, "error", "server deleted", migrations.IN_PROGRESS)
    return True


async def end_on_source(store, placement, migration: dict, reason: str, *, request_id: str | None,
                        vm_state: str | None = None, power_state: int | None = None, status: str = "error",
                        action: str | None = None) -> bool:
    """The guest is on its source host (it never left, it came back, or it is lost there): the instance
    holds the source allocation again (its destination claim dropped), is back on the source with its old
    flavor and no task, in ``vm_state`` when given (e.g. "error"; else the state it had), and the
    migration ends in ``status`` ("error", or "reverted" for a revert). ``reason``, when given, becomes
    the fault. False when the move had already ended (another process ended it)."""
    uuid = migration["instance_uuid"]
    if await _being_deleted(store, migration, placement):
        return False
    current = await store.instance_get(uuid) or {}
    values: dict[str, Any] = {"task_state": None, "host": migration["source_compute"],
                              "node": migration["source_node"], "old_flavor": None, "new_flavor": None}
    if current.get("old_flavor"):
        values["flavor"] = current["old_flavor"]
    if vm_state is not None:
        values["vm_state"] = vm_state
    if power_state is not None:
        values["power_state"] = power_state
    # An ERROR state comes with its fault, in one write.
    fault = faults.record(reason, migration["source_compute"]) if reason and vm_state == "error" else None
    updated = await store.instance_update(uuid, values, fault, expected_task_state=[*RESIZE_TASK_STATES, None])
    if updated is None:
        # Deleted, or another action started since: only the migration's claim is left to free.
        await move_claims.drop(placement, migration["uuid"])
    else:
        await move_claims.give_back_to_instance(placement, migration["uuid"], uuid, migration.get("project_id")
                                                or current.get("project_id"),
                                                migration.get("user_id") or current.get("user_id"))
    if await _end_record(store, migration, status, "done" if status == "reverted" else "rolled back") is None:
        return False
    if reason and (fault is None or updated is None):
        await store.add_fault(uuid, reason, migration["source_compute"])
    await store.action_finish(uuid, request_id, action or action_of(migration),
                              "Error" if status == "error" else None)
    return True


async def confirm(store, placement, migration: dict, *, request_id: str | None,
                  power_state: int | None = None, host: str | None = None) -> bool:
    """The guest stays where it went: the migration's claim on the source is dropped, the server leaves
    VERIFY_RESIZE (ACTIVE, or SHUTOFF when its guest is off) and the migration is confirmed."""
    uuid = migration["instance_uuid"]
    await move_claims.drop(placement, migration["uuid"])
    current = await store.instance_get(uuid)
    if current is not None and current.get("vm_state") == "resized":
        state = current.get("power_state") if power_state is None else power_state
        await store.instance_update(uuid, {"vm_state": vm_state_for(state), "old_flavor": None, "new_flavor": None},
                                    expected_vm_state=["resized"], expected_task_state=[None])
    if await _end_record(store, migration, "confirmed", "done", ("finished", "confirming")) is None:
        return False
    await store.action_finish(uuid, request_id, "confirmResize", None)
    LOG.info("event=compute.instance.resize.confirm instance=%s migration=%s host=%s", uuid, migration["uuid"],
             host)
    return True
