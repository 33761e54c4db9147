"""The inventories table: what each provider offers, per resource class."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

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


def _records(session: Session, provider_id: int) -> dict[str, InventoryRecord]:
    names = rcs.names_by_id(session)
    rows = session.scalars(sa.select(Inventory).where(Inventory.resource_provider_id == provider_id))
    result = {}
    for row in rows:
        name = names.get(row.resource_class_id) or rcs.name_of(session, row.resource_class_id)
        result[name] = InventoryRecord(name, *(getattr(row, f) for f in FIELDS), row.created_at, row.updated_at)
    return result


def of_provider(session: Session, uuid: str) -> tuple[rps.Provider, dict[str, InventoryRecord]]:
    provider = rps.get(session, uuid)
    return provider, _records(session, provider.id)


def _check_generation(provider: rps.Provider, generation: int | None) -> None:
    if generation is not None and generation != provider.generation:
        raise exc.ConcurrentUpdate("resource provider generation conflict")


def _in_use(session: Session, provider: rps.Provider, class_ids: dict[str, int]) -> None:
    if not class_ids:
        return
    rows = session.execute(sa.select(Allocation.resource_class_id).distinct()
                           .where(Allocation.resource_provider_id == provider.id,
                                  Allocation.resource_class_id.in_(list(class_ids.values())))).scalars().all()
    if rows:
        # in class id order, as upstream's query returns them
        used = [name for name, rc_id in sorted(class_ids.items(), key=lambda kv: kv[1]) if rc_id in set(rows)]
        raise exc.InUse(f"Inventory for '{', '.join(used)}' on resource provider '{provider.uuid}' in use.")


def _write(session: Session, provider: rps.Provider, rc_id: int, values: dict, existing: bool) -> None:
    if existing:
        session.execute(sa.update(Inventory).where(Inventory.resource_provider_id == provider.id,
                                                   Inventory.resource_class_id == rc_id)
                        .values(**values, updated_at=now()))
    else:
        session.add(Inventory(resource_provider_id=provider.id, resource_class_id=rc_id, **values))
    session.flush()


def replace_all(session: Session, uuid: str, generation: int | None,
                inventories: dict[str, dict]) -> tuple[rps.Provider, dict[str, InventoryRecord]]:
    """Make the provider's inventory exactly ``inventories``; refuses to drop classes in use."""
    provider = rps.get(session, uuid)
    _check_generation(provider, generation)
    write_all(session, provider, inventories)
    provider = rps.bump_generation(session, provider)
    return provider, _records(session, provider.id)


def write_all(session: Session, provider: rps.Provider, inventories: dict[str, dict], *,
              check_in_use: bool = True) -> None:
    """Replace the inventory rows (no generation change); the reshaper checks use at the end instead."""
    ids = rcs.ids_by_name(session, list(inventories))
    unknown = sorted(set(inventories) - set(ids))
    if unknown:
        raise exc.ResourceClassNotFound(f"No such resource class {unknown[0]}.")
    current = _records(session, provider.id)
    removed = {name: rcs.id_of(session, name) for name in current if name not in inventories}
    if check_in_use:
        _in_use(session, provider, removed)
    if removed:
        session.execute(sa.delete(Inventory).where(Inventory.resource_provider_id == provider.id,
                                                   Inventory.resource_class_id.in_(list(removed.values()))))
    for name, values in inventories.items():
        _write(session, provider, ids[name], values, name in current)
    _warn_if_overcommitted(session, provider, ids)


def check_allocations_covered(session: Session, provider: rps.Provider) -> None:
    """Every class allocated on the provider still has inventory (``InUse`` otherwise)."""
    allocated = set(session.scalars(sa.select(Allocation.resource_class_id).distinct()
                                    .where(Allocation.resource_provider_id == provider.id)))
    offered = set(session.scalars(sa.select(Inventory.resource_class_id)
                                  .where(Inventory.resource_provider_id == provider.id)))
    missing = sorted(rcs.name_of(session, rc_id) for rc_id in allocated - offered)
    if missing:
        raise exc.InUse(f"Inventory for '{', '.join(missing)}' on resource provider '{provider.uuid}' in use.")


def _warn_if_overcommitted(session: Session, provider: rps.Provider, ids: dict[str, int]) -> None:
    """Upstream accepts an inventory smaller than what is allocated, and only warns."""
    usage = rps.usage_subquery(list(ids.values()))
    rows = session.execute(sa.select(usage.c.rc_id, usage.c.used).where(usage.c.rp_id == provider.id))
    used = dict(rows.all())
    if not used:
        return
    for name, record in _records(session, provider.id).items():
        if used.get(ids.get(name), 0) > record.capacity:
            LOG.warning("Resource provider %s is now over capacity for %s: %s used of %s", provider.uuid, name,
                        used[ids[name]], record.capacity)


def create_one(session: Session, uuid: str, name: str, values: dict) -> tuple[rps.Provider, InventoryRecord]:
    provider = rps.get(session, uuid)
    rc_id = rcs.id_of(session, name)
    if name in _records(session, provider.id):
        raise exc.ConcurrentUpdate(f"Inventory for {name} on resource provider {uuid} already exists.")
    _write(session, provider, rc_id, values, False)
    provider = rps.bump_generation(session, provider)
    return provider, _records(session, provider.id)[name]


def update_one(session: Session, uuid: str, name: str, generation: int,
               values: dict) -> tuple[rps.Provider, InventoryRecord]:
    provider = rps.get(session, uuid)
    _check_generation(provider, generation)
    rc_id = rcs.id_of(session, name)
    if name not in _records(session, provider.id):
        raise exc.InventoryNotFound(f"No inventory record with resource class for resource provider {uuid}: "
                                    f"No inventory of class {name} found.")
    _write(session, provider, rc_id, values, True)
    _warn_if_overcommitted(session, provider, {name: rc_id})
    provider = rps.bump_generation(session, provider)
    return provider, _records(session, provider.id)[name]


def delete_one(session: Session, uuid: str, name: str) -> rps.Provider:
    provider = rps.get(session, uuid)
    current = _records(session, provider.id)
    if name not in current:
        raise exc.InventoryNotFound(f"No inventory of class {name} found for delete")
    rc_id = rcs.id_of(session, name)
    _in_use(session, provider, {name: rc_id})
    session.execute(sa.delete(Inventory).where(Inventory.resource_provider_id == provider.id,
                                               Inventory.resource_class_id == rc_id))
    return rps.bump_generation(session, provider)


def delete_all(session: Session, uuid: str) -> rps.Provider:
    provider = rps.get(session, uuid)
    current = _records(session, provider.id)
    ids = {name: rcs.id_of(session, name) for name in current}
    _in_use(session, provider, ids)
    session.execute(sa.delete(Inventory).where(Inventory.resource_provider_id == provider.id))
    return rps.bump_generation(session, provider)
