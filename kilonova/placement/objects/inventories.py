"""The inventories table: what each provider offers, per resource class."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_classes as rcs
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects.models import Allocation, Inventory, now

LOG = logging.getLogger(__name__)
FIELDS = ("total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio")


@dataclass(frozen=True)
class InventoryRecord:
    resource_class: str
    total: int
    reserved: int
    min_unit: int
    max_unit: int
    step_size: int
    allocation_ratio: float
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def capacity(self) -> int:
        return int((self.total - self.reserved) * self.allocation_ratio)

    def as_dict(self) -> dict:
        return {field: getattr(self, field) for field in FIELDS}


# Inventory refreshes are what every compute host sends all day: table-level statements built once, run
# on SQLite's cursor (kilonova/common/prepared.py); written rows are not read back.
_INV = Inventory.__table__
_ALLOC = Allocation.__table__
_ROWS = sa.select(_INV.c.resource_class_id, *(_INV.c[f] for f in FIELDS), _INV.c.created_at,
                  _INV.c.updated_at).where(_INV.c.resource_provider_id == sa.bindparam("rp_id"))
_INSERT = _INV.insert()
# The SET clause: the parameters other than rp_id and rc_id.
_UPDATE = _INV.update().where(_INV.c.resource_provider_id == sa.bindparam("rp_id"),
                              _INV.c.resource_class_id == sa.bindparam("rc_id"))
_DELETE = _INV.delete().where(_INV.c.resource_provider_id == sa.bindparam("rp_id"),
                              _INV.c.resource_class_id.in_(sa.bindparam("rc_ids", expanding=True)))
_DELETE_ALL = _INV.delete().where(_INV.c.resource_provider_id == sa.bindparam("rp_id"))
_CLASSES_IN_USE = sa.select(_ALLOC.c.resource_class_id).distinct().where(
    _ALLOC.c.resource_provider_id == sa.bindparam("rp_id"),
    _ALLOC.c.resource_class_id.in_(sa.bindparam("rc_ids", expanding=True)))
_CLASSES_ALLOCATED = sa.select(_ALLOC.c.resource_class_id).distinct().where(
    _ALLOC.c.resource_provider_id == sa.bindparam("rp_id"))
_USAGE = (sa.select(_ALLOC.c.resource_class_id, sa.func.sum(_ALLOC.c.used))
          .where(_ALLOC.c.resource_provider_id == sa.bindparam("rp_id")).group_by(_ALLOC.c.resource_class_id))
prepare(_ROWS, _INSERT, _UPDATE, _DELETE, _DELETE_ALL, _CLASSES_IN_USE, _CLASSES_ALLOCATED, _USAGE)


def _records(session: Session, provider_id: int) -> dict[str, InventoryRecord]:
    return {record.resource_class: record for _, record in _records_by_id(session, provider_id)}


def _records_by_id(session: Session, provider_id: int) -> list[tuple[int, InventoryRecord]]:
    """(class id, record) of each inventory of the provider."""
    rows = session.execute(_ROWS, {"rp_id": provider_id}).all()
    names = rcs.names_by_id(session, {row[0] for row in rows})
    return [(row[0], InventoryRecord(names[row[0]], *row[1:])) for row in rows]


def of_provider(session: Session, uuid: str) -> tuple[rps.Provider, dict[str, InventoryRecord]]:
    provider = rps.get(session, uuid)
    return provider, _records(session, provider.id)


def _check_generation(provider: rps.Provider, generation: int | None) -> None:
    if generation is not None and generation != provider.generation:
        raise exc.ConcurrentUpdate("resource provider generation conflict")


def _in_use(session: Session, provider: rps.Provider, class_ids: dict[str, int]) -> None:
    if not class_ids:
        return
    rows = session.execute(_CLASSES_IN_USE, {"rp_id": provider.id, "rc_ids": list(class_ids.values())}).scalars().all()
    if rows:
        # in class id order, as upstream's query returns them
        used = [name for name, rc_id in sorted(class_ids.items(), key=lambda kv: kv[1]) if rc_id in set(rows)]
        raise exc.InUse(f"Inventory for '{', '.join(used)}' on resource provider '{provider.uuid}' in use.")


def _write(session: Session, provider: rps.Provider, name: str, rc_id: int, values: dict,
           existing: InventoryRecord | None) -> InventoryRecord:
    """Write one inventory row; the record as it now is."""
    stamp = now()
    if existing is not None:
        session.execute(_UPDATE, {"rp_id": provider.id, "rc_id": rc_id, **values, "updated_at": stamp})
        return InventoryRecord(existing.resource_class, *(values[f] for f in FIELDS), existing.created_at, stamp)
    session.execute(_INSERT, {"resource_provider_id": provider.id, "resource_class_id": rc_id, **values,
                              "created_at": stamp, "updated_at": None})
    return InventoryRecord(name, *(values[f] for f in FIELDS), stamp, None)


def replace_all(session: Session, uuid: str, generation: int | None,
                inventories: dict[str, dict]) -> tuple[rps.Provider, dict[str, InventoryRecord]]:
    """Make the provider's inventory exactly ``inventories``; refuses to drop classes in use."""
    provider = rps.get(session, uuid)
    _check_generation(provider, generation)
    # The generation is swapped first: a write racing on it waits for this one's row lock and is told of
    # the conflict (PostgreSQL, MariaDB) rather than colliding with the inventory rows inserted here.
    bumped = rps.bump_generation(session, provider)
    return bumped, _write_all(session, provider, inventories)


