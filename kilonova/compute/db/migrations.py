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
    row = Migration(uuid=values.get("uuid") or str(uuidlib.uuid4()),
                    **{k: v for k, v in values.items() if k in _COLUMNS and k not in ("id", "uuid")})
    session.add(row)
    session.flush()
    return to_dict(row)


def _row(session: Session, migration_uuid: str) -> Migration:
    row = session.scalar(sa.select(Migration).where(Migration.uuid == migration_uuid))
    if row is None:
        raise NotFound(f"Migration {migration_uuid} could not be found.")
    return row


def get(session: Session, migration_uuid: str) -> dict[str, Any]:
    return to_dict(_row(session, migration_uuid))


def get_by_id(session: Session, instance_uuid: str, migration_id: int) -> dict[str, Any] | None:
    row = session.scalar(sa.select(Migration).where(Migration.id == migration_id,
                                                    Migration.instance_uuid == instance_uuid))
    return None if row is None else to_dict(row)


def update(session: Session, migration_uuid: str, values: dict[str, Any],
           expected_status: list[str] | None = None) -> dict[str, Any]:
    """Change a record; with ``expected_status`` only while its status is one of them (UnexpectedStatus if not)."""
    row = _row(session, migration_uuid)
    stmt = sa.update(Migration).where(Migration.id == row.id)
    if expected_status is not None:
        stmt = stmt.where(Migration.status.in_(expected_status))
    changes = {k: v for k, v in values.items() if k in _COLUMNS and k not in ("id", "uuid")}
    changes["updated_at"] = utcnow()
    if session.execute(stmt.values(**changes).execution_options(synchronize_session=False)).rowcount != 1:
        raise UnexpectedStatus(f"Migration {migration_uuid} is {row.status}, not {' or '.join(expected_status or [])}")
    session.expire(row)
    return to_dict(_row(session, migration_uuid))


def in_progress_for(session: Session, instance_uuid: str, migration_type: str | None = None,
                    statuses: tuple[str, ...] = IN_PROGRESS) -> dict[str, Any] | None:
    """The instance's newest move whose status is in ``statuses`` (of ``migration_type`` when given)."""
    query = sa.select(Migration).where(Migration.instance_uuid == instance_uuid, Migration.deleted == 0,
                                       Migration.status.in_(statuses))
    if migration_type is not None:
        query = query.where(Migration.migration_type == migration_type)
    row = session.scalar(query.order_by(Migration.id.desc()).limit(1))
    return None if row is None else to_dict(row)


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


def query(session: Session, filters: dict[str, Any], limit: int | None = None,
          marker_id: int | None = None, changes_since: datetime | None = None,
          changes_before: datetime | None = None) -> list[dict[str, Any]]:
    """For GET /os-migrations: equality ``filters`` on columns (``status``, ``source_compute``,
    ``migration_type``, ``instance_uuid``, ``user_id``, ``project_id``; ``host`` matches source or
    destination), newest first (created_at, id), after ``marker_id`` in that order."""
    stmt = sa.select(Migration)
    for key, value in filters.items():
        if key == "host":
            stmt = stmt.where(sa.or_(Migration.source_compute == value, Migration.dest_compute == value))
        else:
            stmt = stmt.where(getattr(Migration, key) == value)
    if changes_since is not None:
        stmt = stmt.where(Migration.updated_at >= changes_since)
    if changes_before is not None:
        stmt = stmt.where(Migration.updated_at <= changes_before)
    if marker_id is not None:
        marker = session.get(Migration, marker_id)
        if marker is not None:
            stmt = stmt.where(sa.or_(Migration.created_at < marker.created_at,
                                     sa.and_(Migration.created_at == marker.created_at, Migration.id < marker.id)))
    stmt = stmt.order_by(Migration.created_at.desc(), Migration.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return [to_dict(row) for row in session.scalars(stmt)]
