"""Property tests: GET /allocation_candidates against a brute-force reference on random provider trees.

Random trees (roots with children) with inventories (usage, max_unit, step_size), traits and
aggregates, and sharing providers (MISC_SHARES_VIA_AGGREGATE) in aggregates; random requests of an
unsuffixed group and up to two granular groups, each with required/forbidden/any-of traits,
member_of (positive, forbidden, any-of) and in_tree, plus group_policy, root_required and
same_subtree. The reference is upstream's semantics written out plainly: for every tree (with the
sharing providers anchored to it), every assignment of every requested class to a provider,
filtered group by group, then the amounts summed per provider checked against capacity and
max_unit, isolate, same_subtree and root_required. Candidate sets must be equal. The same database
is reused across examples, so the in-memory capacity index is also checked to follow every change.
"""
from __future__ import annotations

import asyncio
import itertools
import tempfile
import uuid as uuidlib

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.config import Config
from kilonova.placement.service import PlacementService

set_hypothesis_home_dir(tempfile.gettempdir() + "/kilonova-hypothesis")   # keep the work tree clean

CLASSES = ["VCPU", "MEMORY_MB", "DISK_GB"]
TRAITS = ["CUSTOM_GOLD", "CUSTOM_SILVER"]
AGGREGATES = ["1e4b8a1e-7f41-4a55-9d8a-3c4f5f2b1a00", "2e4b8a1e-7f41-4a55-9d8a-3c4f5f2b1a00"]
H = {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement 1.39"}

# class -> (total, used, max_unit, step_size)
record = st.tuples(st.integers(1, 10), st.integers(0, 4), st.integers(1, 5), st.sampled_from([1, 1, 2]))
inventory = st.dictionaries(st.sampled_from(CLASSES), record, max_size=3)
node = st.fixed_dictionaries({"inventory": inventory, "traits": st.sets(st.sampled_from(TRAITS), max_size=2),
                              "aggregates": st.sets(st.sampled_from([0, 1]), max_size=2)})
tree = st.tuples(node, st.lists(node, max_size=2))
world = st.fixed_dictionaries({
    "trees": st.lists(tree, min_size=1, max_size=3),
    "sharing": st.lists(st.fixed_dictionaries({
        "inventory": st.dictionaries(st.sampled_from(CLASSES), record, min_size=1, max_size=2),
        "traits": st.sets(st.sampled_from(TRAITS), max_size=1),
        "aggregates": st.sets(st.sampled_from([0, 1]), min_size=1, max_size=2)}), max_size=2),
})
# each filter absent most of the time, so that what the groups ask for still often meets (and adds up)
required = st.sampled_from([None] * 5 + TRAITS + ["!" + t for t in TRAITS] + ["in:" + ",".join(TRAITS)])
member_of = st.sampled_from([None] * 5 + ["0", "1", "!0", "!1", "in:0,1"])
in_tree = st.one_of(st.none(), st.none(), st.none(), st.integers(0, 20))
granular = st.fixed_dictionaries({
    "resources": st.dictionaries(st.sampled_from(CLASSES), st.integers(1, 3), min_size=1, max_size=1),
    "required": required, "member_of": member_of, "in_tree": in_tree, "reuse": st.booleans()})


def _overlap(q: dict) -> dict:
    """A granular group marked ``reuse`` asks for a class of the unsuffixed group (so that groups add up
    on one provider, where capacity and max_unit hold for the sum)."""
    first = min(q["resources"])
    for group in q["granular"]:
        if group.pop("reuse", False):
            group["resources"] = {first: next(iter(group["resources"].values()))}
    return q


query = st.fixed_dictionaries({
    "resources": st.dictionaries(st.sampled_from(CLASSES), st.integers(1, 4), min_size=1, max_size=2),
    "required": required, "member_of": member_of, "in_tree": in_tree,
    "granular": st.lists(granular, max_size=2),
    "policy": st.sampled_from(["none", "isolate"]),
    "root_required": st.sampled_from([None] * 4 + TRAITS + ["!" + t for t in TRAITS]),
    "same_subtree": st.booleans(),
}).map(_overlap)


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    conf = Config.load(state_dir=tmp_path_factory.mktemp("prop"),
                       overrides={"placement": {"auth_strategy": "noauth2", "max_allocation_candidates": "-1"}})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    svc.prepare()
    yield svc
    svc.db.close()


class Provider:
    def __init__(self, uuid, root, parent, spec, sharing=False):
        self.uuid, self.root, self.parent, self.sharing = uuid, root, parent, sharing
        # class -> (capacity left, max_unit, step_size); inventories whose usage would not fit are not made
        self.inventory = {rc: (total - used, max_unit, step)
                          for rc, (total, used, max_unit, step) in spec.get("inventory", {}).items() if used <= total}
        self.traits = set(spec.get("traits", ())) | ({"MISC_SHARES_VIA_AGGREGATE"} if sharing else set())
        self.aggregates = {AGGREGATES[i] for i in spec.get("aggregates", ())}

    def fits(self, rc: str, amount: int) -> bool:
        found = self.inventory.get(rc)
        return found is not None and amount <= found[0] and amount <= found[1] and amount % found[2] == 0


async def _build(http: httpx.AsyncClient, data: dict) -> list[Provider]:
    providers: list[Provider] = []

    async def make(spec, parent: Provider | None, sharing=False):
        uuid = str(uuidlib.uuid4())
        body = {"name": uuid, "uuid": uuid}
        if parent:
            body["parent_provider_uuid"] = parent.uuid
        assert (await http.post("/resource_providers", json=body)).status_code == 200
        gen = 0
        inv = {rc: {"total": total, "max_unit": max_unit, "step_size": step}
               for rc, (total, used, max_unit, step) in spec.get("inventory", {}).items() if used <= total}
        if inv:
            r = await http.put(f"/resource_providers/{uuid}/inventories",
                               json={"resource_provider_generation": gen, "inventories": inv})
            assert r.status_code == 200, r.text
            gen += 1
            for rc, (total, used, _max, _step) in spec["inventory"].items():
                if 0 < used <= total:   # usage written by raising max_unit/step for the claim, then restoring
                    await _use(http, uuid, rc, used, inv)
            gen = (await http.get(f"/resource_providers/{uuid}")).json()["generation"]
        provider = Provider(uuid, parent.root if parent else uuid, parent.uuid if parent else None, spec, sharing)
        if provider.traits:
            r = await http.put(f"/resource_providers/{uuid}/traits",
                               json={"resource_provider_generation": gen, "traits": sorted(provider.traits)})
            assert r.status_code == 200, r.text
            gen += 1
        if provider.aggregates:
            r = await http.put(f"/resource_providers/{uuid}/aggregates",
                               json={"resource_provider_generation": gen, "aggregates": sorted(provider.aggregates)})
            assert r.status_code == 200, r.text
        providers.append(provider)
        return provider

    for root_spec, children in data["trees"]:
        root = await make(root_spec, None)
        for child in children:
            await make(child, root)
    for spec in data["sharing"]:
        await make(spec, None, sharing=True)
    return providers


async def _use(http: httpx.AsyncClient, uuid: str, rc: str, used: int, inv: dict) -> None:
    """Consume ``used`` of ``rc``: the inventory's max_unit/step_size are lifted for the claim."""
    gen = (await http.get(f"/resource_providers/{uuid}")).json()["generation"]
    loose = dict(inv[rc], max_unit=inv[rc]["total"], step_size=1)
    r = await http.put(f"/resource_providers/{uuid}/inventories/{rc}",
                       json={"resource_provider_generation": gen, **loose})
    assert r.status_code == 200, r.text
    consumer = str(uuidlib.uuid4())
    r = await http.put(f"/allocations/{consumer}", json={
        "allocations": {uuid: {"resources": {rc: used}}}, "project_id": "p", "user_id": "u",
        "consumer_generation": None, "consumer_type": "INSTANCE"})
    assert r.status_code == 204, r.text
    gen = (await http.get(f"/resource_providers/{uuid}")).json()["generation"]
    r = await http.put(f"/resource_providers/{uuid}/inventories/{rc}",
                       json={"resource_provider_generation": gen, **inv[rc]})
    assert r.status_code == 200, r.text


async def _clear(http: httpx.AsyncClient) -> None:
    listing = (await http.get("/resource_providers")).json()["resource_providers"]
    depth = {p["uuid"]: (0 if p["parent_provider_uuid"] is None else 1) for p in listing}
    for p in sorted(listing, key=lambda p: -depth[p["uuid"]]):   # children before parents
        allocs = (await http.get(f"/resource_providers/{p['uuid']}/allocations")).json()["allocations"]
        for consumer in allocs:
            await http.delete(f"/allocations/{consumer}")
        assert (await http.delete(f"/resource_providers/{p['uuid']}")).status_code == 204


# ------------------------------------------------------------------ the reference

def _traits_of(value: str | None) -> tuple[list[set[str]], set[str]]:
    if value is None:
        return [], set()
    if value.startswith("in:"):
        return [set(value[3:].split(","))], set()
    return ([], {value[1:]}) if value.startswith("!") else ([{value}], set())


def _aggs_of(value: str | None) -> tuple[list[set[str]], set[str]]:
    if value is None:
        return [], set()
    if value.startswith("in:"):
        return [{AGGREGATES[int(i)] for i in value[3:].split(",")}], set()
    return ([], {AGGREGATES[int(value[1:])]}) if value.startswith("!") else ([{AGGREGATES[int(value)]}], set())


def _groups(q: dict, providers: list[Provider]) -> list[dict]:
    groups = []
    for suffix, spec in [("", q)] + [(f"_G{i}", g) for i, g in enumerate(q["granular"])]:
        req, forb = _traits_of(spec["required"])
        member, bad = _aggs_of(spec["member_of"])
        tree_of = providers[spec["in_tree"] % len(providers)].root if spec["in_tree"] is not None else None
        groups.append({"suffix": suffix, "resources": spec["resources"], "required": req, "forbidden": forb,
                       "member_of": member, "bad": bad, "in_tree": tree_of})
    return groups


def _options(group: dict, root: str, pool: list[Provider], by_uuid: dict) -> list[tuple]:
    """Each way one group can be served in this tree: ((provider, class, amount), ...)."""
    if group["in_tree"] is not None:
        # a suffixed group: a provider of in_tree's tree (a sharing one there still serves the trees it is
        # anchored to); the unsuffixed group: only this tree, when it is in_tree's
        if not group["suffix"] and group["in_tree"] != root:
            return []
        pool = [p for p in pool if p.root == group["in_tree"]]
    top = by_uuid[root].aggregates
    classes = sorted(group["resources"])
    found = []
    if group["suffix"]:   # one provider, itself matching every filter
        for p in pool:
            if (all(p.fits(rc, group["resources"][rc]) for rc in classes)
                    and all(p.traits & s for s in group["required"]) and not p.traits & group["forbidden"]
                    and all(p.aggregates & s for s in group["member_of"]) and not p.aggregates & group["bad"]):
                found.append(tuple((p, rc, group["resources"][rc]) for rc in classes))
        return found

    def usable(p: Provider) -> bool:
        if p.traits & group["forbidden"]:
            return False
        if p.root != root:   # a sharing provider from outside the tree: its own aggregates
            return not p.aggregates & group["bad"] and all(p.aggregates & s for s in group["member_of"])
        if (p.aggregates | top) & group["bad"]:
            return False
        return (all(p.aggregates & s for s in group["member_of"]) or all(top & s for s in group["member_of"]))

    for picked in itertools.product([p for p in pool if usable(p)], repeat=len(classes)):
        if not all(p.fits(rc, group["resources"][rc]) for p, rc in zip(picked, classes)):
            continue
        have = set().union(*(p.traits for p in picked))
        if all(have & s for s in group["required"]):
            found.append(tuple((p, rc, group["resources"][rc]) for p, rc in zip(picked, classes)))
    return found


def reference(providers: list[Provider], q: dict) -> set:
    by_uuid = {p.uuid: p for p in providers}
    by_root: dict[str, list[Provider]] = {}
    for p in providers:
        by_root.setdefault(p.root, []).append(p)
    groups = _groups(q, providers)
    root_req, root_forb = _traits_of(q["root_required"])
    subtree = [g["suffix"] for g in groups if g["suffix"]] if q["same_subtree"] and len(groups) > 1 else []

    def ancestors(p: Provider) -> set[str]:
        found = {p.uuid}
        while p.parent:
            p = by_uuid[p.parent]
            found.add(p.uuid)
        return found

    results = set()
    for root, members in by_root.items():
        if by_uuid[root].traits & root_forb or not all(by_uuid[root].traits & s for s in root_req):
            continue
        tree_aggs = set().union(*(p.aggregates for p in members))
        pool = members + [s for s in providers if s.sharing and s.root != root and s.aggregates & tree_aggs]
        for combo in itertools.product(*(_options(g, root, pool, by_uuid) for g in groups)):
            used: dict[tuple[str, str], int] = {}
            for option in combo:
                for p, rc, n in option:
                    used[(p.uuid, rc)] = used.get((p.uuid, rc), 0) + n
            if any(n > by_uuid[u].inventory[rc][0] or n > by_uuid[u].inventory[rc][1] for (u, rc), n in used.items()):
                continue
            granular_rps = [option[0][0].uuid for g, option in zip(groups, combo) if g["suffix"]]
            if q["policy"] == "isolate" and len(set(granular_rps)) != len(granular_rps):
                continue
            if subtree:
                chosen = [by_uuid[u] for u in granular_rps]
                common = set.intersection(*(ancestors(p) for p in chosen))
                if not any(p.uuid in common for p in chosen):
                    continue
            mappings = frozenset((g["suffix"], frozenset(p.uuid for p, _, _ in option)) for g, option in zip(groups, combo))
            results.add((frozenset(used.items()), mappings))
    return results


def _query_string(q: dict, providers: list[Provider]) -> str:
    parts = []
    for suffix, spec in [("", q)] + [(f"_G{i}", g) for i, g in enumerate(q["granular"])]:
        parts.append(f"resources{suffix}=" + ",".join(f"{rc}:{n}" for rc, n in sorted(spec["resources"].items())))
        if spec["required"]:
            parts.append(f"required{suffix}={spec['required']}")
        if spec["member_of"]:
            value = spec["member_of"]
            prefix = value[:value.index(":") + 1] if ":" in value else ("!" if value.startswith("!") else "")
            indices = value[len(prefix):].split(",")
            parts.append(f"member_of{suffix}={prefix}" + ",".join(AGGREGATES[int(i)] for i in indices))
        if spec["in_tree"] is not None:
            parts.append(f"in_tree{suffix}={providers[spec['in_tree'] % len(providers)].uuid}")
    if q["granular"]:
        parts.append("group_policy=" + q["policy"])
    if q["root_required"]:
        parts.append("root_required=" + q["root_required"])
    if q["same_subtree"] and q["granular"]:
        parts.append("same_subtree=" + ",".join(f"_G{i}" for i in range(len(q["granular"]))))
    return "&".join(parts)


def _q(**kw) -> dict:
    base = {"required": None, "member_of": None, "in_tree": None, "granular": [], "policy": "none",
            "root_required": None, "same_subtree": False}
    base.update(kw)
    return base


def _g(resources, **kw) -> dict:
    return {"resources": resources, "required": None, "member_of": None, "in_tree": None, **kw}


def _n(inventory=None, traits=(), aggregates=()) -> dict:
    return {"inventory": inventory or {}, "traits": set(traits), "aggregates": set(aggregates)}


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                HealthCheck.too_slow])
@given(data=world, q=query)
# lone providers with sharing providers anchored to them (the sharing fast path)
@example(data={"trees": [(_n({"VCPU": (4, 0, 8, 1), "DISK_GB": (4, 2, 8, 1)}, aggregates=[0]), []),
                         (_n({"VCPU": (4, 4, 8, 1)}, aggregates=[0]), [])],
               "sharing": [_n({"DISK_GB": (8, 0, 8, 1)}, aggregates=[0]),
                           _n({"DISK_GB": (8, 1, 8, 1), "VCPU": (2, 0, 8, 1)}, aggregates=[0])]},
         q=_q(resources={"VCPU": 1, "DISK_GB": 2}))
