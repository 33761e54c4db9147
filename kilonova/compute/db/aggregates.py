"""Host aggregates in the API database: hosts, metadata, and the availability zones they define.

An aggregate whose metadata has an ``availability_zone`` key is an availability
zone: its hosts are in that zone; a host in no such aggregate is in the default
zone (``[DEFAULT] default_availability_zone``). A host may be in many
aggregates but never in two different zones.

Functions return plain dicts (see ``snapshot``), never live rows.
"""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, DBError, NotFound
from kilonova.common.prepared import prepare
from kilonova.compute.db.api_models import Aggregate, AggregateHost, AggregateMetadata

AZ_KEY = "availability_zone"
# Nova's InvalidAggregateAction* message prefixes, each followed by the aggregate id and a reason.
ADD = "Cannot add host to aggregate"
DELETE = "Cannot remove host from aggregate"
UPDATE = "Cannot update aggregate"
UPDATE_META = "Cannot update metadata of aggregate"
_MAX_ID = 2 ** 63 - 1


class InvalidAction(DBError):
    """The change would leave an aggregate inconsistent (Nova's InvalidAggregateAction)."""

    def __init__(self, action: str, aggregate_id: int, reason: str):
        super().__init__(f"{action} {aggregate_id}. Reason: {reason}.")


def _now() -> datetime:
    return datetime.utcnow().replace(microsecond=0)


def snapshot(agg: Aggregate) -> dict[str, Any]:
    metadata = {item.key: item.value for item in agg.items}
    return {"id": agg.id, "uuid": agg.uuid, "name": agg.name, "created_at": agg.created_at,
            "updated_at": agg.updated_at, "hosts": [h.host for h in agg.hosts], "metadata": metadata,
            "availability_zone": metadata.get(AZ_KEY)}


def _get(session: Session, aggregate_id: int) -> Aggregate:
    agg = session.get(Aggregate, aggregate_id) if 0 <= aggregate_id <= _MAX_ID else None
    if agg is None:
        raise NotFound(f"Aggregate {aggregate_id} could not be found.")
    return agg


def _check_name(session: Session, name: str, aggregate_id: int | None = None) -> None:
    taken = session.scalar(sa.select(Aggregate.id).where(Aggregate.name == name))
    if taken is not None and taken != aggregate_id:
        raise Conflict(f"Aggregate {name} already exists.")


def _flush(session: Session, conflict: str) -> None:
    """Flush; a unique constraint hit by a concurrent writer is the same Conflict the checks raise."""
    try:
        session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(conflict) from None


def _check_zone(session: Session, agg: Aggregate, metadata: dict[str, Any], hosts: list[str],
                action: str) -> None:
    """Nova's is_safe_to_update_az: no empty zone, and no host ending up in two zones."""
    if AZ_KEY not in metadata:
        return
    zone = metadata[AZ_KEY]
    if not zone:
        raise InvalidAction(action, agg.id, f"Aggregate {agg.name} does not support empty named "
                                            "availability zone")
    if not hosts:
        return
    others = sorted(session.scalars(
        sa.select(AggregateMetadata.value).distinct()
        .join(AggregateHost, AggregateHost.aggregate_id == AggregateMetadata.aggregate_id)
        .where(AggregateMetadata.key == AZ_KEY, AggregateMetadata.value != zone,
               AggregateMetadata.aggregate_id != agg.id, AggregateHost.host.in_(hosts))))
    if others:
        raise InvalidAction(action, agg.id, f"One or more hosts already in availability zone(s) {others}")


def _apply_metadata(agg: Aggregate, metadata: dict[str, Any]) -> None:
    """Set each key; a None value removes the key (missing keys are ignored)."""
    items = {item.key: item for item in agg.items}
    for key, value in metadata.items():
        if value is None:
            if key in items:
                agg.items.remove(items[key])
        elif key in items:
            items[key].value = str(value)
        else:
            agg.items.append(AggregateMetadata(key=key, value=str(value)))


def create(session: Session, name: str, availability_zone: str | None = None) -> dict[str, Any]:
    _check_name(session, name)
    agg = Aggregate(uuid=str(uuidlib.uuid4()), name=name, hosts=[], items=[])
    if availability_zone:
        agg.items.append(AggregateMetadata(key=AZ_KEY, value=availability_zone))
    session.add(agg)
    _flush(session, f"Aggregate {name} already exists.")
    return snapshot(agg)


def list_aggregates(session: Session) -> list[dict[str, Any]]:
    return [snapshot(agg) for agg in session.scalars(sa.select(Aggregate).order_by(Aggregate.id))]


def get(session: Session, aggregate_id: int) -> dict[str, Any]:
    return snapshot(_get(session, aggregate_id))


