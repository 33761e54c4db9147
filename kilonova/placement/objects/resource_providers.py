"""The resource_providers table: providers, their trees, generations and the list filters."""
from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from kilonova.common.prepared import prepared
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects.models import (Aggregate, Allocation, Inventory, ProviderAggregate, ProviderTrait,
                                               ResourceProvider, now)

UNSET = object()


@dataclass(frozen=True)
class Provider:
    id: int
    uuid: str
    name: str
    generation: int
    parent_id: int | None
    root_id: int
    parent_uuid: str | None
    root_uuid: str
    created_at: datetime
    updated_at: datetime | None


@dataclass
class ListFilters:
    name: str | None = None
    uuid: str | None = None
    in_tree: str | None = None
    member_of: list[set[str]] | None = None        # each set: the provider is in one of them
    forbidden_aggregates: set[str] | None = None
    resources: dict[int, int] | None = None         # class id -> amount that must fit
    required_traits: list[set[int]] | None = None   # each set: the provider has one of them
    forbidden_traits: set[int] | None = None


_parent = aliased(ResourceProvider)
_root = aliased(ResourceProvider)


def _select():
    rp = ResourceProvider
    return (sa.select(rp.id, rp.uuid, rp.name, rp.generation, rp.parent_provider_id, rp.root_provider_id,
                      _parent.uuid, _root.uuid, rp.created_at, rp.updated_at)
            .outerjoin(_parent, _parent.id == rp.parent_provider_id)
            .outerjoin(_root, _root.id == rp.root_provider_id))


def _provider(row) -> Provider:
    return Provider(*row)


# Every write to a provider starts by reading it: table-level statements built once (the ORM select
# above cost more than the rest of a write), run on SQLite's cursor (kilonova/common/prepared.py).
_RP = ResourceProvider.__table__
_PARENT = _RP.alias("parent_rp")
_ROOT = _RP.alias("root_rp")
_ROW = (sa.select(_RP.c.id, _RP.c.uuid, _RP.c.name, _RP.c.generation, _RP.c.parent_provider_id,
                  _RP.c.root_provider_id, _PARENT.c.uuid, _ROOT.c.uuid, _RP.c.created_at, _RP.c.updated_at)
        .select_from(_RP.outerjoin(_PARENT, _PARENT.c.id == _RP.c.parent_provider_id)
                     .outerjoin(_ROOT, _ROOT.c.id == _RP.c.root_provider_id)))
_BY_UUID = prepared(_ROW.where(_RP.c.uuid == sa.bindparam("uuid")))
_BY_UUIDS = prepared(_ROW.where(_RP.c.uuid.in_(sa.bindparam("uuids", expanding=True))))
_BY_IDS = prepared(_ROW.where(_RP.c.id.in_(sa.bindparam("ids", expanding=True))))
# Is either key of a new provider taken? (which one is asked only when one is)
_TAKEN = prepared(sa.select(_RP.c.id).where(sa.or_(_RP.c.uuid == sa.bindparam("uuid"),
                                                   _RP.c.name == sa.bindparam("name"))).limit(1))
_INSERT = prepared(_RP.insert())
_OWN_ROOT = prepared(_RP.update().where(_RP.c.id == sa.bindparam("rp_id")).values(root_provider_id=_RP.c.id))
_BUMP = prepared(_RP.update().where(_RP.c.id == sa.bindparam("rp_id"), _RP.c.generation == sa.bindparam("seen"))
                 .values(generation=sa.bindparam("next"), updated_at=sa.bindparam("now")))


def get(session: Session, uuid: str) -> Provider:
    row = session.execute(_BY_UUID, {"uuid": uuid}).first()
    if row is None:
        raise exc.ProviderNotFound(f"No resource provider with uuid {uuid} found")
    return _provider(row)


def get_many(session: Session, uuids) -> dict[str, Provider]:
    rows = session.execute(_BY_UUIDS, {"uuids": list(uuids)})
    return {row[1]: _provider(row) for row in rows}


def by_ids(session: Session, ids) -> dict[int, Provider]:
    rows = session.execute(_BY_IDS, {"ids": list(ids)})
    return {row[0]: _provider(row) for row in rows}


