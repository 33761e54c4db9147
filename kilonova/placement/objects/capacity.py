"""An in-memory index of every provider's capacity, kept coherent with the database by generations.

The allocation candidate search reads providers, inventories, usages, traits and
aggregates from here instead of the database. Every write that changes any of
them bumps the provider's generation (inventories, allocations, traits,
aggregates, re-parenting, reshapes) -- or, where upstream leaves the generation
alone (allocations moved off a provider or deleted), its ``usage_serial`` -- so
the index is checked, on every search, against the database, which may be
shared by several placement processes:

1. One aggregate query over ``resource_providers`` (count, sums of ids,
   generations, usage serials, parents and roots, newest update): unchanged -- and no write
   made by this process since (a counter that every Placement write bumps) --
   means nothing of interest changed, and the index is used as is. Provider ids
   only grow on PostgreSQL and MariaDB, so a new provider always changes the
   sum of ids (or the count); generations only grow. SQLite may reuse the
   highest id after a delete, which the local write counter covers for the
   usual single-process SQLite deployment.
2. Otherwise ``(id, generation, usage serial, parent, root)`` of every provider is read and
   compared; only the providers that are new or whose row changed are re-read
   (inventories, usages, traits, aggregates), and deleted ones are dropped.

Generations are recorded before the data they describe is read, so a write
landing in between is seen as a change on the next search. Candidates are
advisory anyway: claims are checked in the database with generation
compare-and-swap.
"""
from __future__ import annotations

import functools
import gc
import threading
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import plain_rows, prepare
from kilonova.placement.objects.models import (Aggregate, Allocation, Inventory, ProviderAggregate, ProviderTrait,
                                               ResourceProvider)

EMPTY: frozenset = frozenset()


@dataclass(slots=True)
class Record:
    """One inventory: capacity = (total - reserved) * ratio; free = capacity - used."""
    total: int
    reserved: int
    min_unit: int
    max_unit: int
    step_size: int
    ratio: float
    used: int = 0

    @property
    def capacity(self) -> int:
        return int((self.total - self.reserved) * self.ratio)

    @property
    def free(self) -> float:
        return (self.total - self.reserved) * self.ratio - self.used

    def fits(self, amount: int) -> bool:
        return (self.min_unit <= amount <= self.max_unit and amount % self.step_size == 0
                and (self.total - self.reserved) * self.ratio - self.used >= amount)


@dataclass(slots=True)
class Provider:
    id: int
    uuid: str
    parent: int | None
    root: int
    generation: int
    serial: int = 0   # usage_serial
    inventory: dict[int, Record] = field(default_factory=dict)
    traits: frozenset = EMPTY
    aggregates: frozenset = EMPTY
    # rendered provider-summary JSON fragments, by rendering flavour (see candidates.summary_json)
    rendered: dict = field(default_factory=dict)


@dataclass
class View:
    """One coherent state of the index; never changed once published (searches keep using theirs)."""
    providers: dict[int, Provider] = field(default_factory=dict)
    by_class: dict[int, set[int]] = field(default_factory=dict)   # class id -> providers with inventory of it
    children: dict[int, set[int]] = field(default_factory=dict)
    tree_size: dict[int, int] = field(default_factory=dict)       # root id -> providers in the tree
    lone: set[int] = field(default_factory=set)                   # providers alone in their tree
    trait_ids: set[int] = field(default_factory=set)              # every trait some provider has
    sharing_trait: int | None = None
    _rows: dict = field(default_factory=dict)
    # derived data the candidate search computes once per view (anchors, tree members, fitting sets)
    memo: dict = field(default_factory=dict)

    def rows(self, rc: int) -> list[tuple]:
        """(provider id, free, min_unit, max_unit, step_size) of every inventory of ``rc`` (built once)."""
        found = self._rows.get(rc)
        if found is None:
            found = []
            for rp in self.by_class.get(rc, ()):
                record = self.providers[rp].inventory[rc]
                found.append((rp, record.free, record.min_unit, record.max_unit, record.step_size))
            self._rows[rc] = found
        return found

    def sharing(self) -> list[Provider]:
        if self.sharing_trait is None:
            return []
        return [p for p in self.providers.values() if self.sharing_trait in p.traits]

    def is_ancestor(self, top: int, rp_id: int | None) -> bool:
        while rp_id is not None:
            if rp_id == top:
                return True
            rp_id = self.providers[rp_id].parent
        return False


_writes: dict[str, int] = {}


@functools.lru_cache(maxsize=64)
def _key(url) -> str:
    return url.render_as_string(hide_password=False)


def written(engine) -> None:
    """A write transaction on ``engine``'s database ended (called after every Placement write)."""
    key = _key(engine.url)
    _writes[key] = _writes.get(key, 0) + 1


