"""The allocations table: claims of consumers on providers, written capacity-checked.

``replace`` is the claim. In one write transaction it checks consumer
generations, drops the consumers' old allocations, checks every requested
amount against min_unit/max_unit/step_size and the capacity left
((total - reserved) * allocation_ratio - used), inserts the new rows and bumps
the generation of every provider involved with a compare-and-swap. On SQLite
the transaction holds the write lock from its start; on PostgreSQL/MariaDB a
concurrent claim on the same provider makes the swap fail, and the caller
retries the whole transaction (``ProviderConcurrentUpdate``).

As upstream, only the providers of the new allocations get a generation bump
(and, for a consumer whose allocations are emptied, the providers it leaves);
providers that a consumer moves off, and those of a deleted consumer, keep
their generation -- their ``usage_serial`` tells the capacity index instead.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare, prepared
from kilonova.placement.objects import consumers as consumers_mod
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_classes as rcs
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects.consumers import ConsumerRequest
from kilonova.placement.objects.models import Allocation, Consumer, Inventory, ResourceProvider, now


# The claim is the hottest write in a cloud: it uses table-level (Core) statements, which skip the
# ORM's unit of work and identity-map bookkeeping, and as few round trips as the checks allow.
_ALLOCATIONS = Allocation.__table__
_INVENTORIES = Inventory.__table__
_PROVIDERS = ResourceProvider.__table__
_CONSUMERS = Consumer.__table__
# Built once, with bound (expanding) parameters: SQLAlchemy reuses their cache keys and compiled SQL.
_CONSUMER_ROWS = sa.select(_CONSUMERS.c.id, _CONSUMERS.c.uuid, _CONSUMERS.c.generation).where(
    _CONSUMERS.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
_PROVIDER_ROWS = sa.select(_PROVIDERS.c.id, _PROVIDERS.c.uuid, _PROVIDERS.c.generation)
_PROVIDERS_BY_UUID = _PROVIDER_ROWS.where(_PROVIDERS.c.uuid.in_(sa.bindparam("keys", expanding=True)))
_PROVIDERS_BY_ID = _PROVIDER_ROWS.where(_PROVIDERS.c.id.in_(sa.bindparam("keys", expanding=True)))
_DELETE_FOR_CONSUMERS = _ALLOCATIONS.delete().where(
    _ALLOCATIONS.c.consumer_id.in_(sa.bindparam("uuids", expanding=True)))
_PROVIDERS_OF_CONSUMERS = sa.select(_ALLOCATIONS.c.resource_provider_id).distinct().where(
    _ALLOCATIONS.c.consumer_id.in_(sa.bindparam("uuids", expanding=True)))
_DELETE_RETURNING = _DELETE_FOR_CONSUMERS.returning(_ALLOCATIONS.c.resource_provider_id,
                                                     _ALLOCATIONS.c.resource_class_id, _ALLOCATIONS.c.used)
_ALLOCATIONS_OF_CONSUMERS = sa.select(_ALLOCATIONS.c.resource_provider_id, _ALLOCATIONS.c.resource_class_id,
                                      _ALLOCATIONS.c.used).where(
    _ALLOCATIONS.c.consumer_id.in_(sa.bindparam("uuids", expanding=True)))
_INSERT_ALLOCATION = _ALLOCATIONS.insert()
_USAGE_CHANGED = _PROVIDERS.update().where(_PROVIDERS.c.id.in_(sa.bindparam("keys", expanding=True))).values(
    usage_serial=_PROVIDERS.c.usage_serial + 1)
_BUMP_GENERATION = _PROVIDERS.update().where(
    _PROVIDERS.c.id == sa.bindparam("rp_id"), _PROVIDERS.c.generation == sa.bindparam("seen")
).values(generation=sa.bindparam("next"), updated_at=sa.bindparam("now"))
# on SQLite's cursor: every claim and swap
prepare(_CONSUMER_ROWS, _PROVIDERS_BY_UUID, _PROVIDERS_BY_ID, _DELETE_FOR_CONSUMERS, _PROVIDERS_OF_CONSUMERS,
        _DELETE_RETURNING, _ALLOCATIONS_OF_CONSUMERS, _USAGE_CHANGED, _BUMP_GENERATION,
        _INSERT_ALLOCATION)   # the rows give every column a default would: one executemany


def replace(session: Session, requests: list[ConsumerRequest]) -> None:
    uuids = [r.uuid for r in requests]
    found = {row.uuid: row for row in session.execute(_CONSUMER_ROWS, {"uuids": uuids})}
    existing = {uuid: found.get(uuid) for uuid in uuids}
    for request in requests:
        consumers_mod.check_generation(existing[request.uuid], request)
    wanted = {p for r in requests for p in r.allocations}
    providers = _providers(session, _PROVIDERS_BY_UUID, wanted) if wanted else {}
    for uuid in wanted:
        if uuid not in providers:
            raise exc.Invalid(f"Allocation for resource provider '{uuid}' that does not exist.")
    class_ids = rcs.ids_by_name(session, {rc for r in requests for res in r.allocations.values() for rc in res})
    for request in requests:
        for resources in request.allocations.values():
            for rc in resources:
                if rc not in class_ids:
                    raise exc.ResourceClassNotFound(f"No such resource class {rc}.")
    # upstream hands an emptied consumer's allocations in again with amount 0: their providers are bumped
    emptied = [r.uuid for r in requests if not r.allocations]
    emptied_on = set(session.scalars(_PROVIDERS_OF_CONSUMERS, {"uuids": emptied})) if emptied else set()
    freed = _delete_allocations(session, uuids)
    old_provider_ids = {rp_id for rp_id, _ in freed}
    _check_capacity(session, requests, providers, class_ids, freed)
    rows = [{"resource_provider_id": providers[rp_uuid].id, "consumer_id": request.uuid,
             "resource_class_id": class_ids[rc], "used": amount, "created_at": now(), "updated_at": None}
            for request in requests for rp_uuid, resources in request.allocations.items()
            for rc, amount in resources.items()]
    if rows:
        session.execute(_INSERT_ALLOCATION, rows)
    for request in requests:
        if request.allocations:
            consumers_mod.save(session, existing[request.uuid], request)
        elif existing[request.uuid] is not None:
            consumers_mod.delete(session, [request.uuid])
    touched = {p.id: p for p in providers.values()}
    others = emptied_on - set(touched)
    if others:
        touched.update({p.id: p for p in _providers(session, _PROVIDERS_BY_ID, others).values()})
    for provider in touched.values():
        _bump_generation(session, provider)
    left = old_provider_ids - set(touched)
    if left:
        session.execute(_USAGE_CHANGED, {"keys": list(left)})


def _providers(session: Session, statement, keys) -> dict[str, sa.Row]:
    """uuid -> (id, uuid, generation) of the providers with these uuids or ids."""
    return {row.uuid: row for row in session.execute(statement, {"keys": list(keys)})}


def _delete_allocations(session: Session, consumer_uuids: list[str]) -> dict[tuple[int, int], int]:
    """Drop the consumers' allocations; what they held, by (provider id, class id)."""
    params = {"uuids": consumer_uuids}
    if session.get_bind().dialect.delete_returning:
        rows = session.execute(_DELETE_RETURNING, params).all()
    else:
        rows = session.execute(_ALLOCATIONS_OF_CONSUMERS, params).all()
        session.execute(_DELETE_FOR_CONSUMERS, params)
    freed: dict[tuple[int, int], int] = defaultdict(int)
    for rp_id, rc_id, used in rows:
        freed[(rp_id, rc_id)] += used
    return freed


