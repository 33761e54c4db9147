"""Instances, their faults and actions in a cell database.

Rows leave this module as plain dicts (``to_dict``) so they can travel over RPC
and be rendered by the API without an open session.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from kilonova.common.db import Conflict, NotFound
from kilonova.common.prepared import prepare, prepared
from kilonova.compute.db.cell_models import Instance, InstanceAction, InstanceActionEvent, InstanceFault, Migration

LOG = logging.getLogger(__name__)

# vcpus/memory_mb only mirror the flavor for quota sums; instance dicts carry the flavor itself.
_COLUMNS = [c.key for c in sa.inspect(Instance).column_attrs if c.key not in ("vcpus", "memory_mb")]


class UnexpectedTaskState(Conflict):
    pass


def utcnow() -> datetime:
    return datetime.utcnow()


def to_dict(instance: Instance) -> dict[str, Any]:
    return _plain({key: getattr(instance, key) for key in _COLUMNS})


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    values["metadata"] = values.pop("metadata_") or {}
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = value.isoformat(timespec="microseconds")
    return values


# Listing reads plain rows (no ORM identity map): the detail view of many servers is hot.
_LIST_COLUMNS = [sa.inspect(Instance).column_attrs[key].columns[0].label(key) for key in _COLUMNS]


_TABLE = Instance.__table__
_COLUMN_NAMES = {key: sa.inspect(Instance).column_attrs[key].columns[0].name for key in _COLUMNS}
# Built once with bound parameters: SQLAlchemy then reuses their cache keys and compiled forms.
_LIVE_ROW = sa.select(*_LIST_COLUMNS).where(_TABLE.c.uuid == sa.bindparam("uuid"), _TABLE.c.deleted == 0)
_UPDATE_BY_ID = _TABLE.update().where(_TABLE.c.id == sa.bindparam("row_id"))  # SET: the execute() params
_INSERT = _TABLE.insert()


def create(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    values = dict(values)
    values["metadata_"] = values.pop("metadata", {}) or {}
    for key in ("created_at", "updated_at", "launched_at"):
        if isinstance(values.get(key), str):
            values[key] = datetime.fromisoformat(values[key])
    # A table-level insert (one per server): the inserted parameters, column defaults included, and
    # the new primary key are the row.
    row = {_COLUMN_NAMES[key]: value for key, value in values.items() if key in _COLUMN_NAMES}
    flavor = row.get("flavor") or {}
    row.update(vcpus=int(flavor.get("vcpus") or 0), memory_mb=int(flavor.get("memory_mb") or 0))
    result = session.execute(_INSERT, row)
    inserted = result.last_inserted_params()
    inserted["id"] = result.inserted_primary_key[0]
    LOG.info("instance %s created in its cell: vm_state %s, task_state %s, host %s", values.get("uuid"),
             inserted.get("vm_state"), inserted.get("task_state"), inserted.get("host"))
    return _plain({key: inserted.get(_COLUMN_NAMES[key]) for key in _COLUMNS})


def _get_row(session: Session, uuid: str, read_deleted: bool = False) -> Instance:
    query = sa.select(Instance).where(Instance.uuid == uuid)
    if not read_deleted:
        query = query.where(Instance.deleted == 0)
    instance = session.scalar(query)
    if instance is None:
        raise NotFound(f"Instance {uuid} could not be found.")
    return instance


_ANY_ROW = sa.select(*_LIST_COLUMNS).where(_TABLE.c.uuid == sa.bindparam("uuid"))
prepare(_LIVE_ROW, _ANY_ROW, _UPDATE_BY_ID)  # run on SQLite's cursor: every step of every operation


def get(session: Session, uuid: str, read_deleted: bool = False) -> dict[str, Any]:
    # A plain row (every step of every operation reads its instance): no ORM object.
    row = session.execute(_ANY_ROW if read_deleted else _LIVE_ROW, {"uuid": uuid}).mappings().first()
    if row is None:
        raise NotFound(f"Instance {uuid} could not be found.")
    return _plain(dict(row))


def update(session: Session, uuid: str, values: dict[str, Any], expected_task_state: list | None = None,
           expected_vm_state: list | None = None, expected_host: str | None = None) -> dict[str, Any]:
    """Update an instance; with ``expected_*`` the update is a compare-and-swap.

    The expectations are checked again by the UPDATE itself, so of two writers racing on the same
    state (an agent starting a build, a conductor timing it out) exactly one wins.
    Runs on every state change of every server: plain row read and table-level UPDATE, no ORM objects.
    """
    row = session.execute(_LIVE_ROW, {"uuid": uuid}).mappings().first()
    if row is None:
        raise NotFound(f"Instance {uuid} could not be found.")
    current = dict(row)
    if expected_task_state is not None and current["task_state"] not in expected_task_state:
        raise UnexpectedTaskState(f"Conflict updating instance {uuid}. Expected task_state "
                                  f"{expected_task_state}, actual {current['task_state']}")
    if expected_vm_state is not None and current["vm_state"] not in expected_vm_state:
        raise UnexpectedTaskState(f"Conflict updating instance {uuid}. Expected vm_state "
                                  f"{expected_vm_state}, actual {current['vm_state']}")
    if expected_host is not None and current["host"] != expected_host:
        raise UnexpectedTaskState(f"Conflict updating instance {uuid}. Expected host "
                                  f"{expected_host}, actual {current['host']}")
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key == "metadata":
            key = "metadata_"
        if key in ("launched_at", "terminated_at") and isinstance(value, str):
            value = datetime.fromisoformat(value)
        if key in _COLUMN_NAMES:  # anything else never reached the row before either
            changes[key] = value
    _progress_of_step(current, changes)
    changes["updated_at"] = utcnow()
    columns = {_COLUMN_NAMES[key]: value for key, value in changes.items()}
    if "flavor" in changes:
        flavor = changes["flavor"] or {}
        columns.update(vcpus=int(flavor.get("vcpus") or 0), memory_mb=int(flavor.get("memory_mb") or 0))
    if expected_task_state is None and expected_vm_state is None and expected_host is None:
        session.execute(_UPDATE_BY_ID, {"row_id": current["id"], **columns})
    else:
        statement, expected = _guarded_update(expected_task_state, expected_vm_state, expected_host)
        if session.execute(statement, {"row_id": current["id"], **expected, **columns}).rowcount != 1:
            raise UnexpectedTaskState(f"Conflict updating instance {uuid}: its state changed during the update")
    # An ORM copy loaded earlier in this transaction would now be stale.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Instance) and obj.uuid == uuid:
            session.expire(obj)
    _log_state_change(uuid, current, changes)
    current.update(changes)
    return _plain(current)


# ``progress``, the API's percentage of the operation under way, at each step of the resizes, cold migrations
# and snapshots (steps counted as upstream's step-counting drivers do); a live migration's follows the data
# copied (kilonova/compute/conductor/agent_reports.py), as upstream's libvirt driver. When the operation ends
# it is 0 again. Builds and rebuilds stay at 0, as with upstream's libvirt driver: `openstack server create
# --wait -f json` prints every non-zero progress it sees on the same output as its JSON.
STEP_PROGRESS = {
    "resize_prep": 0, "resize_migrating": 25, "resize_migrated": 50, "resize_finish": 75,
    "image_snapshot_pending": 0, "image_snapshot": 25, "image_pending_upload": 50, "image_uploading": 75,
    "migrating": 0,
}


def _progress_of_step(current: dict[str, Any], changes: dict[str, Any]) -> None:
    if "task_state" not in changes or "progress" in changes:
        return
    step = changes["task_state"]
    if step in STEP_PROGRESS:
        changes["progress"] = STEP_PROGRESS[step]
    elif current.get("task_state") in STEP_PROGRESS:
        changes["progress"] = 0  # the operation ended


_LOGGED_STATES = ("vm_state", "task_state", "power_state", "host")


def _log_state_change(uuid: str, before: dict[str, Any], changes: dict[str, Any]) -> None:
    """One INFO line per state change of a server (with the request ids every line carries)."""
    moved = [f"{key} {before.get(key)} -> {changes[key]}" for key in _LOGGED_STATES
             if key in changes and changes[key] != before.get(key)]
    if moved:
        LOG.info("instance %s: %s", uuid, ", ".join(moved))


# A guarded UPDATE per shape of expectations, built once (the expected values are bound parameters):
# two of them run on every boot.
_GUARDED: dict[tuple, sa.Update] = {}


def _guarded_update(expected_task_state: list | None, expected_vm_state: list | None,
                    expected_host: str | None) -> tuple[sa.Update, dict[str, Any]]:
    shape, params = [], {}
    for name, expected in (("task_state", expected_task_state), ("vm_state", expected_vm_state)):
        if expected is None:
            shape.append(None)
        else:
            shape.append(None in expected)
            params[f"expected_{name}"] = [value for value in expected if value is not None]
    shape.append(expected_host is not None)
    if expected_host is not None:
        params["expected_host"] = expected_host
    key = tuple(shape)
    statement = _GUARDED.get(key)
    if statement is None:
        guards = [_TABLE.c.deleted == 0]
        for name, nullable in (("task_state", key[0]), ("vm_state", key[1])):
            if nullable is not None:
                column = _TABLE.c[name]
                guard = column.in_(sa.bindparam(f"expected_{name}", expanding=True))
                guards.append(sa.or_(guard, column.is_(None)) if nullable else guard)
        if key[2]:
            guards.append(_TABLE.c.host == sa.bindparam("expected_host"))
        statement = _GUARDED[key] = prepared(_UPDATE_BY_ID.where(*guards))
    return statement, params


def claim_stale(session: Session, uuid: str, task_state: str, older_than: datetime) -> bool:
    """Take over an operation nobody has moved for a while: True for the one caller that gets it.

    Bumps ``updated_at``, so another conductor sweeping at the same moment (or this one's next
    pass) sees the operation as recently handled and leaves it alone.
    """
    stale = sa.func.coalesce(_TABLE.c.updated_at, _TABLE.c.created_at) < older_than
    taken = session.execute(_TABLE.update().where(_TABLE.c.uuid == uuid, _TABLE.c.deleted == 0,
                                                  _TABLE.c.task_state == task_state, stale)
                            .values(updated_at=utcnow()))
    return taken.rowcount == 1


def soft_delete(session: Session, uuid: str) -> dict[str, Any]:
    instance = _get_row(session, uuid)
    LOG.info("instance %s: deleted (was vm_state %s, task_state %s, host %s)", uuid, instance.vm_state,
             instance.task_state, instance.host)
    now = utcnow()
    instance.deleted = instance.id
    instance.deleted_at = now
    instance.terminated_at = instance.terminated_at or now
    instance.updated_at = now
    instance.vm_state = "deleted"
    instance.task_state = None
    instance.power_state = 0
    session.flush()
    return to_dict(instance)


DEFAULT_ORDER = (("created_at", "desc"), ("uuid", "desc"))
_NOT_NULL = {"created_at", "uuid", "project_id", "user_id", "vm_state", "locked", "power_state"}
_DATETIMES = {"created_at", "updated_at", "launched_at", "terminated_at"}


# Listing is built from table columns, not ORM attributes, so it runs without an ORM session.
_ATTRIBUTE_COLUMNS = {attribute.key: attribute.columns[0] for attribute in sa.inspect(Instance).column_attrs}


def _column(key: str) -> sa.Column:
    column = _ATTRIBUTE_COLUMNS.get(key)
    return getattr(Instance, key) if column is None else column


def query(session: Session, *, project_id: str | None, filters: dict[str, Any], limit: int | None,
          order: tuple[tuple[str, str], ...] = DEFAULT_ORDER, marker: dict[str, Any] | None = None,
          deleted: bool | None = False) -> list[dict[str, Any]]:
    """Instances in ``order`` ((column, "asc"|"desc") pairs ending with a unique one), strictly after the
    ``marker`` instance's values when given. NULL sorts first, as the API merges cells' pages in Python.

    ``deleted`` as upstream's filter of that name: False, the live ones that are not soft-deleted;
    True, only the deleted and the soft-deleted ones; None, all of them.

    The order is the same in every cell and for build requests, so the API can
    merge cells' pages into one sorted page.
    """
    stmt = sa.select(*_LIST_COLUMNS)
    if project_id is not None:
        stmt = stmt.where(_TABLE.c.project_id == project_id)
    # upstream's soft_deleted: the live list with the soft-deleted ones too, or the deleted without them.
    soft = filters.get("soft_deleted")
    if deleted is False:
        stmt = stmt.where(_TABLE.c.deleted == 0)
        if not soft:
            stmt = stmt.where(_TABLE.c.vm_state != "soft-delete")
    elif deleted is True:
        stmt = stmt.where(_TABLE.c.deleted != 0 if soft is False else
                          sa.or_(_TABLE.c.deleted != 0, _TABLE.c.vm_state == "soft-delete"))
    for key, value in filters.items():
        if key == "soft_deleted":
            continue
        if key == "changes-since":
            stmt = stmt.where(_TABLE.c.updated_at >= value)
        elif key == "changes-before":
            stmt = stmt.where(_TABLE.c.updated_at <= value)
        elif key.startswith("regex:"):  # a regular expression searched in the column's text
            column = _column(key[6:])
            text = column if isinstance(column.type, sa.String) else sa.cast(column, sa.String)  # keeps its collation
            stmt = stmt.where(text.regexp_match(value))
        elif key.startswith("tags:"):
            stmt = stmt.where(_tag_filter(key[5:], value))
        elif key == "uuid_in":
            stmt = stmt.where(_TABLE.c.uuid.in_(value))
        elif key in ("vm_state", "task_state") and isinstance(value, list):
            stmt = stmt.where(_column(key).in_(value))
        else:
            stmt = stmt.where(_column(key) == value)
    if marker is not None:
        stmt = stmt.where(_after(order, marker))
    stmt = stmt.order_by(*_order_by(order))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_plain(dict(row)) for row in session.execute(stmt).mappings()]


class _HasTag(ColumnElement):
    """True when an instance's ``tags`` (a JSON list) holds ``tag``: each database's own JSON test."""
    type = sa.Boolean()
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement), ("tag", InternalTraversal.dp_clauseelement)]

    def __init__(self, column, tag: str):
        self.column = column
        self.tag = sa.bindparam(None, tag, type_=sa.String, unique=True)


@compiles(_HasTag)
def _has_tag_sqlite(element, compiler, **kw) -> str:
    return (f"EXISTS (SELECT 1 FROM json_each({compiler.process(element.column, **kw)}) "
            f"WHERE json_each.value = {compiler.process(element.tag, **kw)})")


@compiles(_HasTag, "postgresql")
def _has_tag_postgresql(element, compiler, **kw) -> str:
    return (f"CAST({compiler.process(element.column, **kw)} AS JSONB) @> "
            f"jsonb_build_array(CAST({compiler.process(element.tag, **kw)} AS TEXT))")


@compiles(_HasTag, "mysql")
@compiles(_HasTag, "mariadb")
def _has_tag_mysql(element, compiler, **kw) -> str:
    return f"JSON_CONTAINS({compiler.process(element.column, **kw)}, JSON_QUOTE({compiler.process(element.tag, **kw)}))"


def _tag_filter(kind: str, tags: list[str]):
    """Upstream's tag filters: ``all`` (tags), ``any`` (tags-any), ``not-all`` (not-tags), ``not-any``."""
    tests = [_HasTag(_TABLE.c.tags, tag) for tag in tags]
    combined = sa.and_(*tests) if kind in ("all", "not-all") else sa.or_(*tests)
    return sa.not_(combined) if kind.startswith("not-") else combined