# a nested tree and a sharing provider, one unfiltered group (candidates built per tree in one go)
@example(data={"trees": [(_n({"VCPU": (4, 0, 8, 1), "DISK_GB": (4, 0, 8, 1)}, aggregates=[0]),
                          [_n({"DISK_GB": (4, 1, 8, 1), "VCPU": (2, 0, 8, 1)})]),
                         (_n({"VCPU": (4, 0, 8, 1)}, aggregates=[0]), [])],
               "sharing": [_n({"DISK_GB": (8, 0, 8, 1)}, aggregates=[0])]},
         q=_q(resources={"VCPU": 1, "DISK_GB": 2}))
# in_tree with a sharing provider outside the tree (none may be used)
@example(data={"trees": [(_n({"VCPU": (4, 0, 8, 1)}, aggregates=[0]), [])],
               "sharing": [_n({"DISK_GB": (8, 0, 8, 1)}, aggregates=[0])]},
         q=_q(resources={"VCPU": 1, "DISK_GB": 2}, in_tree=0))
# a granular group's in_tree naming a sharing provider (it still serves the tree anchored to it)
@example(data={"trees": [(_n({"VCPU": (4, 0, 8, 1)}, aggregates=[0]), [])],
               "sharing": [_n({"DISK_GB": (8, 0, 8, 1)}, aggregates=[0])]},
         q=_q(resources={"VCPU": 1}, granular=[_g({"DISK_GB": 2}, in_tree=1)]))
