"""The consumers and consumer_types tables: who holds allocations, with a generation each."""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects.models import Consumer, ConsumerType, now

# Upstream's [placement] incomplete_consumer_project_id / _user_id defaults (allocations before 1.8).
INCOMPLETE_PROJECT = "00000000-0000-0000-0000-000000000000"
INCOMPLETE_USER = "00000000-0000-0000-0000-000000000000"
MISSING = object()  # no consumer generation given: microversion below 1.28, nothing to compare


@dataclass
class ConsumerRequest:
    uuid: str
    project_id: str | None
    user_id: str | None
    allocations: dict[str, dict[str, int]]      # provider uuid -> class -> amount
    generation: object = MISSING                 # int, None (expected new) or MISSING
    consumer_type: str | None = None


_CONSUMERS = Consumer.__table__
_INSERT = _CONSUMERS.insert()
# The SET clause comes from the execute() parameters other than the two of the WHERE clause.
_UPDATE = _CONSUMERS.update().where(_CONSUMERS.c.id == sa.bindparam("c_id"),
                                    _CONSUMERS.c.generation == sa.bindparam("c_seen"))
# Every move reads and rewrites its consumers: table-level statements built once.
_TYPES = ConsumerType.__table__
_ROW = (sa.select(_CONSUMERS.c.id, _CONSUMERS.c.uuid, _CONSUMERS.c.project_id, _CONSUMERS.c.user_id,
                  _CONSUMERS.c.generation, _CONSUMERS.c.consumer_type_id, _TYPES.c.name.label("type_name"))
        .outerjoin(_TYPES, _TYPES.c.id == _CONSUMERS.c.consumer_type_id)
        .where(_CONSUMERS.c.uuid == sa.bindparam("uuid")))
_DELETE = _CONSUMERS.delete().where(_CONSUMERS.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
prepare(_UPDATE, _ROW, _DELETE, _INSERT)  # on SQLite's cursor: every move and claim


def get(session: Session, uuid: str) -> sa.Row | None:
    """(id, uuid, project_id, user_id, generation, consumer_type_id, type_name) of a consumer, or None."""
    return session.execute(_ROW, {"uuid": uuid}).first()


def type_id(session: Session, name: str | None, create: bool = True) -> int | None:
    if name is None:
        return None
    found = session.scalar(sa.select(ConsumerType.id).where(ConsumerType.name == name))
    if found is None and create:
        row = ConsumerType(name=name)
        session.add(row)
        session.flush()
        found = row.id
    return found


def type_names(session: Session) -> dict[int, str]:
    return dict(session.execute(sa.select(ConsumerType.id, ConsumerType.name)).all())


def check_generation(existing: Consumer | None, request: ConsumerRequest) -> None:
    if request.generation is MISSING:
        return
    if existing is None and request.generation is not None:
        raise exc.ConcurrentUpdate(f"consumer generation conflict - expected null but got {request.generation}")
    if existing is not None and existing.generation != request.generation:
        raise exc.ConcurrentUpdate(f"consumer generation conflict - expected {existing.generation} "
                                   f"but got {request.generation}")


def save(session: Session, existing: Consumer | None, request: ConsumerRequest) -> None:
    """Create the consumer or update it, bumping its generation (compare-and-swap)."""
    project = request.project_id or INCOMPLETE_PROJECT
    user = request.user_id or INCOMPLETE_USER
    values = {"project_id": project, "user_id": user}
    if request.consumer_type is not None:
        values["consumer_type_id"] = type_id(session, request.consumer_type)
    # Prebuilt table-level statements: this runs in every claim, the ORM's unit of work is not needed.
    if existing is None:
        session.execute(_INSERT, {"uuid": request.uuid, "generation": 1, "created_at": now(), "updated_at": None,
                                  **values})
        return
    result = session.execute(_UPDATE, {"c_id": existing.id, "c_seen": existing.generation,
                                       "generation": existing.generation + 1, "updated_at": now(), **values})
    if result.rowcount != 1:
        raise exc.ConcurrentUpdate(f"consumer generation conflict for consumer {request.uuid}")


def delete(session: Session, uuids) -> None:
    session.execute(_DELETE, {"uuids": list(uuids)})