def _bump_generation(session: Session, provider) -> None:
    """Compare-and-swap the provider's generation (``rps.bump_generation`` without the ORM)."""
    result = session.execute(_BUMP_GENERATION, {"rp_id": provider.id, "seen": provider.generation,
                                                "next": provider.generation + 1, "now": now()})
    if result.rowcount != 1:
        raise exc.ProviderConcurrentUpdate(f"resource provider generation conflict for provider {provider.uuid}")


def _inventories_with_usage():
    """Each inventory (of the given providers and classes) with what is already allocated from it."""
    inv, alloc = _INVENTORIES.c, _ALLOCATIONS.c
    used_now = (sa.select(sa.func.coalesce(sa.func.sum(alloc.used), 0))
                .where(alloc.resource_provider_id == inv.resource_provider_id,
                       alloc.resource_class_id == inv.resource_class_id).scalar_subquery())
    return (sa.select(inv.resource_provider_id, inv.resource_class_id, inv.total, inv.reserved, inv.min_unit,
                      inv.max_unit, inv.step_size, inv.allocation_ratio, used_now.label("used"))
            .where(inv.resource_provider_id.in_(sa.bindparam("rp_ids", expanding=True)),
                   inv.resource_class_id.in_(sa.bindparam("rc_ids", expanding=True))))


_INVENTORIES_WITH_USAGE = prepared(_inventories_with_usage())