_rp = ResourceProvider
# What changes when any provider's inventory, usage, traits, aggregates or tree change (generations bump):
# compared on every candidate search, so built once.
_FINGERPRINT = sa.select(
    sa.func.count(), sa.func.sum(_rp.id), sa.func.sum(_rp.generation), sa.func.sum(_rp.usage_serial),
    sa.func.sum(sa.func.coalesce(_rp.parent_provider_id, 0)), sa.func.sum(_rp.root_provider_id),
    sa.func.max(_rp.updated_at), sa.func.max(_rp.created_at))
_PROVIDER_ROWS = sa.select(_rp.id, _rp.uuid, _rp.generation, _rp.usage_serial, _rp.parent_provider_id,
                           _rp.root_provider_id)
# What a provider's record is read from (all providers, or those whose id is in ``ids``): after every
# claim a search re-reads the providers it changed.
_INVENTORY_ROWS = sa.select(Inventory.resource_provider_id, Inventory.resource_class_id, Inventory.total,
                            Inventory.reserved, Inventory.min_unit, Inventory.max_unit, Inventory.step_size,
                            Inventory.allocation_ratio)
_USAGE_ROWS = (sa.select(Allocation.resource_provider_id, Allocation.resource_class_id, sa.func.sum(Allocation.used))
               .group_by(Allocation.resource_provider_id, Allocation.resource_class_id))
_TRAIT_ROWS = sa.select(ProviderTrait.resource_provider_id, ProviderTrait.trait_id)
_AGGREGATE_ROWS = (sa.select(ProviderAggregate.resource_provider_id, Aggregate.uuid)
                   .join(Aggregate, Aggregate.id == ProviderAggregate.aggregate_id))
_ALL = (_INVENTORY_ROWS, _USAGE_ROWS, _TRAIT_ROWS, _AGGREGATE_ROWS)
_OF = tuple(query.where(column.in_(sa.bindparam("ids", expanding=True))) for query, column in zip(_ALL, (
    Inventory.resource_provider_id, Allocation.resource_provider_id, ProviderTrait.resource_provider_id,
    ProviderAggregate.resource_provider_id)))
prepare(_FINGERPRINT, _PROVIDER_ROWS, *_ALL, *_OF)  # on SQLite's cursor (kilonova/common/prepared.py)


class Index:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fingerprint: tuple | None = None
        self.view = View()
        self.sigs: dict[int, tuple] = {}   # provider id -> its row as last read (see refresh)

    def refresh(self, session: Session, sharing_trait: int | None) -> View:
        local = _writes.get(_key(session.get_bind().engine.url), 0)
        fingerprint = (local,) + tuple(session.execute(_FINGERPRINT).one())
        with self.lock:
            old = self.view
            if fingerprint == self.fingerprint and sharing_trait == old.sharing_trait:
                return old
            rows = plain_rows(session.execute(_PROVIDER_ROWS))
            # (id, uuid, generation, usage serial, parent, root) as last read: a row read the same describes
            # the same provider (the usual case: a claim changed one of thousands)
            sigs = self.sigs
            differ = [row for row in rows if sigs.get(row[0]) != row]
            changed: list[int] = []
            if len(rows) == len(old.providers) and all(row[0] in old.providers for row in differ):
                providers = dict(old.providers)   # the same providers (and order): only the differing replaced
                for rp_id, uuid, generation, serial, parent, root in differ:
                    providers[rp_id] = Provider(rp_id, uuid, parent, root or rp_id, generation, serial)
                    changed.append(rp_id)
                new_sigs = None   # those of ``differ`` are set once the view is made
            else:
                providers = {}
                for rp_id, uuid, generation, serial, parent, root in rows:
                    known = old.providers.get(rp_id)
                    if known is not None and (known.generation, known.serial, known.parent, known.root,
                                              known.uuid) == (generation, serial, parent, root or rp_id, uuid):
                        providers[rp_id] = known
                    else:
                        providers[rp_id] = Provider(rp_id, uuid, parent, root or rp_id, generation, serial)
                        changed.append(rp_id)
                new_sigs = {row[0]: tuple(row) for row in rows}
            if changed:
                _load(session, providers, changed, everything=len(changed) == len(providers))
            # From here nothing fails: what was read is recorded with the view made of it.
            if new_sigs is None:
                sigs.update((row[0], tuple(row)) for row in differ)
            else:
                self.sigs = new_sigs
            if sharing_trait == old.sharing_trait and _usage_only(old.providers, providers, changed):
                self.view = _with_usage(old, providers, changed)
                self.fingerprint = fingerprint
                return self.view
            view = View(providers=providers, sharing_trait=sharing_trait)
            for provider in providers.values():
                for rc in provider.inventory:
                    view.by_class.setdefault(rc, set()).add(provider.id)
                if provider.parent is not None:
                    view.children.setdefault(provider.parent, set()).add(provider.id)
                view.tree_size[provider.root] = view.tree_size.get(provider.root, 0) + 1
                view.trait_ids |= provider.traits
            view.lone = {root for root, size in view.tree_size.items() if size == 1}
            self.view = view
            self.fingerprint = fingerprint
            if len(changed) > 1000:
                # A large index makes every full garbage collection walk it; the index holds no
                # reference cycles, so leave it (and whatever else lives now) out of later collections.
                gc.collect()
                gc.freeze()
            return view