def write_all(session: Session, provider: rps.Provider, inventories: dict[str, dict], *,
              check_in_use: bool = True) -> None:
    """Replace the inventory rows (no generation change); the reshaper checks use at the end instead."""
    _write_all(session, provider, inventories, check_in_use=check_in_use)


def _write_all(session: Session, provider: rps.Provider, inventories: dict[str, dict], *,
               check_in_use: bool = True) -> dict[str, InventoryRecord]:
    """``write_all``; the provider's records as they now are, in class id order (as they are read)."""
    ids = rcs.ids_by_name(session, list(inventories))
    unknown = sorted(set(inventories) - set(ids))
    if unknown:
        raise exc.ResourceClassNotFound(f"No such resource class {unknown[0]}.")
    current = dict(_records_by_id(session, provider.id))
    removed = {record.resource_class: rc_id for rc_id, record in current.items()
               if record.resource_class not in inventories}
    if check_in_use:
        _in_use(session, provider, removed)
    if removed:
        session.execute(_DELETE, {"rp_id": provider.id, "rc_ids": list(removed.values())})
    written = {}
    for name, values in inventories.items():
        written[ids[name]] = _write(session, provider, name, ids[name], values, current.get(ids[name]))
    records = {written[rc_id].resource_class: written[rc_id] for rc_id in sorted(written)}
    _warn_if_overcommitted(session, provider, ids, records)
    return records


def check_allocations_covered(session: Session, provider: rps.Provider) -> None:
    """Every class allocated on the provider still has inventory (``InUse`` otherwise)."""
    allocated = set(session.scalars(_CLASSES_ALLOCATED, {"rp_id": provider.id}))
    offered = {rc_id for rc_id, _ in _records_by_id(session, provider.id)}
    missing = sorted(rcs.name_of(session, rc_id) for rc_id in allocated - offered)
    if missing:
        raise exc.InUse(f"Inventory for '{', '.join(missing)}' on resource provider '{provider.uuid}' in use.")


def _warn_if_overcommitted(session: Session, provider: rps.Provider, ids: dict[str, int],
                           records: dict[str, InventoryRecord] | None = None) -> None:
    """Upstream accepts an inventory smaller than what is allocated, and only warns. ``records``: the
    provider's records when the caller has them."""
    wanted = set(ids.values())
    used = {rc_id: amount for rc_id, amount in session.execute(_USAGE, {"rp_id": provider.id}) if rc_id in wanted}
    if not used:
        return
    for name, record in (records if records is not None else _records(session, provider.id)).items():
        if used.get(ids.get(name), 0) > record.capacity:
            LOG.warning("Resource provider %s is now over capacity for %s: %s used of %s", provider.uuid, name,
                        used[ids[name]], record.capacity)


def create_one(session: Session, uuid: str, name: str, values: dict) -> tuple[rps.Provider, InventoryRecord]:
    provider = rps.get(session, uuid)
    rc_id = rcs.id_of(session, name)
    bumped = rps.bump_generation(session, provider)   # first, as replace_all
    if name in _records(session, provider.id):
        raise exc.ConcurrentUpdate(f"Inventory for {name} on resource provider {uuid} already exists.")
    return bumped, _write(session, provider, name, rc_id, values, None)


def update_one(session: Session, uuid: str, name: str, generation: int,
               values: dict) -> tuple[rps.Provider, InventoryRecord]:
    provider = rps.get(session, uuid)
    _check_generation(provider, generation)
    rc_id = rcs.id_of(session, name)
    current = _records(session, provider.id)
    if name not in current:
        raise exc.InventoryNotFound(f"No inventory record with resource class for resource provider {uuid}: "
                                    f"No inventory of class {name} found.")
    record = _write(session, provider, name, rc_id, values, current[name])
    _warn_if_overcommitted(session, provider, {name: rc_id}, {name: record})
    provider = rps.bump_generation(session, provider)
    return provider, record


def delete_one(session: Session, uuid: str, name: str) -> rps.Provider:
    provider = rps.get(session, uuid)
    current = _records(session, provider.id)
    if name not in current:
        raise exc.InventoryNotFound(f"No inventory of class {name} found for delete")
    rc_id = rcs.id_of(session, name)
    _in_use(session, provider, {name: rc_id})
    session.execute(_DELETE, {"rp_id": provider.id, "rc_ids": [rc_id]})
    return rps.bump_generation(session, provider)


def delete_all(session: Session, uuid: str) -> rps.Provider:
    provider = rps.get(session, uuid)
    current = _records(session, provider.id)
    ids = {name: rcs.id_of(session, name) for name in current}
    _in_use(session, provider, ids)
    session.execute(_DELETE_ALL, {"rp_id": provider.id})
    return rps.bump_generation(session, provider)