def _check_capacity(session: Session, requests: list[ConsumerRequest], providers: dict,
                    class_ids: dict[str, int], freed: dict[tuple[int, int], int]) -> None:
    """Refuse what exceeds an inventory's capacity, except (as upstream) an allocation that leaves an
    over-committed inventory no more used than before the consumers' old allocations were dropped."""
    needed: dict[tuple[int, int], int] = defaultdict(int)
    for request in requests:
        for rp_uuid, resources in request.allocations.items():
            for rc, amount in resources.items():
                needed[(providers[rp_uuid].id, class_ids[rc])] += amount
    if not needed:
        return
    params = {"rp_ids": list({key[0] for key in needed}), "rc_ids": list({key[1] for key in needed})}
    inventories = {(row.resource_provider_id, row.resource_class_id): row
                   for row in session.execute(_INVENTORIES_WITH_USAGE, params)}
    by_id = {p.id: p for p in providers.values()}
    names = {rc_id: name for name, rc_id in class_ids.items()}
    for request in requests:
        for rp_uuid, resources in request.allocations.items():
            for rc, amount in resources.items():
                inventory = inventories.get((providers[rp_uuid].id, class_ids[rc]))
                if inventory is None:
                    raise exc.InvalidInventory(f"Inventory for '{rc}' on resource provider '{rp_uuid}' invalid.")
                if (amount < inventory.min_unit or amount > inventory.max_unit
                        or amount % inventory.step_size):
                    raise exc.InvalidInventory(
                        f"Unable to create allocation for '{rc}' on resource provider '{rp_uuid}'. The requested "
                        f"amount would violate inventory constraints.")
    for (rp_id, rc_id), amount in needed.items():
        inventory = inventories[(rp_id, rc_id)]
        capacity = (inventory.total - inventory.reserved) * inventory.allocation_ratio
        if inventory.used + amount > capacity and not ((rp_id, rc_id) in freed and amount <= freed[(rp_id, rc_id)]):
            raise exc.InvalidInventory(f"Unable to create allocation for '{names[rc_id]}' on resource provider "
                                       f"'{by_id[rp_id].uuid}'. The requested amount would exceed the capacity.")


# Read before every swap of a move's claims: one statement, built once.
_CONSUMER_ALLOCATIONS = (
    sa.select(_ALLOCATIONS.c.resource_class_id, _ALLOCATIONS.c.used, _ALLOCATIONS.c.created_at,
              _PROVIDERS.c.uuid, _PROVIDERS.c.generation)
    .join(_PROVIDERS, _PROVIDERS.c.id == _ALLOCATIONS.c.resource_provider_id)
    .where(_ALLOCATIONS.c.consumer_id == sa.bindparam("uuid")).order_by(_ALLOCATIONS.c.id))


def for_consumer(session: Session, uuid: str) -> tuple[sa.Row | None, dict, datetime | None, str | None]:
    """(consumer as ``consumers.get`` reads it, {provider uuid: {generation, resources}}, last modified,
    consumer type name)."""
    rows = session.execute(_CONSUMER_ALLOCATIONS, {"uuid": uuid}).all()
    if not rows:
        return None, {}, None, None
    names = rcs.names_by_id(session, {row.resource_class_id for row in rows})
    result: dict[str, dict] = {}
    for row in rows:
        entry = result.setdefault(row.uuid, {"generation": row.generation, "resources": {}})
        entry["resources"][names[row.resource_class_id]] = row.used
    consumer = consumers_mod.get(session, uuid)
    type_name = consumer.type_name if consumer is not None else None
    return consumer, result, max(row.created_at for row in rows), type_name


def for_provider(session: Session, uuid: str) -> tuple[rps.Provider, dict, datetime | None]:
    """(provider, {consumer uuid: {resources, consumer_generation}}, last modified)."""
    provider = rps.get(session, uuid)
    rows = session.execute(
        sa.select(Allocation.consumer_id, Allocation.resource_class_id, Allocation.used, Allocation.created_at,
                  Consumer.generation)
        .outerjoin(Consumer, Consumer.uuid == Allocation.consumer_id)
        .where(Allocation.resource_provider_id == provider.id)).all()
    result: dict[str, dict] = {}
    for row in rows:
        entry = result.setdefault(row.consumer_id, {"resources": {}, "consumer_generation": row.generation})
        entry["resources"][rcs.name_of(session, row.resource_class_id)] = row.used
    return provider, result, max((row.created_at for row in rows), default=None)


def delete_consumer(session: Session, uuid: str) -> None:
    """Drop a consumer's allocations; as upstream, no provider generation changes (nor can conflict)."""
    provider_ids = {rp_id for rp_id, _ in _delete_allocations(session, [uuid])}
    if not provider_ids:
        raise exc.NotFound(f"No allocations for consumer '{uuid}'")
    consumers_mod.delete(session, [uuid])
    session.execute(_USAGE_CHANGED, {"keys": list(provider_ids)})