# What a search derives from the trees, traits and aggregates alone (objects.candidates): kept by a view that
# differs from the last only in usage. The "able" sets (providers that can take an amount) are patched instead.
STRUCTURAL_MEMOS = ("anchors", "anchored", "root_of", "members", "sharing_ids", "uuids", "lone_ok")


def _usage_only(before: dict[int, Provider], now: dict[int, Provider], changed: list[int]) -> bool:
    """Whether ``now`` has the providers of ``before``, each in the same tree with the same traits, aggregates
    and classes of inventory: then only capacity and usage differ (a claim, a deleted allocation, a new total)."""
    if len(before) != len(now) or len(changed) > 64:
        return False
    for rp_id in changed:
        old, new = before.get(rp_id), now[rp_id]
        if old is None or old.uuid != new.uuid or old.parent != new.parent or old.root != new.root or \
                old.traits != new.traits or old.aggregates != new.aggregates or \
                old.inventory.keys() != new.inventory.keys():
            return False
    return True


def _with_usage(old: View, providers: dict[int, Provider], changed: list[int]) -> View:
    """``old`` with the changed providers' capacity and usage (see _usage_only): its structure and structural
    memos are shared (a view never changes once published), its rows and "able" sets patched."""
    view = View(providers=providers, by_class=old.by_class, children=old.children, tree_size=old.tree_size,
                lone=old.lone, trait_ids=old.trait_ids, sharing_trait=old.sharing_trait)
    view.memo = {key: old.memo[key] for key in STRUCTURAL_MEMOS if key in old.memo}
    ids = set(changed)
    positions = old.memo.get("positions")   # class id -> provider id -> index in rows(class): structural too
    if positions is None:
        positions = {}
    view.memo["positions"] = positions
    # (searches on other threads may be adding to the old view's lazily built parts: copied in one step)
    for rc, rows in tuple(old._rows.items()):
        where = positions.get(rc)
        if where is None:
            where = positions[rc] = {row[0]: index for index, row in enumerate(rows)}
        patched = rows.copy()
        for rp_id in ids:
            index = where.get(rp_id)
            if index is not None:
                record = providers[rp_id].inventory[rc]
                patched[index] = (rp_id, record.free, record.min_unit, record.max_unit, record.step_size)
        view._rows[rc] = patched
    able = old.memo.get("able")
    if able:   # (class id, amount) -> providers that can take it: the changed ones judged again
        patched_able = {}
        for (rc, amount), found in tuple(able.items()):
            rows, where = view._rows.get(rc), positions.get(rc)
            if rows is None or where is None:
                continue   # computed again when asked
            fits = {rp_id for rp_id, free, low, high, step in (rows[where[i]] for i in ids if i in where)
                    if free >= amount and low <= amount <= high and not amount % step}
            patched_able[(rc, amount)] = (found - ids) | fits
        view.memo["able"] = patched_able
    return view


def _load(session: Session, providers: dict[int, Provider], ids: list[int], everything: bool) -> None:
    """Read inventories, usages, traits and aggregates of ``ids`` into their (new) Provider objects."""
    chunks = [None] if everything else list(_chunks(ids, 2000))
    wanted = set(ids)
    for chunk in chunks:
        def rows(which: int, chunk=chunk):
            return session.execute(_ALL[which]) if chunk is None else session.execute(_OF[which], {"ids": chunk})

        for rp_id, rc_id, total, reserved, min_unit, max_unit, step, ratio in rows(0):
            if rp_id in wanted:
                providers[rp_id].inventory[rc_id] = Record(total, reserved, min_unit, max_unit, step, ratio)
        for rp_id, rc_id, amount in rows(1):
            if rp_id in wanted:
                record = providers[rp_id].inventory.get(rc_id)
                if record is not None:
                    record.used = int(amount or 0)
        trait_sets: dict[int, set[int]] = {}
        for rp_id, trait_id in rows(2):
            if rp_id in wanted:
                trait_sets.setdefault(rp_id, set()).add(trait_id)
        for rp_id, found in trait_sets.items():
            providers[rp_id].traits = frozenset(found)
        agg_sets: dict[int, set[str]] = {}
        for rp_id, agg in rows(3):
            if rp_id in wanted:
                agg_sets.setdefault(rp_id, set()).add(agg)
        for rp_id, found in agg_sets.items():
            providers[rp_id].aggregates = frozenset(found)


def key(session: Session) -> str:
    """Which database a session is on (caches are per database)."""
    return _key(session.get_bind().engine.url)


def _chunks(values: list[int], size: int):
    for start in range(0, len(values), size):
        yield values[start:start + size]


_indexes: dict[str, Index] = {}
_indexes_lock = threading.Lock()


def current(session: Session, sharing_trait: int | None) -> View:
    """The index for this session's database, brought up to date."""
    key = _key(session.get_bind().engine.url)
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:
            index = _indexes[key] = Index()
    return index.refresh(session, sharing_trait)