# two groups summed on one provider beyond its max_unit
@example(data={"trees": [(_n({"VCPU": (8, 0, 4, 1)}), [])], "sharing": []},
         q=_q(resources={"VCPU": 3}, granular=[_g({"VCPU": 3})]))
# a granular group's member_of: the provider itself, not its root
@example(data={"trees": [(_n({"VCPU": (4, 0, 8, 1)}, aggregates=[0]), [_n({"DISK_GB": (4, 0, 8, 1)})])],
               "sharing": []},
         q=_q(resources={"VCPU": 1}, granular=[_g({"DISK_GB": 1}, member_of="0")]))
# nested, isolate, a required trait
@example(data={"trees": [(_n({"VCPU": (4, 0, 8, 1)}, traits=["CUSTOM_GOLD"]),
                          [_n({"DISK_GB": (4, 0, 8, 1)}, aggregates=[0])])],
               "sharing": [_n({"DISK_GB": (8, 0, 8, 1)}, aggregates=[0])]},
         q=_q(resources={"VCPU": 1, "DISK_GB": 2}, granular=[_g({"DISK_GB": 1})], policy="isolate",
              required="CUSTOM_GOLD"))
def test_candidates_match_brute_force(placement, data, q):
    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=placement.app), base_url="http://p",
                                     headers=H) as http:
            await _clear(http)
            for trait in TRAITS:
                await http.put(f"/traits/{trait}")
            providers = await _build(http, data)
            query_string = _query_string(q, providers)
            response = await http.get("/allocation_candidates?" + query_string)
            assert response.status_code == 200, response.text
            body = response.json()
            got = set()
            for candidate in body["allocation_requests"]:
                got.add((frozenset(((rp, rc), n) for rp, alloc in candidate["allocations"].items()
                                   for rc, n in alloc["resources"].items()),
                         frozenset((suffix, frozenset(rps)) for suffix, rps in candidate["mappings"].items())))
                for rp in candidate["allocations"]:
                    assert rp in body["provider_summaries"]
            assert len(got) == len(body["allocation_requests"]), "duplicate candidates"
            expected = reference(providers, q)
            assert got == expected, (query_string, data)
    asyncio.run(run())