def _check_unique(session: Session, name: str | None, uuid: str | None, exclude_id: int | None = None) -> None:
    for column, value in (("uuid", uuid), ("name", name)):
        if value is None:
            continue
        query = sa.select(ResourceProvider.id).where(getattr(ResourceProvider, column) == value)
        if exclude_id is not None:
            query = query.where(ResourceProvider.id != exclude_id)
        if session.scalar(query) is not None:
            raise exc.Duplicate(f"Conflicting resource provider {column}: {value} already exists.")


def create(session: Session, name: str, uuid: str | None = None, parent_uuid: str | None = None) -> Provider:
    uuid = uuid or str(uuidlib.uuid4())
    if not name:   # upstream's object refuses an empty name (the schema lets it through)
        raise exc.Invalid("name is required")
    if parent_uuid is not None and parent_uuid == uuid:
        raise exc.Invalid("parent provider UUID cannot be same as UUID. Please set parent provider UUID to None "
                          "if there is no parent.")
    if session.execute(_TAKEN, {"uuid": uuid, "name": name}).first() is not None:
        _check_unique(session, name, uuid)   # which key is taken, in upstream's order
    parent = None
    if parent_uuid is not None:
        try:
            parent = get(session, parent_uuid)
        except exc.ProviderNotFound:
            raise exc.Invalid("parent provider UUID does not exist.") from None
    created = now()
    # every column given (no ORM unit of work): the new row is known without reading it back
    result = session.execute(_INSERT, {
        "uuid": uuid, "name": name, "generation": 0, "usage_serial": 0, "created_at": created, "updated_at": None,
        "parent_provider_id": parent.id if parent else None, "root_provider_id": parent.root_id if parent else None})
    rp_id = result.inserted_primary_key[0]
    if parent is None:
        session.execute(_OWN_ROOT, {"rp_id": rp_id})
        return Provider(rp_id, uuid, name, 0, None, rp_id, None, uuid, created, None)
    return Provider(rp_id, uuid, name, 0, parent.id, parent.root_id, parent.uuid, parent.root_uuid, created, None)


def update(session: Session, uuid: str, name: str, parent_uuid=UNSET, *,
           allow_reparent: bool = False) -> tuple[Provider, datetime | None]:
    """Rename and (from 1.14) adopt, or (from 1.37) re-parent or un-parent a provider; the provider, and
    when it was last updated before (upstream's Last-Modified for this write)."""
    provider = get(session, uuid)
    _check_unique(session, name, None, exclude_id=provider.id)
    values = {"name": name, "updated_at": now()}
    if parent_uuid is not UNSET and parent_uuid != provider.parent_uuid:
        values.update(_new_place(session, provider, parent_uuid, allow_reparent))
    session.execute(sa.update(ResourceProvider).where(ResourceProvider.id == provider.id).values(**values))
    return get(session, uuid), provider.updated_at


def _new_place(session: Session, provider: Provider, parent_uuid: str | None, allow_reparent: bool) -> dict:
    parent = None
    if parent_uuid is not None:   # looked up first; upstream's text names a create here
        try:
            parent = get(session, parent_uuid)
        except exc.ProviderNotFound:
            raise exc.Invalid("parent provider UUID does not exist.", action="create") from None
    if provider.parent_uuid is not None and not allow_reparent:
        what = "un-parenting" if parent_uuid is None else "re-parenting"
        raise exc.Invalid(f"{what} a provider is not currently allowed.")
    if parent_uuid is None:
        _move_subtree(session, provider, provider.id)
        return {"parent_provider_id": None, "root_provider_id": provider.id}
    if parent.id == provider.id or parent.id in descendants(session, provider.id):
        raise exc.Invalid("creating loop in the provider tree is not allowed.")
    _move_subtree(session, provider, parent.root_id)
    return {"parent_provider_id": parent.id, "root_provider_id": parent.root_id}


def descendants(session: Session, provider_id: int) -> set[int]:
    found: set[int] = set()
    frontier = {provider_id}
    while frontier:
        children = set(session.scalars(sa.select(ResourceProvider.id)
                                       .where(ResourceProvider.parent_provider_id.in_(frontier))))
        frontier = children - found
        found |= children
    return found


def _move_subtree(session: Session, provider: Provider, root_id: int) -> None:
    below = descendants(session, provider.id)
    if below:
        session.execute(sa.update(ResourceProvider).where(ResourceProvider.id.in_(below))
                        .values(root_provider_id=root_id))


