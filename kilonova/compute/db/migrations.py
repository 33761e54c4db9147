"""Migration records (resize, cold and live migration, evacuation) in a cell database.

One module owns the table. Status changes are compare-and-set (``expected_status``), so of two
processes finishing or undoing the same move (an agent and a conductor's reconcile pass) one wins.
"""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.common.prepared import prepare
from kilonova.compute.db.cell_models import Migration

# Statuses of a move that has not ended yet (upstream's "in progress" set, with evacuation's).
IN_PROGRESS = ("queued", "pre-migrating", "migrating", "post-migrating", "preparing", "running",
               "finished", "confirming", "reverting", "accepted", "done-pending")
# Statuses a move ends in.
ENDED = ("confirmed", "reverted", "error", "failed", "done", "completed", "cancelled")

_COLUMNS = [c.key for c in sa.inspect(Migration).column_attrs]


class UnexpectedStatus(Conflict):
    pass


def utcnow() -> datetime:
    return datetime.utcnow()


def to_dict(row: Migration) -> dict[str, Any]:
    values = {key: getattr(row, key) for key in _COLUMNS}
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = value.isoformat(timespec="microseconds")
    return values


def create(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    """A new record (``uuid`` generated unless given); ``instance_uuid``, ``migration_type`` and ``status``
    are required."""
    given = {_COLUMN_NAMES[k]: v for k, v in values.items() if k in _COLUMNS and k not in ("id", "uuid")}
    result = session.execute(_INSERT, {"uuid": values.get("uuid") or str(uuidlib.uuid4()), **given})
    # The inserted parameters (column defaults included) and the new id are the whole record.
    inserted = result.last_inserted_params()
    row = {key: inserted.get(_COLUMN_NAMES[key]) for key in _COLUMNS}
    row["id"] = result.inserted_primary_key[0]
    return _plain(row)


def _row(session: Session, migration_uuid: str) -> Migration:
    row = session.scalar(sa.select(Migration).where(Migration.uuid == migration_uuid))
    if row is None:
        raise NotFound(f"Migration {migration_uuid} could not be found.")
    return row


# Every step of every move reads and changes its record: plain rows and table-level statements built
# once (bound parameters), no ORM objects.
_TABLE = Migration.__table__
_COLUMN_NAMES = {key: sa.inspect(Migration).column_attrs[key].columns[0].name for key in _COLUMNS}
_BY_UUID = (sa.select(*(_TABLE.c[_COLUMN_NAMES[key]].label(key) for key in _COLUMNS))
            .where(_TABLE.c.uuid == sa.bindparam("migration_uuid")))
_UPDATE_BY_ID = _TABLE.update().where(_TABLE.c.id == sa.bindparam("row_id"))  # SET: the execute() params
_UPDATE_IF_STATUS = _UPDATE_BY_ID.where(_TABLE.c.status.in_(sa.bindparam("expected_status", expanding=True)))


_INSERT = _TABLE.insert()
_IN_PROGRESS = (sa.select(*(_TABLE.c[_COLUMN_NAMES[key]].label(key) for key in _COLUMNS))
                .where(_TABLE.c.instance_uuid == sa.bindparam("instance_uuid"), _TABLE.c.deleted == 0,
                       _TABLE.c.status.in_(sa.bindparam("statuses", expanding=True)))
                .order_by(_TABLE.c.id.desc()).limit(1))
_IN_PROGRESS_OF_TYPE = _IN_PROGRESS.where(_TABLE.c.migration_type == sa.bindparam("migration_type"))
prepare(_BY_UUID, _UPDATE_BY_ID, _UPDATE_IF_STATUS, _IN_PROGRESS, _IN_PROGRESS_OF_TYPE)  # on SQLite's cursor


def _plain_row(session: Session, migration_uuid: str) -> dict[str, Any]:
    row = session.execute(_BY_UUID, {"migration_uuid": migration_uuid}).mappings().first()
    if row is None:
        raise NotFound(f"Migration {migration_uuid} could not be found.")
    return dict(row)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = value.isoformat(timespec="microseconds")
    return values


def get(session: Session, migration_uuid: str) -> dict[str, Any]:
    return _plain(_plain_row(session, migration_uuid))


def get_by_id(session: Session, instance_uuid: str, migration_id: int) -> dict[str, Any] | None:
    """The instance's (not deleted) record of that id, or None."""
    row = session.scalar(sa.select(Migration).where(Migration.id == migration_id, Migration.deleted == 0,
                                                    Migration.instance_uuid == instance_uuid))
    return None if row is None else to_dict(row)


def update(session: Session, migration_uuid: str, values: dict[str, Any],
           expected_status: list[str] | None = None) -> dict[str, Any]:
    """Change a record; with ``expected_status`` only while its status is one of them (UnexpectedStatus if not)."""
    current = _plain_row(session, migration_uuid)
    changes = {k: v for k, v in values.items() if k in _COLUMNS and k not in ("id", "uuid")}
    changes["updated_at"] = utcnow()
    params = {"row_id": current["id"], **{_COLUMN_NAMES[k]: v for k, v in changes.items()}}
    if expected_status is None:
        session.execute(_UPDATE_BY_ID, params)
    elif session.execute(_UPDATE_IF_STATUS, {**params, "expected_status": list(expected_status)}).rowcount != 1:
        raise UnexpectedStatus(f"Migration {migration_uuid} is {current['status']}, "
                               f"not {' or '.join(expected_status or [])}")
    # An ORM copy loaded earlier in this transaction would now be stale.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Migration) and obj.uuid == migration_uuid:
            session.expire(obj)
    current.update(changes)
    return _plain(current)


def in_progress_for(session: Session, instance_uuid: str, migration_type: str | None = None,
                    statuses: tuple[str, ...] = IN_PROGRESS) -> dict[str, Any] | None:
    """The instance's newest move whose status is in ``statuses`` (of ``migration_type`` when given)."""
    params = {"instance_uuid": instance_uuid, "statuses": list(statuses)}
    if migration_type is None:
        row = session.execute(_IN_PROGRESS, params).mappings().first()
    else:
        row = session.execute(_IN_PROGRESS_OF_TYPE, {**params, "migration_type": migration_type}).mappings().first()
    return None if row is None else _plain(dict(row))


def list_for_instance(session: Session, instance_uuid: str, migration_type: str | None = None,
                      statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    query = sa.select(Migration).where(Migration.instance_uuid == instance_uuid, Migration.deleted == 0)
    if migration_type is not None:
        query = query.where(Migration.migration_type == migration_type)
    if statuses is not None:
        query = query.where(Migration.status.in_(statuses))
    return [to_dict(row) for row in session.scalars(query.order_by(Migration.id))]


def find_stale(session: Session, older_than: datetime, statuses: tuple[str, ...] = IN_PROGRESS,
               migration_type: str | None = None) -> list[dict[str, Any]]:
    """Moves in ``statuses`` that nothing has updated since ``older_than`` (the reconcile passes' work)."""
    query = sa.select(Migration).where(
        Migration.deleted == 0, Migration.status.in_(statuses),
        sa.func.coalesce(Migration.updated_at, Migration.created_at) < older_than)
    if migration_type is not None:
        query = query.where(Migration.migration_type == migration_type)
    return [to_dict(row) for row in session.scalars(query.order_by(Migration.id))]


def on_host(session: Session, host: str, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    """Moves with ``host`` as source or destination, in ``statuses`` (a compute agent's start-up checks)."""
    query = sa.select(Migration).where(Migration.deleted == 0, Migration.status.in_(statuses),
                                       sa.or_(Migration.source_compute == host, Migration.dest_compute == host))
    return [to_dict(row) for row in session.scalars(query.order_by(Migration.id))]


class MarkerNotFound(NotFound):
    pass


# Live-migration statuses GET /servers/{id}/migrations shows (upstream's in-progress list for it).
LIVE_IN_PROGRESS = ("queued", "preparing", "running", "post-migrating")


def _hidden_value(text: str) -> bool:
    """The ``hidden`` filter as upstream's MySQL compares a string to a boolean column: its leading
    integer, 0 when it has none ("true" is 0)."""
    digits = ""
    for char in text.strip():
        if not (char.isdigit() or (char == "-" and not digits)):
            break
        digits += char
    try:
        return int(digits) != 0
    except ValueError:
        return False


def _filtered(filters: dict[str, Any]):
    """Upstream's migration filters: ``uuid``, ``status``, ``host`` (source or destination; else
    ``source_compute``), ``node`` (source or destination node), ``migration_type``, ``hidden``,
    ``instance_uuid``, ``user_id``, ``project_id``, ``changes-since`` / ``changes-before`` (updated_at)."""
    stmt = sa.select(Migration).where(Migration.deleted == 0)
    if "uuid" in filters:
        stmt = stmt.where(Migration.uuid == filters["uuid"])
    if filters.get("changes-since") is not None:
        stmt = stmt.where(Migration.updated_at >= filters["changes-since"])
    if filters.get("changes-before") is not None:
        stmt = stmt.where(Migration.updated_at <= filters["changes-before"])
    if "status" in filters:
        stmt = stmt.where(Migration.status == filters["status"])
    if "host" in filters:
        stmt = stmt.where(sa.or_(Migration.source_compute == filters["host"],
                                 Migration.dest_compute == filters["host"]))
    elif "source_compute" in filters:
        stmt = stmt.where(Migration.source_compute == filters["source_compute"])
    if "node" in filters:
        stmt = stmt.where(sa.or_(Migration.source_node == filters["node"], Migration.dest_node == filters["node"]))
    if "hidden" in filters:
        stmt = stmt.where(Migration.hidden == _hidden_value(str(filters["hidden"])))
    for key in ("migration_type", "instance_uuid", "user_id", "project_id"):
        if key in filters:
            stmt = stmt.where(getattr(Migration, key) == filters[key])
    return stmt


def query(session: Session, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """For GET /os-migrations before 2.59: every record matching ``filters``, in the table's order."""
    return [to_dict(row) for row in session.scalars(_filtered(filters).order_by(Migration.id))]


def marker_position(session: Session, migration_uuid: str) -> tuple[str, int] | None:
    """(created_at, id) of the record a page starts after, or None when this cell has no such record
    (upstream finds the marker among deleted records too)."""
    row = session.scalar(sa.select(Migration).where(Migration.uuid == migration_uuid))
    return None if row is None else (row.created_at.isoformat(timespec="microseconds"), row.id)


def query_page(session: Session, filters: dict[str, Any], limit: int | None = None,
               after: tuple[str, int] | None = None) -> list[dict[str, Any]]:
    """For GET /os-migrations from 2.59: newest first (created_at, then id), after the position ``after``
    (see marker_position), at most ``limit``."""
    if limit == 0:
        return []
    stmt = _filtered(filters)
    if after is not None:
        created_at = datetime.fromisoformat(after[0])
        stmt = stmt.where(sa.or_(Migration.created_at < created_at,
                                 sa.and_(Migration.created_at == created_at, Migration.id < after[1])))
    stmt = stmt.order_by(Migration.created_at.desc(), Migration.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return [to_dict(row) for row in session.scalars(stmt)]


def live_in_progress(session: Session, instance_uuid: str) -> list[dict[str, Any]]:
    """The instance's live migrations under way (GET /servers/{id}/migrations)."""
    stmt = sa.select(Migration).where(Migration.instance_uuid == instance_uuid, Migration.deleted == 0,
                                      Migration.migration_type == "live-migration",
                                      Migration.status.in_(LIVE_IN_PROGRESS)).order_by(Migration.id)
    return [to_dict(row) for row in session.scalars(stmt)]


def claim_stale(session: Session, migration_uuid: str, status: str, older_than: datetime) -> bool:
    """Take over a move nobody has updated since ``older_than`` while it is ``status``: True for the one
    caller that gets it (its ``updated_at`` is bumped, so a second sweeper leaves it alone)."""
    stale = sa.func.coalesce(Migration.updated_at, Migration.created_at) < older_than
    taken = session.execute(sa.update(Migration).where(Migration.uuid == migration_uuid, Migration.status == status,
                                                       stale).values(updated_at=utcnow())
                            .execution_options(synchronize_session=False))
    return taken.rowcount == 1
