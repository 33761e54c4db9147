"""GET /allocation_candidates: the search, over the in-memory capacity index (objects.capacity).

1. The index is checked against the database (one aggregate query when nothing
   changed) and gives every provider's inventories with usage, traits,
   aggregates and place in its tree.
2. Only trees where every requested (class, amount) fits some provider of the
   tree or an anchored sharing provider are searched. Trees are visited in root
   id order. A lone provider with no anchored sharing provider holding a
   requested class, asked for by a single unsuffixed group (the scheduler's
   everyday query), is decided with set operations (fast path). Every other
   tree -- nested providers, sharing providers (MISC_SHARES_VIA_AGGREGATE,
   anchored to each tree one of whose providers is in one of their
   aggregates), several request groups -- goes through the general search,
   which combines the providers able to satisfy each group, then applies
   group_policy, same_subtree and root_required.
3. As upstream: ``[placement] allocation_candidates_generation_strategy``
   depth-first (default) takes every candidate of a tree before the next tree,
   breadth-first one candidate of each tree per round; the search stops at
   ``limit`` or ``[placement] max_allocation_candidates`` (-1, the default: no
   cap), whichever is lower. Candidates are deduplicated (a sharing provider
   can be reached from several trees).
4. Kilonova's own guard, ``[placement] max_candidate_combinations``: the search
   also stops (with a warning in the log) once it has looked at that many
   combinations of providers, so that a wide tree asked for by many groups
   cannot hold a worker for minutes.
5. Provider summaries are JSON fragments cached per provider and generation.

One known difference from upstream 16.0.0: when the unsuffixed group is served by
sharing providers alone and other groups are requested too, upstream pairs that
part with only one of the trees the sharing providers are anchored to (equal
allocation requests of different trees collapse in a set, the first tree met
wins, in an order that follows Python's set layout); here it is paired with every
anchored tree.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import math
import random
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.placement.objects import capacity
from kilonova.placement.objects import resource_classes as rcs
from kilonova.placement.objects import traits as traits_mod
from kilonova.placement.objects.models import Trait

SHARING_TRAIT = "MISC_SHARES_VIA_AGGREGATE"
LOG = logging.getLogger(__name__)


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
    # 1.29+; below, as upstream, a candidate using two providers of one tree is left out (a sharing
    # provider is in a tree of its own) and summaries list only the providers candidates use
    nested: bool = True
    all_summary_classes: bool = True  # 1.27+: summaries list every inventoried class
    max_candidates: int = -1       # [placement] max_allocation_candidates (-1: no cap)
    strategy: str = "depth-first"  # [placement] allocation_candidates_generation_strategy
    max_combinations: int = -1     # [placement] max_candidate_combinations (-1: no guard)
    randomize: bool = False        # [placement] randomize_allocation_candidates


@dataclass
class Candidate:
    allocations: dict[str, dict[str, int]]   # provider uuid -> class -> amount
    mappings: dict[str, list[str]]           # group suffix -> provider uuids


@dataclass
class SearchResult:
    """``candidates``: a Candidate; or, when the request is one unsuffixed group (``single_resources``),
    the uuid of the provider that takes it all, or a tuple of the ids of the providers that take each of
    its classes (in class name order; ``uuids`` names them). ``summaries``: providers to summarize, in order."""
    candidates: list
    summaries: list[capacity.Provider]
    view: capacity.View | None = None
    uuids: dict[int, str] = field(default_factory=dict)   # provider id -> uuid
    single_resources: dict[str, int] = field(default_factory=dict)
    class_names: dict[int, str] = field(default_factory=dict)
    trait_names: dict[int, str] = field(default_factory=dict)
    class_ids: dict[str, int] = field(default_factory=dict)


def search(session: Session, request: SearchRequest) -> SearchResult:
    class_ids = rcs.ids_by_name(session, {rc for g in request.groups for rc in g.resources})
    trait_ids = _trait_ids(session, request)
    sharing_trait = traits_mod.ids_by_name(session, [SHARING_TRAIT]).get(SHARING_TRAIT)
    view = capacity.current(session, sharing_trait)
    finder = _Finder(request, class_ids, trait_ids, view)
    found = finder.run()
    if finder.exhausted:
        LOG.warning("allocation candidate search stopped after %d combinations of providers "
                    "([placement] max_candidate_combinations); %d candidates returned",
                    finder.examined, len(found))
    providers = view.providers
    lone = view.lone
    if finder.only_ids:   # each candidate: one provider taking the whole request
        used = set(found)
        candidates = [providers[rp].uuid for rp in found]
    else:
        used = set()
        candidates = []
        splits = []   # their providers are added to ``used`` at once
        for item in found:
            if type(item) is int:
                used.add(item)
                candidates.append(providers[item].uuid)
            elif type(item) is tuple:   # kept as ids: the renderer names them (one pass over thousands)
                candidates.append(item)
                splits.append(item)
            else:
                used.update(rp for _, option in item for rp in option.values())
                candidates.append(finder.render(item))
        used.update(itertools.chain.from_iterable(splits))
    # summaries: the providers used and, from 1.29, every provider of their trees; in id order
    nested = used - lone
    if nested and request.nested:
        used = used & lone
        for root in {providers[rp].root for rp in nested}:
            used.update(finder.tree_members(root))
    summaries = [providers[rp] for rp in sorted(used)]
    single = request.groups[0].resources if len(request.groups) == 1 else {}
    uuids = view.memo.get("uuids")
    if uuids is None:
        uuids = view.memo["uuids"] = {rp: provider.uuid for rp, provider in providers.items()}
    return SearchResult(candidates, summaries, view, uuids, single,
                        rcs.names_by_id(session, view.by_class.keys()), _trait_names(session, view), class_ids)


_trait_name_cache: dict[str, dict[int, str]] = {}


def _trait_names(session: Session, view: capacity.View) -> dict[int, str]:
    cache = _trait_name_cache.setdefault(capacity.key(session), {})
    if not view.trait_ids <= cache.keys():
        cache.update(session.connection().execute(sa.select(Trait.id, Trait.name)).all())
    return cache


def _trait_ids(session: Session, request: SearchRequest) -> dict[str, int]:
    names: set[str] = set(request.root_forbidden)
    for any_of in request.root_required:
        names |= any_of
    for group in request.groups:
        names |= group.forbidden
        for any_of in group.required:
            names |= any_of
    return traits_mod.require(session, names) if names else {}


class _Finder:
    """Combines, per tree, the providers that satisfy each group (ids internally)."""

    def __init__(self, request: SearchRequest, class_ids, trait_ids, view: capacity.View):
        self.request = request
        self.class_ids = class_ids
        self.trait_ids = trait_ids
        self.view = view
        self.providers = view.providers
        self.groups = [self._prepare(g) for g in request.groups]
        self.root_required = [{trait_ids[t] for t in s} for s in request.root_required]
        self.root_forbidden = {trait_ids[t] for t in request.root_forbidden}
        self.only_ids = True    # every candidate found so far is a provider id (see run)
        self.examined = 0       # combinations of providers looked at (see _spend)
        self.exhausted = False  # the search stopped at [placement] max_candidate_combinations
        self._able: dict[int, set[int]] = {}     # fast path: class id -> providers that fit the amount
        self._shared_fast = False
        # a candidate of the only (unsuffixed) group taken wholly by one provider is kept as that
        # provider's id: rendered through one template, like the fast path's
        self._compact = len(self.groups) == 1 and not self.groups[0]["suffix"] and bool(self.groups[0]["resources"])
        memo = view.memo
        if "anchors" not in memo:   # computed once per view; concurrent searches may both compute it
            memo["anchors"] = self._anchors()
        self.anchors: dict[int, list[int]] = memo["anchors"]

    def _prepare(self, group: RequestGroup) -> dict:
        in_tree = None
        if group.in_tree:
            found = next((p for p in self.providers.values() if p.uuid == group.in_tree), None)
            in_tree = found.root if found else -1
        return {
            "suffix": group.suffix,
            "resources": [(self.class_ids.get(rc), amount) for rc, amount in sorted(group.resources.items())],
            "names": sorted(group.resources),
            "required": [{self.trait_ids[t] for t in s} for s in group.required],
            "forbidden": {self.trait_ids[t] for t in group.forbidden},
            "member_of": group.member_of,
            "forbidden_aggregates": group.forbidden_aggregates,
            "in_tree": in_tree,
        }

    # ------------------------------------------------------------ trees

    def tree_members(self, root: int) -> list[int]:
        if self.view.tree_size.get(root, 1) == 1:
            return [root]
        members = self.view.memo.get("members")
        if members is None:
            members = {}
            for rp_id, provider in self.providers.items():
                if self.view.tree_size[provider.root] > 1:
                    members.setdefault(provider.root, []).append(rp_id)
            self.view.memo["members"] = members
        return members[root]

    def able(self, rc: int | None, amount: int) -> frozenset[int]:
        """Providers with an inventory of ``rc`` that can take ``amount`` (memoized on the view)."""
        cache = self.view.memo.setdefault("able", {})
        found = cache.get((rc, amount))
        if found is None:
            found = frozenset(rp for rp, free, low, high, step in self.view.rows(rc)
                              if free >= amount and low <= amount <= high and not amount % step)
            if len(cache) >= 64:   # a view lives until the next write; bound what it keeps meanwhile
                cache.clear()
            cache[(rc, amount)] = found
        return found

    def _anchors(self) -> dict[int, list[int]]:
        """root id -> sharing providers (outside that tree) sharing an aggregate with one of its providers."""
        sharing = self.view.sharing()
        if not sharing:
            return {}
        by_aggregate: dict[str, list[int]] = {}
        for share in sharing:
            for agg in share.aggregates:
                by_aggregate.setdefault(agg, []).append(share.id)
        anchors: dict[int, set[int]] = {}
        for provider in self.providers.values():
            for agg in provider.aggregates:
                for share in by_aggregate.get(agg, ()):
                    if self.providers[share].root != provider.root:
                        anchors.setdefault(provider.root, set()).add(share)
        return {root: sorted(shares) for root, shares in anchors.items()}

    def _anchored(self) -> dict[int, list[int]]:
        """sharing provider -> roots of the trees it is anchored to (memoized on the view)."""
        anchored = self.view.memo.get("anchored")
        if anchored is None:
            anchored = {}
            for root, shares in self.anchors.items():
                for share in shares:
                    anchored.setdefault(share, []).append(root)
            self.view.memo["anchored"] = anchored
        return anchored

    def _roots(self) -> set[int]:
        """Roots of the trees where every requested (class, amount) fits some provider of the tree or
        a sharing provider anchored to it: a necessary condition, so other trees need no search."""
        lone = self.view.lone
        root_of = self.view.memo.get("root_of")   # providers in trees of several -> their root
        if root_of is None:
            root_of = self.view.memo["root_of"] = {rp: p.root for rp, p in self.providers.items() if rp not in lone}
        anchored = self._anchored()
        roots: set[int] | None = None
        for rc, amount in {pair for g in self.groups for pair in g["resources"]}:
            able = self.able(rc, amount)
            found = set(able & lone)
            found.update(map(root_of.__getitem__, able - lone))
            for share in anchored.keys() & able:
                found.update(anchored[share])
            roots = found if roots is None else roots & found
            if not roots:
                return set()
        return roots or set()

    # ------------------------------------------------------------ the search

    def run(self) -> list:
        """Each candidate, for a request of one unsuffixed group: a provider id (one provider takes it
        all) or a tuple of provider ids, one per requested class in class name order; otherwise a list
        of (group index, {class id: provider id})."""
        cap = self.request.max_candidates if self.request.max_candidates and self.request.max_candidates > 0 else None
        if self.request.randomize:   # as upstream: all candidates, then a random sample of ``limit``
            found = self._run(cap)
            limit = self.request.limit
            if limit and limit < len(found):
                return random.sample(found, limit)
            random.shuffle(found)
            return found
        if self.request.limit is not None:
            cap = min(cap, self.request.limit) if cap else self.request.limit
        return self._run(cap)

    def _run(self, cap: int | None) -> list:
        fast = self._fast_set()
        decided, good = fast if fast is not None else (frozenset(), frozenset())
        self._compact_width = len(self.groups[0]["resources"]) if self._compact else 0   # always so on the fast path
        # with sharing providers, a lone sharing provider's own candidate may also come from a tree it anchors
        self._fast_keys = {rp: (rp,) * self._compact_width for rp in self._anchored() if rp in good} if fast else {}
        sharing = self.view.memo.get("sharing_ids")
        if sharing is None:
            sharing = self.view.memo["sharing_ids"] = frozenset(p.id for p in self.view.sharing())
        self._sharing = sharing
        self._flat = not self.request.nested and bool(self.view.children)
        self._seen: set = set()
        self._decided = decided
        roots = self._roots()
        # Fast-path candidates (one each: its root's id), in id order; the other trees are searched one by one.
        bulk = sorted(good - self._fast_keys.keys())
        others = sorted((roots - decided) | self._fast_keys.keys())
        if self.request.strategy == "breadth-first":
            return self._breadth_first(bulk, others, cap)
        results: list = []
        done = 0
        for root in others:
            # trees are visited in root id order: splice in the fast-path candidates of smaller roots
            upto = bisect.bisect_left(bulk, root, done)
            if upto > done:
                results += bulk[done:upto]
                done = upto
                if cap and len(results) >= cap:
                    return results[:cap]
            results.extend(itertools.islice(self._tree_items(root), cap - len(results)) if cap
                           else self._tree_items(root))
            if (cap and len(results) >= cap) or self.exhausted:
                return results
        results += bulk[done:]
        return results[:cap] if cap else results

    def _breadth_first(self, bulk: list[int], others: list[int], cap: int | None) -> list:
        """upstream's breadth-first strategy: one candidate of every tree (in root id order), then a
        second one of every tree that has more, and so on."""
        results: list = []
        live = []
        fast = set(bulk)
        for root in sorted(fast.union(others)):
            if root in fast:
                results.append(root)
            else:
                items = self._tree_items(root)
                item = next(items, None)
                if item is not None:
                    results.append(item)
                    live.append(items)
            if (cap and len(results) >= cap) or self.exhausted:
                return results
        while live:
            still = []
            for items in live:
                item = next(items, None)
                if item is not None:
                    results.append(item)
                    still.append(items)
                if (cap and len(results) >= cap) or self.exhausted:
                    return results
            live = still
        return results

    def _tree_items(self, root: int):
        """The candidates of one tree, as run() returns them, without those found already (an iterator)."""
        if self._shared_fast and self._compact and not self._flat and root not in self._decided:
            found = self._bulk(root)
            if found is not None:
                return iter(found)
        return self._tree_items_one_by_one(root)

    def _tree_items_one_by_one(self, root: int):
        seen = self._seen
        if root in self._decided:   # a lone sharing provider taking the request alone
            key = self._fast_keys[root]
            if key not in seen:
                seen.add(key)
                yield root
            return
        compact, width, sharing, flat = self._compact, self._compact_width, self._sharing, self._flat
        anchors = bool(self.anchors)
        for combination in (self._single_group(root) if self._shared_fast else self._tree_candidates(root)):
            if flat and not self._one_per_tree(combination):
                continue
            if compact:
                picked = combination if type(combination) is tuple else tuple(combination[0][1].values())
                # only a candidate made of sharing providers alone can come from several trees
                if anchors and sharing.issuperset(picked):
                    if picked in seen:
                        continue
                    seen.add(picked)
                if picked.count(picked[0]) == width:
                    yield picked[0]
                else:
                    self.only_ids = False
                    yield picked
            else:
                if self.anchors and all(rp in sharing for _, option in combination for rp in option.values()):
                    key = self._key(combination)
                    if key in seen:
                        continue
                    seen.add(key)
                self.only_ids = False
                yield combination

    def _spend(self, combinations: int) -> bool:
        """Count combinations examined against [placement] max_candidate_combinations; False (and
        ``exhausted`` set) once the budget is spent."""
        self.examined += combinations
        budget = self.request.max_combinations
        if budget and budget > 0 and self.examined > budget:
            self.exhausted = True
            return False
        return True

    def _spend_all(self, combinations: int) -> bool:
        """Count ``combinations`` at once when the budget holds them all (else count nothing)."""
        budget = self.request.max_combinations
        if budget and budget > 0 and self.examined + combinations > budget:
            return False
        self.examined += combinations
        return True

    def _one_per_tree(self, combination) -> bool:
        """Below 1.29: no two providers of a candidate in one tree."""
        if type(combination) is tuple:
            used = set(combination)
        else:
            used = {rp for _, option in combination for rp in option.values()}
        return len(used) == len({self.providers[rp].root for rp in used})

    def _key(self, combination) -> tuple:
        return tuple(sorted((index, rc or 0, rp) for index, option in combination for rc, rp in option.items()))

    def _fast_set(self) -> tuple[set[int], set[int]] | None:
        """(lone-provider trees decided here, those of them that are candidates) for a request of one
        unsuffixed group; None when the fast path does not apply to this request."""
        if len(self.groups) != 1 or self.groups[0]["suffix"] or self.request.same_subtree:
            return None
        group = self.groups[0]
        fitting: set[int] | None = None
        for rc, amount in group["resources"]:
            able = self.able(rc, amount)
            self._able[rc] = able
            fitting = able if fitting is None else fitting & able
        # a lone provider is decided here unless a sharing provider anchored to it can take one of the
        # requested classes (sharing providers of other classes cannot be part of its candidates)
        decided = self.view.lone
        anchored = self._anchored()
        if anchored:
            relevant = [share for share in anchored if any(share in able for able in self._able.values())]
            if relevant:
                decided = decided - set().union(*(anchored[share] for share in relevant))
        good = (fitting or set()) & decided
        filtered = bool(group["required"] or group["forbidden"] or group["member_of"]
                        or group["forbidden_aggregates"] or group["in_tree"] is not None or self.root_required
                        or self.root_forbidden)
        if filtered:
            good = good & self._lone_passing(group)
        self._shared_fast = not filtered
        return decided, good

    def _choices(self, root: int) -> list[list[int]] | None:
        """For one unsuffixed group without trait or aggregate filters: per requested class (in class
        name order), the members of the tree and its anchored sharing providers that can take it."""
        members = self.tree_members(root)
        shares = self.anchors.get(root)
        if shares:
            members = members + shares
        choices = []
        for rc, _ in self.groups[0]["resources"]:
            able = self._able[rc]
            options = [rp for rp in members if rp in able]
            if not options:
                return None
            choices.append(options)
        return choices

    def _single_group(self, root: int):
        """Candidates of a tree for such a group: each class from any provider that can take it. The same
        candidates, in the same order, as the general search (_tree_candidates) gives for such a request,
        each as the tuple of the providers picked for the group's classes (in class name order)."""
        choices = self._choices(root)
        if choices is None:
            return
        if self._spend_all(math.prod(map(len, choices))):
            yield from itertools.product(*choices)
            return
        for picked in itertools.product(*choices):   # the budget runs out within this tree
            if not self._spend(1):
                return
            yield picked

    def _bulk(self, root: int) -> list | None:
        """_tree_items of such a tree built in one go, when none of its candidates can be made of sharing
        providers alone (no deduplication needed) and the combination budget holds them all; else None."""
        choices = self._choices(root)
        if choices is None:
            return []
        sharing = self._sharing
        if self.anchors and all(not sharing.isdisjoint(options) for options in choices):
            return None
        if not self._spend_all(math.prod(map(len, choices))):
            return None
        width = self._compact_width
        if width > 1 and not set(choices[0]).intersection(*choices[1:]):
            # no provider can take every class: each candidate is a split (a tuple), built in C
            self.only_ids = False
            return list(itertools.product(*choices))
        found = [picked[0] if picked.count(picked[0]) == width else picked
                 for picked in itertools.product(*choices)]
        if self.only_ids and any(type(item) is tuple for item in found):
            self.only_ids = False
        return found

    def _lone_passing(self, group: dict) -> frozenset[int]:
        """The lone providers ``_lone_ok`` passes for this group: it reads trees, traits and aggregates only,
        so the answer is memoized on the view and kept by the next views while those stay the same
        (capacity.STRUCTURAL_MEMOS)."""
        key = (tuple(map(frozenset, group["required"])), frozenset(group["forbidden"]),
               tuple(map(frozenset, group["member_of"])), frozenset(group["forbidden_aggregates"]), group["in_tree"],
               tuple(map(frozenset, self.root_required)), frozenset(self.root_forbidden))
        cache = self.view.memo.setdefault("lone_ok", {})
        found = cache.get(key)
        if found is None:
            providers = self.providers
            found = frozenset(rp for rp in self.view.lone if self._lone_ok(group, providers[rp]))
            if len(cache) >= 64:
                cache.clear()
            cache[key] = found
        return found

    def _lone_ok(self, group: dict, provider: capacity.Provider) -> bool:
        traits, aggs = provider.traits, provider.aggregates
        if group["in_tree"] is not None and group["in_tree"] != provider.root:
            return False
        if traits & group["forbidden"] or not all(traits & s for s in group["required"]):
            return False
        if group["forbidden_aggregates"] & aggs or not all(aggs & s for s in group["member_of"]):
            return False
        return not (traits & self.root_forbidden) and all(traits & s for s in self.root_required)

    def _tree_candidates(self, root: int):
        """The combinations (one option per group) valid for this tree, in itertools.product order,
        built group by group: a partial combination that already exceeds a provider's free capacity or max_unit
        or breaks group_policy=isolate is not extended (both only get worse with more groups)."""
        if self.root_required or self.root_forbidden:
            have = self.providers[root].traits
            if have & self.root_forbidden or not all(have & s for s in self.root_required):
                return
        members = list(self.tree_members(root))
        members += self.anchors.get(root, [])
        per_group = []
        for index, group in enumerate(self.groups):
            options = self._group_options(group, root, members)
            if not options:
                return
            per_group.append(options)
        yield from self._combine(per_group, 0, [None] * len(per_group), {}, set())

    def _combine(self, per_group: list[list[dict]], index: int, chosen: list, used: dict, isolated: set):
        group = self.groups[index]
        last = index + 1 == len(per_group)
        several = len(per_group) > 1   # one group alone: each option already fits on its own
        isolate = self.request.group_policy == "isolate" and bool(group["suffix"])
        providers = self.providers
        for option in per_group[index]:
            if not self._spend(1):
                return
            added = []
            fits = True
            if several:
                for rc, amount in group["resources"]:
                    key = (option[rc], rc)
                    total = used.get(key, 0) + amount
                    record = providers[key[0]].inventory[rc]
                    # as upstream, amounts of several groups summed on one provider must fit both its
                    # free capacity and its max_unit (min_unit and step_size hold per group)
                    if record.free < total or record.max_unit < total:
                        fits = False
                        break
                    used[key] = total
                    added.append((key, amount))
            mine = set(option.values()) if isolate and fits else None
            if mine is not None and mine & isolated:
                fits = False
            if fits:
                if mine:
                    isolated |= mine
                chosen[index] = (index, option)
                if not last:
                    yield from self._combine(per_group, index + 1, chosen, used, isolated)
                elif not self.request.same_subtree or all(self._same_subtree(chosen, suffixes)
                                                          for suffixes in self.request.same_subtree):
                    yield list(chosen)
                if mine:
                    isolated -= mine
            for key, amount in added:
                used[key] -= amount
            if self.exhausted:
                return

    def _group_options(self, group: dict, root: int, members: list[int]) -> list[dict]:
        resources = group["resources"]
        in_tree = group["in_tree"]
        if not resources:
            # As upstream, a resourceless group matches only through required traits or member_of (forbidden
            # ones alone match nothing), and its in_tree only has to name an existing provider.
            if in_tree == -1 or not (group["required"] or group["member_of"]):
                return []
        elif in_tree is not None and group["suffix"]:
            # a suffixed group's provider must be in in_tree's tree; a sharing provider there still serves
            # the trees anchored to it
            members = [rp for rp in members if self.providers[rp].root == in_tree]
        elif in_tree is not None:
            if in_tree != root:
                return []
            # the unsuffixed group is confined to the tree: no sharing provider from outside it
            members = [rp for rp in members if self.providers[rp].root == root]
        usable = [rp for rp in members if self._provider_ok(group, rp, root)]
        if not usable:
            return []
        if not resources:
            return [{None: rp} for rp in usable]
        if group["suffix"]:
            return [{rc: rp for rc, _ in resources} for rp in usable
                    if all(self._fits(rp, rc, amount) for rc, amount in resources)]
        choices = [[rp for rp in usable if self._fits(rp, rc, amount)] for rc, amount in resources]
        classes = [rc for rc, _ in resources]
        options = []
        check = bool(group["required"] or group["forbidden"])
        for picked in itertools.product(*choices):
            if not self._spend(1):
                break
            if not check or self._traits_ok(group, set(picked)):
                options.append(dict(zip(classes, picked)))
        return options

    def _fits(self, rp: int, rc: int | None, amount: int) -> bool:
        record = self.providers[rp].inventory.get(rc)
        return record is not None and record.fits(amount)

    def _provider_ok(self, group: dict, rp: int, root: int) -> bool:
        """Whether ``rp`` may serve ``group`` in the tree of ``root``. Aggregates as upstream: a provider
        that takes a group alone (suffixed) must itself be in them; for the unsuffixed group, a provider
        of the tree is in them itself or through its root (either wholly), a sharing provider itself."""
        provider = self.providers[rp]
        member_of, forbidden = group["member_of"], group["forbidden_aggregates"]
        own = provider.aggregates
        if group["suffix"] or not group["resources"] or provider.root != root:
            if forbidden & own or not all(own & any_of for any_of in member_of):
                return False
        else:
            top = self.providers[root].aggregates
            if forbidden & (own | top):
                return False
            if member_of and not (all(own & s for s in member_of) or all(top & s for s in member_of)):
                return False
        if group["suffix"] or not group["resources"]:
            return self._traits_ok(group, {rp})
        return not (provider.traits & group["forbidden"])

    def _traits_ok(self, group: dict, rps_used: set[int]) -> bool:
        if not group["required"] and not group["forbidden"]:
            return True
        have: set[int] = set()
        for rp in rps_used:
            have |= self.providers[rp].traits
        if have & group["forbidden"]:
            return False
        return all(have & any_of for any_of in group["required"])

    def _same_subtree(self, combination, suffixes: list[str]) -> bool:
        chosen: set[int] = set()
        for index, option in combination:
            if self.groups[index]["suffix"] in suffixes:
                chosen |= set(option.values())
        return any(all(self.view.is_ancestor(top, rp) for rp in chosen) for top in chosen)

    def render(self, combination) -> Candidate:
        allocations: dict[str, dict[str, int]] = {}
        mappings: dict[str, list[str]] = {}
        for index, option in combination:
            group = self.groups[index]
            uuids = []
            for (rc, amount), name in zip(group["resources"], group["names"]):
                uuid = self.providers[option[rc]].uuid
                resources = allocations.setdefault(uuid, {})
                resources[name] = resources.get(name, 0) + amount
                if uuid not in uuids:
                    uuids.append(uuid)
            if not group["resources"]:
                uuids.append(self.providers[option[None]].uuid)
            mappings.setdefault(group["suffix"], [])
            mappings[group["suffix"]] += [u for u in uuids if u not in mappings[group["suffix"]]]
        return Candidate(allocations, mappings)