def _order_by(order: tuple[tuple[str, str], ...]) -> list:
    clauses = []
    for key, direction in order:
        column = _column(key)
        if key not in _NOT_NULL:  # NULL first when ascending, last when descending, in every database
            clauses.append(column.is_not(None).asc() if direction == "asc" else column.is_not(None).desc())
        clauses.append(column.asc() if direction == "asc" else column.desc())
    return clauses


def _after(order: tuple[tuple[str, str], ...], marker: dict[str, Any]):
    """Rows strictly after the marker's values in ``order``: equal on the leading keys, beyond on the next."""
    alternatives = []
    equal_so_far: list = []
    for key, direction in order:
        column, value = _column(key), marker.get(key)
        if key in _DATETIMES and isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif key == "locked":  # a build request marker: not locked yet
            value = bool(value)
        if value is None:
            beyond = column.is_not(None) if direction == "asc" else sa.false()
            equal = column.is_(None)
        else:
            beyond = column > value if direction == "asc" else sa.or_(column < value, column.is_(None))
            equal = column == value
        alternatives.append(sa.and_(*equal_so_far, beyond))
        equal_so_far.append(equal)
    return sa.or_(*alternatives)


def add_fault(session: Session, uuid: str, code: int, message: str, details: str | None = None,
              host: str | None = None) -> None:
    LOG.log(logging.WARNING if code >= 500 else logging.INFO, "instance %s fault (%s%s): %s", uuid, code,
            f" on {host}" if host else "", message)
    session.add(InstanceFault(instance_uuid=uuid, code=code, message=message[:255], details=details, host=host))