def delete(session: Session, uuid: str) -> None:
    provider = get(session, uuid)
    if session.scalar(sa.select(ResourceProvider.id).where(ResourceProvider.parent_provider_id == provider.id)
                      .limit(1)) is not None:
        raise exc.CannotDeleteParent(f"Unable to delete parent resource provider {uuid}: "
                                     f"It has child resource providers.")
    if session.scalar(sa.select(Allocation.id).where(Allocation.resource_provider_id == provider.id)
                      .limit(1)) is not None:
        raise exc.InUse(f"Unable to delete resource provider {uuid}: Resource provider has allocations.")
    for table in (Inventory, ProviderTrait, ProviderAggregate):
        session.execute(sa.delete(table).where(table.resource_provider_id == provider.id))
    session.execute(sa.delete(ResourceProvider).where(ResourceProvider.id == provider.id))


def bump_generation(session: Session, provider: Provider) -> Provider:
    """Compare-and-swap the generation: ``ConcurrentUpdate`` when someone else changed it first."""
    result = session.execute(_BUMP, {"rp_id": provider.id, "seen": provider.generation,
                                     "next": provider.generation + 1, "now": now()})
    if result.rowcount != 1:
        raise exc.ProviderConcurrentUpdate(f"resource provider generation conflict for provider {provider.uuid}")
    return replace(provider, generation=provider.generation + 1)


def usage_subquery(class_ids=None):
    """(resource_provider_id, resource_class_id, used) summed over allocations."""
    query = sa.select(Allocation.resource_provider_id.label("rp_id"), Allocation.resource_class_id.label("rc_id"),
                      sa.func.sum(Allocation.used).label("used"))
    if class_ids is not None:
        query = query.where(Allocation.resource_class_id.in_(list(class_ids)))
    return query.group_by(Allocation.resource_provider_id, Allocation.resource_class_id).subquery()


def fits_clause(rc_id: int, amount: int):
    """Providers (ids) whose inventory of ``rc_id`` can take ``amount`` more."""
    usage = usage_subquery([rc_id])
    free = ((Inventory.total - Inventory.reserved) * Inventory.allocation_ratio
            - sa.func.coalesce(usage.c.used, 0))
    return (sa.select(Inventory.resource_provider_id)
            .outerjoin(usage, sa.and_(usage.c.rp_id == Inventory.resource_provider_id))
            .where(Inventory.resource_class_id == rc_id, free >= amount, Inventory.min_unit <= amount,
                   Inventory.max_unit >= amount, (amount % Inventory.step_size) == 0))


def list_providers(session: Session, filters: ListFilters) -> list[Provider]:
    rp = ResourceProvider
    query = _select()
    if filters.name is not None:
        query = query.where(rp.name == filters.name)
    if filters.uuid is not None:
        query = query.where(rp.uuid == filters.uuid)
    if filters.in_tree is not None:
        root = sa.select(ResourceProvider.root_provider_id).where(ResourceProvider.uuid == filters.in_tree)
        query = query.where(rp.root_provider_id == root.scalar_subquery())
    for any_of in filters.member_of or []:
        query = query.where(rp.id.in_(_in_aggregates(any_of)))
    if filters.forbidden_aggregates:
        query = query.where(rp.id.not_in(_in_aggregates(filters.forbidden_aggregates)))
    for rc_id, amount in (filters.resources or {}).items():
        query = query.where(rp.id.in_(fits_clause(rc_id, amount)))
    for any_of in filters.required_traits or []:
        query = query.where(rp.id.in_(sa.select(ProviderTrait.resource_provider_id)
                                      .where(ProviderTrait.trait_id.in_(list(any_of)))))
    if filters.forbidden_traits:
        query = query.where(rp.id.not_in(sa.select(ProviderTrait.resource_provider_id)
                                         .where(ProviderTrait.trait_id.in_(list(filters.forbidden_traits)))))
    return [_provider(row) for row in session.execute(query.order_by(rp.id))]


def _in_aggregates(uuids: set[str]):
    return (sa.select(ProviderAggregate.resource_provider_id)
            .join(Aggregate, Aggregate.id == ProviderAggregate.aggregate_id)
            .where(Aggregate.uuid.in_(list(uuids))))
