"""GET /allocation_candidates: the search, in few SQL round-trips and plain Python.

1. One query reads, for the requested resource classes only, every inventory
   with its current usage; free space per (provider, class) is computed here.
2. One query reads the providers of every tree that has such an inventory.
3. One query each reads the requested traits and aggregates of those providers
   (only when the request names any).
4. Python combines, tree by tree, the providers able to satisfy each request
   group, then applies group_policy, same_subtree and root_required.
5. After ``limit``, the summaries of the providers kept are read in two queries.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.placement.objects import resource_classes as rcs
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects import traits as traits_mod
from kilonova.placement.objects.models import (Aggregate, Inventory, ProviderAggregate, ProviderTrait,
                                               ResourceProvider, Trait)


@dataclass
class RequestGroup:
    suffix: str = ""
    resources: dict[str, int] = field(default_factory=dict)
    required: list[set[str]] = field(default_factory=list)   # each set: one of them must be present
    forbidden: set[str] = field(default_factory=set)
    member_of: list[set[str]] = field(default_factory=list)
    forbidden_aggregates: set[str] = field(default_factory=set)
    in_tree: str | None = None


@dataclass
class SearchRequest:
    groups: list[RequestGroup]
    group_policy: str | None = None
    limit: int | None = None
    root_required: list[set[str]] = field(default_factory=list)
    root_forbidden: set[str] = field(default_factory=set)
    same_subtree: list[list[str]] = field(default_factory=list)
    nested: bool = True            # 1.29+: providers below a root take part
    all_summary_classes: bool = True  # 1.27+: summaries list every inventoried class
    max_candidates: int = 1000


@dataclass
class Candidate:
    allocations: dict[str, dict[str, int]]   # provider uuid -> class -> amount
    mappings: dict[str, list[str]]           # group suffix -> provider uuids


@dataclass
class SearchResult:
    candidates: list[Candidate]
    summaries: dict[str, dict]   # provider uuid -> {resources, traits, parent/root uuids}


@dataclass
class _Space:
    free: float
    min_unit: int
    max_unit: int
    step_size: int

    def fits(self, amount: int) -> bool:
        return (self.free >= amount and self.min_unit <= amount <= self.max_unit
                and amount % self.step_size == 0)


def search(session: Session, request: SearchRequest) -> SearchResult:
    class_ids = rcs.ids_by_name(session, {rc for g in request.groups for rc in g.resources})
    trait_ids = _trait_ids(session, request)
    space = _free_space(session, set(class_ids.values()))
    capable = {rp_id for rp_id, _ in space}
    if not capable:
        return SearchResult([], {})
    providers = _providers(session, capable, request.nested)
    traits = _traits(session, providers, set(trait_ids.values())) if trait_ids else {}
    aggregates = _aggregates(session, providers, request)
    finder = _Finder(request, class_ids, trait_ids, space, providers, traits, aggregates,
                     _tree_roots(session, request))
    candidates = finder.run()
    if request.limit is not None:
        candidates = candidates[: request.limit]
    return SearchResult([finder.render(c) for c in candidates],
                        _summaries(session, request, candidates, providers, class_ids))


def _trait_ids(session: Session, request: SearchRequest) -> dict[str, int]:
    names: set[str] = set(request.root_forbidden)
    for any_of in request.root_required:
        names |= any_of
    for group in request.groups:
        names |= group.forbidden
        for any_of in group.required:
            names |= any_of
    return traits_mod.require(session, names) if names else {}


def _free_space(session: Session, class_ids: set[int]) -> dict[tuple[int, int], _Space]:
    if not class_ids:
        return {}
    usage = rps.usage_subquery(class_ids)
    query = (sa.select(Inventory.resource_provider_id, Inventory.resource_class_id, Inventory.total,
                       Inventory.reserved, Inventory.allocation_ratio, Inventory.min_unit, Inventory.max_unit,
                       Inventory.step_size, usage.c.used)
             .outerjoin(usage, sa.and_(usage.c.rp_id == Inventory.resource_provider_id,
                                       usage.c.rc_id == Inventory.resource_class_id))
             .where(Inventory.resource_class_id.in_(list(class_ids))))
    result = {}
    for rp_id, rc_id, total, reserved, ratio, min_unit, max_unit, step, used in session.connection().execute(query):
        result[(rp_id, rc_id)] = _Space((total - reserved) * ratio - (used or 0), min_unit, max_unit, step)
    return result


def _providers(session: Session, capable: set[int], nested: bool) -> dict[int, tuple]:
    """id -> (uuid, parent id, root id) for every provider of the trees holding a capable provider."""
    rp = ResourceProvider
    roots = sa.select(rp.root_provider_id).where(rp.id.in_(list(capable)))
    query = sa.select(rp.id, rp.uuid, rp.parent_provider_id, rp.root_provider_id).where(rp.root_provider_id.in_(roots))
    if not nested:
        query = query.where(rp.parent_provider_id.is_(None))
    return {row[0]: (row[1], row[2], row[3]) for row in session.connection().execute(query.order_by(rp.id))}


def _traits(session: Session, providers: dict[int, tuple], trait_ids: set[int]) -> dict[int, set[int]]:
    result: dict[int, set[int]] = {}
    query = (sa.select(ProviderTrait.resource_provider_id, ProviderTrait.trait_id)
             .where(ProviderTrait.trait_id.in_(list(trait_ids))))
    for rp_id, trait_id in session.connection().execute(query):
        if rp_id in providers:
            result.setdefault(rp_id, set()).add(trait_id)
    return result


def _aggregates(session: Session, providers: dict[int, tuple], request: SearchRequest) -> dict[int, set[str]]:
    wanted: set[str] = set()
    for group in request.groups:
        wanted |= group.forbidden_aggregates
        for any_of in group.member_of:
            wanted |= any_of
    if not wanted:
        return {}
    result: dict[int, set[str]] = {}
    query = (sa.select(ProviderAggregate.resource_provider_id, Aggregate.uuid)
             .join(Aggregate, Aggregate.id == ProviderAggregate.aggregate_id)
             .where(Aggregate.uuid.in_(list(wanted))))
    for rp_id, agg in session.connection().execute(query):
        if rp_id in providers:
            result.setdefault(rp_id, set()).add(agg)
    return result


def _tree_roots(session: Session, request: SearchRequest) -> dict[str, int | None]:
    """in_tree uuids -> the root id of their tree (None when there is no such provider)."""
    uuids = {g.in_tree for g in request.groups if g.in_tree}
    found = {uuid: None for uuid in uuids}
    if uuids:
        query = sa.select(ResourceProvider.uuid, ResourceProvider.root_provider_id).where(
            ResourceProvider.uuid.in_(list(uuids)))
        found.update(dict(session.connection().execute(query).all()))
    return found


class _Finder:
    """Combines, per tree, the providers that satisfy each group (ids internally)."""

    def __init__(self, request, class_ids, trait_ids, space, providers, traits, aggregates, tree_roots):
        self.request = request
        self.class_ids = class_ids
        self.trait_ids = trait_ids
        self.space = space
        self.providers = providers
        self.traits = traits
        self.aggregates = aggregates
        self.tree_roots = tree_roots
        self.trees: dict[int, list[int]] = {}
        for rp_id, (_, _, root) in providers.items():
            self.trees.setdefault(root, []).append(rp_id)
        self.groups = [self._prepare(g) for g in request.groups]
        self.root_required = [{trait_ids[t] for t in s} for s in request.root_required]
        self.root_forbidden = {trait_ids[t] for t in request.root_forbidden}

    def _prepare(self, group: RequestGroup) -> dict:
        return {
            "suffix": group.suffix,
            "resources": [(self.class_ids.get(rc), amount) for rc, amount in sorted(group.resources.items())],
            "names": sorted(group.resources),
            "required": [{self.trait_ids[t] for t in s} for s in group.required],
            "forbidden": {self.trait_ids[t] for t in group.forbidden},
            "member_of": group.member_of,
            "forbidden_aggregates": group.forbidden_aggregates,
            "in_tree": (self.tree_roots.get(group.in_tree) or -1) if group.in_tree else None,
        }

    def run(self) -> list[list[tuple]]:
        """Each candidate: a list of (group index, {class id: provider id}) pairs."""
        results: list[list[tuple]] = []
        for root, members in self.trees.items():
            per_group = []
            for index, group in enumerate(self.groups):
                options = self._group_options(group, root, members)
                if not options:
                    break
                per_group.append([(index, option) for option in options])
            else:
                for combination in itertools.product(*per_group):
                    if self._acceptable(root, combination):
                        results.append(list(combination))
                        if len(results) >= self.request.max_candidates:
                            return results
        return results

    def _group_options(self, group: dict, root: int, members: list[int]) -> list[dict]:
        if group["in_tree"] is not None and group["in_tree"] != root:
            return []
        usable = [rp for rp in members if self._provider_ok(group, rp)]
        if not usable:
            return []
        resources = group["resources"]
        if not resources:
            return [{None: rp} for rp in usable]
        if group["suffix"] or not self.request.nested:
            return [{rc: rp for rc, _ in resources} for rp in usable
                    if all(self._fits(rp, rc, amount) for rc, amount in resources)]
        choices = [[rp for rp in usable if self._fits(rp, rc, amount)] for rc, amount in resources]
        options = []
        for picked in itertools.product(*choices):
            option = {rc: rp for (rc, _), rp in zip(resources, picked)}
            if self._traits_ok(group, set(picked)):
                options.append(option)
        return options

    def _fits(self, rp: int, rc: int | None, amount: int) -> bool:
        space = self.space.get((rp, rc))
        return space is not None and space.fits(amount)

    def _provider_ok(self, group: dict, rp: int) -> bool:
        root = self.providers[rp][2]
        aggs = self.aggregates.get(rp, set()) | self.aggregates.get(root, set())
        for any_of in group["member_of"]:
            if not aggs & any_of:
                return False
        if group["forbidden_aggregates"] & aggs:
            return False
        if group["suffix"] or not group["resources"] or not self.request.nested:
            return self._traits_ok(group, {rp})
        return not (self.traits.get(rp, set()) & group["forbidden"])

    def _traits_ok(self, group: dict, rps_used: set[int]) -> bool:
        have: set[int] = set()
        for rp in rps_used:
            have |= self.traits.get(rp, set())
        if have & group["forbidden"]:
            return False
        return all(have & any_of for any_of in group["required"])

    def _acceptable(self, root: int, combination) -> bool:
        if self.root_required or self.root_forbidden:
            have = self.traits.get(root, set())
            if have & self.root_forbidden or not all(have & s for s in self.root_required):
                return False
        used: dict[tuple[int, int], int] = {}
        for index, option in combination:
            for rc, amount in self.groups[index]["resources"]:
                key = (option[rc], rc)
                used[key] = used.get(key, 0) + amount
        if len(combination) > 1 and any(self.space[key].free < amount for key, amount in used.items()):
            return False
        if self.request.group_policy == "isolate" and not self._isolated(combination):
            return False
        return all(self._same_subtree(combination, suffixes) for suffixes in self.request.same_subtree)

    def _isolated(self, combination) -> bool:
        seen: set[int] = set()
        for index, option in combination:
            if not self.groups[index]["suffix"]:
                continue
            providers = set(option.values())
            if providers & seen:
                return False
            seen |= providers
        return True

    def _same_subtree(self, combination, suffixes: list[str]) -> bool:
        chosen: set[int] = set()
        for index, option in combination:
            if self.groups[index]["suffix"] in suffixes:
                chosen |= set(option.values())
        return any(all(self._is_ancestor(top, rp) for rp in chosen) for top in chosen)

    def _is_ancestor(self, top: int, rp: int | None) -> bool:
        while rp is not None:
            if rp == top:
                return True
            rp = self.providers[rp][1]
        return False

    def render(self, combination) -> Candidate:
        allocations: dict[str, dict[str, int]] = {}
        mappings: dict[str, list[str]] = {}
        for index, option in combination:
            group = self.groups[index]
            uuids = []
            for (rc, amount), name in zip(group["resources"], group["names"]):
                uuid = self.providers[option[rc]][0]
                resources = allocations.setdefault(uuid, {})
                resources[name] = resources.get(name, 0) + amount
                if uuid not in uuids:
                    uuids.append(uuid)
            if not group["resources"]:
                uuids.append(self.providers[option[None]][0])
            mappings.setdefault(group["suffix"], [])
            mappings[group["suffix"]] += [u for u in uuids if u not in mappings[group["suffix"]]]
        return Candidate(allocations, mappings)


def _summaries(session: Session, request: SearchRequest, candidates, providers: dict[int, tuple],
               class_ids: dict[str, int]) -> dict[str, dict]:
    wanted: set[int] = set()
    for combination in candidates:
        for _, option in combination:
            wanted |= set(option.values())
    if request.nested:
        roots = {providers[rp][2] for rp in wanted}
        wanted = {rp for rp, row in providers.items() if row[2] in roots}
    if not wanted:
        return {}
    usage = rps.usage_subquery(None if request.all_summary_classes else set(class_ids.values()))
    query = (sa.select(Inventory.resource_provider_id, Inventory.resource_class_id, Inventory.total,
                       Inventory.reserved, Inventory.allocation_ratio, usage.c.used)
             .outerjoin(usage, sa.and_(usage.c.rp_id == Inventory.resource_provider_id,
                                       usage.c.rc_id == Inventory.resource_class_id))
             .where(Inventory.resource_provider_id.in_(list(wanted))))
    if not request.all_summary_classes:
        query = query.where(Inventory.resource_class_id.in_(list(class_ids.values())))
    names = rcs.names_by_id(session)
    result: dict[str, dict] = {}
    for rp in sorted(wanted):
        uuid, parent, root = providers[rp]
        result[uuid] = {"resources": {}, "traits": [],
                        "parent_provider_uuid": providers[parent][0] if parent in providers else None,
                        "root_provider_uuid": providers[root][0]}
    for rp_id, rc_id, total, reserved, ratio, used in session.connection().execute(query):
        name = names.get(rc_id) or rcs.name_of(session, rc_id)
        result[providers[rp_id][0]]["resources"][name] = {"capacity": int((total - reserved) * ratio),
                                                          "used": int(used or 0)}
    trait_query = (sa.select(ProviderTrait.resource_provider_id, Trait.name)
                   .join(Trait, Trait.id == ProviderTrait.trait_id)
                   .where(ProviderTrait.resource_provider_id.in_(list(wanted))).order_by(Trait.name))
    for rp_id, name in session.connection().execute(trait_query):
        result[providers[rp_id][0]]["traits"].append(name)
    return result