def update_with_fault(session: Session, uuid: str, values: dict[str, Any], fault: dict[str, Any] | None,
                      **expected: Any) -> dict[str, Any]:
    """``update``, and ``fault`` (``kilonova.compute.faults.record``) in the same transaction: a server
    shown in ERROR has its fault from that moment."""
    updated = update(session, uuid, values, **expected)
    if fault is not None:
        add_fault(session, uuid, fault.get("code", 500), fault["message"], fault.get("details"), fault.get("host"))
    return updated


def latest_faults(session: Session, uuids: list[str]) -> dict[str, dict[str, Any]]:
    if not uuids:
        return {}
    rows = session.scalars(sa.select(InstanceFault).where(InstanceFault.instance_uuid.in_(uuids))
                           .order_by(InstanceFault.id))
    faults = {}
    for row in rows:
        faults[row.instance_uuid] = {"code": row.code, "message": row.message, "details": row.details,
                                     "created": row.created_at.replace(microsecond=0).isoformat() + "Z"}
    return faults


_INSTANCES = Instance.__table__
# Every scheduling with a group reads where its members are: built once, on SQLite's cursor.
_HOSTS_OF = prepared(sa.select(_INSTANCES.c.uuid, _INSTANCES.c.host).where(
    _INSTANCES.c.uuid.in_(sa.bindparam("uuids", expanding=True)), _INSTANCES.c.deleted == 0,
    _INSTANCES.c.host.is_not(None)))


