"""The services table of a cell: one row per (host, binary), kept fresh by heartbeats."""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.common.prepared import prepare
from kilonova.compute.db.cell_models import ComputeNode, Instance, Service

UPDATABLE = ("disabled", "disabled_reason", "forced_down")


def _now() -> datetime:
    return datetime.utcnow()


def report(session: Session, host: str, binary: str, topic: str | None, version: int = 1) -> dict[str, Any]:
    """A heartbeat: create the service record if needed, bump updated_at and report_count, keep its version.

    ``version``: the service version the service runs (``kilonova.compute.versions``); one that does
    not say is of the first release.
    """
    service = find(session, host, binary)
    now = _now()
    if service is None:
        service = Service(uuid=str(uuidlib.uuid4()), host=host, binary=binary, topic=topic, report_count=0,
                          created_at=now)
        session.add(service)
    service.report_count = (service.report_count or 0) + 1
    service.updated_at = now
    service.last_seen_up = now
    service.version = version
    if topic is not None:
        service.topic = topic
    session.flush()
    return {"id": service.id, "uuid": service.uuid, "disabled": service.disabled,
            "forced_down": service.forced_down}


def find(session: Session, host: str, binary: str) -> Service | None:
    return session.scalar(sa.select(Service).where(Service.host == host, Service.binary == binary,
                                                   Service.deleted == 0))


def version_of(session: Session, host: str, binary: str) -> int | None:
    """The service version ``host``'s ``binary`` last announced; None when it has no record."""
    return session.scalar(sa.select(Service.version).where(Service.host == host, Service.binary == binary,
                                                           Service.deleted == 0))


def list_services(session: Session, *, host: str | None = None, binary: str | None = None) -> list[Service]:
    stmt = sa.select(Service).where(Service.deleted == 0)
    if host is not None:
        stmt = stmt.where(Service.host == host)
    if binary is not None:
        stmt = stmt.where(Service.binary == binary)
    return list(session.scalars(stmt.order_by(Service.id)))


def get(session: Session, ident: int | str) -> Service:
    """By integer id or by uuid."""
    column = Service.id if isinstance(ident, int) else Service.uuid
    service = session.scalar(sa.select(Service).where(column == ident, Service.deleted == 0))
    if service is None:
        raise NotFound(f"Service {ident} could not be found.")
    return service


def update(session: Session, ident: int | str, values: dict[str, Any]) -> Service:
    service = get(session, ident)
    for key, value in values.items():
        if key not in UPDATABLE:
            raise ValueError(f"services.update cannot change {key}")
        setattr(service, key, value)
    service.updated_at = service.updated_at or _now()
    session.flush()
    return service


def is_up(service: Service, down_time: float, now: datetime | None = None) -> bool:
    """Nova's DB servicegroup driver: up when not forced down and heard from within down_time."""
    if service.forced_down:
        return False
    seen = service.last_seen_up or service.updated_at or service.created_at
    return seen is not None and (now or _now()) - seen <= timedelta(seconds=down_time)


def delete(session: Session, ident: int | str) -> Service:
    """Soft-delete a service; a compute service also takes its compute nodes. Conflict if it hosts instances."""
    service = get(session, ident)
    if service.binary == "nova-compute":
        hosting = session.scalar(sa.select(sa.func.count(Instance.id)).where(Instance.host == service.host,
                                                                             Instance.deleted == 0))
        if hosting:
            raise Conflict("Unable to delete compute service that is hosting instances. "
                           "Migrate or delete the instances first.")
        for node in session.scalars(sa.select(ComputeNode).where(ComputeNode.host == service.host,
                                                                 ComputeNode.deleted == 0)):
            node.deleted = node.id
    service.deleted = service.id
    session.flush()
    return service


# Every move asks whether its hosts are up: the columns ``is_up`` reads, from a statement built once.
_SERVICES = Service.__table__
_LIVENESS = sa.select(_SERVICES.c.forced_down, _SERVICES.c.last_seen_up, _SERVICES.c.updated_at,
                      _SERVICES.c.created_at).where(_SERVICES.c.host == sa.bindparam("host"),
                                                    _SERVICES.c.binary == "nova-compute", _SERVICES.c.deleted == 0)
prepare(_LIVENESS)  # on SQLite's cursor


def compute_is_up(session: Session, host: str, down_time: float) -> bool:
    """Whether the compute service of ``host`` heartbeats (False when it never registered)."""
    service = session.execute(_LIVENESS, {"host": host}).first()
    return service is not None and is_up(service, down_time)