def update(session: Session, aggregate_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Rename and/or move the aggregate to another availability zone."""
    agg = _get(session, aggregate_id)
    if "name" in values:
        _check_name(session, values["name"], agg.id)
    zone = {AZ_KEY: values[AZ_KEY]} if AZ_KEY in values else {}
    _check_zone(session, agg, zone, [h.host for h in agg.hosts], UPDATE)
    if "name" in values:
        agg.name = values["name"]
    _apply_metadata(agg, zone)
    agg.updated_at = _now()
    _flush(session, f"Aggregate {agg.name} already exists.")
    return snapshot(agg)


def set_metadata(session: Session, aggregate_id: int, metadata: dict[str, Any]) -> dict[str, Any]:
    agg = _get(session, aggregate_id)
    _check_zone(session, agg, metadata, [h.host for h in agg.hosts], UPDATE_META)
    _apply_metadata(agg, metadata)
    agg.updated_at = _now()
    session.flush()
    return snapshot(agg)


def delete(session: Session, aggregate_id: int) -> dict[str, Any]:
    agg = _get(session, aggregate_id)
    if agg.hosts:
        raise InvalidAction(DELETE, agg.id, "Host aggregate is not empty")
    gone = snapshot(agg)
    session.delete(agg)
    session.flush()
    return gone


def add_host(session: Session, aggregate_id: int, host: str) -> dict[str, Any]:
    """Add a host (its existence is the caller's check); Conflict if already there."""
    agg = _get(session, aggregate_id)
    _check_zone(session, agg, {item.key: item.value for item in agg.items}, [host], ADD)
    if any(h.host == host for h in agg.hosts):
        raise Conflict(f"Aggregate {aggregate_id} already has host {host}.")
    agg.hosts.append(AggregateHost(host=host))
    _flush(session, f"Aggregate {aggregate_id} already has host {host}.")
    return snapshot(agg)


def remove_host(session: Session, aggregate_id: int, host: str) -> dict[str, Any]:
    agg = _get(session, aggregate_id)
    member = next((h for h in agg.hosts if h.host == host), None)
    if member is None:
        raise NotFound(f"Aggregate {aggregate_id} has no host {host}.")
    agg.hosts.remove(member)
    session.flush()
    return snapshot(agg)


def remove_host_everywhere(session: Session, host: str) -> list[str]:
    """Take a host out of every aggregate (its service is gone); the uuids of those aggregates."""
    rows = session.execute(sa.select(AggregateHost.id, Aggregate.uuid)
                           .join(Aggregate, Aggregate.id == AggregateHost.aggregate_id)
                           .where(AggregateHost.host == host)).all()
    if rows:
        session.execute(sa.delete(AggregateHost).where(AggregateHost.id.in_([r.id for r in rows])))
    return [r.uuid for r in rows]


# ---------------------------------------------------------------- availability zones

# Built once: the scheduler reads every host's zone for each scheduling pass.
# Table columns, not ORM attributes: the statement then runs without an ORM session.
_HOSTS_TABLE, _METADATA_TABLE = AggregateHost.__table__, AggregateMetadata.__table__
_HOST_ZONES = (sa.select(_HOSTS_TABLE.c.host, _METADATA_TABLE.c.value)
               .join(_METADATA_TABLE, _METADATA_TABLE.c.aggregate_id == _HOSTS_TABLE.c.aggregate_id)
               .where(_METADATA_TABLE.c.key == AZ_KEY))


def host_zones(session: Session, hosts: list[str] | None = None) -> dict[str, str]:
    """host -> zone for every host (of ``hosts``, if given) in an aggregate with an availability zone."""
    found: dict[str, set[str]] = {}
    stmt = _HOST_ZONES
    if hosts is not None:
        stmt = stmt.where(_HOSTS_TABLE.c.host.in_(hosts))
    for host, zone in session.execute(stmt):
        found.setdefault(host, set()).add(zone)
    # Zones are kept disjoint; should they not be, Nova shows them joined with commas.
    return {host: ",".join(sorted(zones)) for host, zones in found.items()}


def host_availability_zone(session: Session, host: str, default: str) -> str:
    return host_zones(session, [host]).get(host, default)


def zone_hosts(session: Session) -> dict[str, list[str]]:
    """zone -> its hosts, for the zones aggregates define."""
    zones: dict[str, list[str]] = {}
    for host, zone in sorted(host_zones(session).items()):
        zones.setdefault(zone, []).append(host)
    return zones


# ---------------------------------------------------------------- metadata, for the scheduler's aggregate filters

_HOST_METADATA = (sa.select(_HOSTS_TABLE.c.host, _METADATA_TABLE.c.key, _METADATA_TABLE.c.value)
                  .join(_METADATA_TABLE, _METADATA_TABLE.c.aggregate_id == _HOSTS_TABLE.c.aggregate_id))


def host_metadata(session: Session) -> dict[str, dict[str, set[str]]]:
    """host -> key -> values over all the host's aggregates, comma-separated values split (as upstream's
    aggregate_metadata_get_by_host)."""
    found: dict[str, dict[str, set[str]]] = {}
    for host, key, value in session.execute(_HOST_METADATA):
        found.setdefault(host, {}).setdefault(key, set()).update(v.strip() for v in (value or "").split(","))
    return found


_AGGREGATE_METADATA = (sa.select(Aggregate.__table__.c.uuid, Aggregate.__table__.c.name, _METADATA_TABLE.c.key,
                                 _METADATA_TABLE.c.value)
                       .join(_METADATA_TABLE, _METADATA_TABLE.c.aggregate_id == Aggregate.__table__.c.id))
prepare(_HOST_ZONES, _HOST_METADATA, _AGGREGATE_METADATA)  # on SQLite's cursor: read for every scheduling


def with_metadata(session: Session) -> list[dict[str, Any]]:
    """Every aggregate that has metadata: uuid, name, metadata (the scheduler's Placement pre-filters read
    them for each request: one light statement, no hosts)."""
    found: dict[str, dict[str, Any]] = {}
    for uuid, name, key, value in session.execute(_AGGREGATE_METADATA):
        found.setdefault(uuid, {"uuid": uuid, "name": name, "metadata": {}})["metadata"][key] = value
    return list(found.values())