def hosts_of(session: Session, uuids: list[str]) -> list[tuple[str, str]]:
    """(uuid, host) of those of ``uuids`` that are not deleted and have a host."""
    return [(uuid, host) for uuid, host in session.execute(_HOSTS_OF, {"uuids": list(uuids)})]


def list_by_host(session: Session, host: str) -> list[dict[str, Any]]:
    return [to_dict(row) for row in session.scalars(
        sa.select(Instance).where(Instance.host == host, Instance.deleted == 0))]


def find_stuck(session: Session, vm_state: str | None, older_than: datetime,
               task_state: str | None = None) -> list[dict[str, Any]]:
    """Live instances in ``vm_state`` (and/or ``task_state``) that nothing has updated since ``older_than``."""
    stmt = sa.select(Instance).where(Instance.deleted == 0,
                                     sa.func.coalesce(Instance.updated_at, Instance.created_at) < older_than)
    if vm_state is not None:
        stmt = stmt.where(Instance.vm_state == vm_state)
    if task_state is not None:
        stmt = stmt.where(Instance.task_state == task_state)
    return [to_dict(row) for row in session.scalars(stmt)]


def assert_exists(session: Session, uuid: str) -> None:
    if session.scalar(sa.select(Instance.id).where(Instance.uuid == uuid, Instance.deleted == 0)) is None:
        raise NotFound(f"Instance {uuid} could not be found.")


def purge(session: Session, uuid: str) -> int:
    """Remove every row of an instance that was never handed to the user (a build retried from scratch)."""
    actions = sa.select(InstanceAction.id).where(InstanceAction.instance_uuid == uuid).scalar_subquery()
    session.execute(sa.delete(InstanceActionEvent).where(InstanceActionEvent.action_id.in_(actions)))
    for model in (InstanceFault, InstanceAction, Migration):
        session.execute(sa.delete(model).where(model.instance_uuid == uuid))
    return session.execute(sa.delete(Instance).where(Instance.uuid == uuid)).rowcount
