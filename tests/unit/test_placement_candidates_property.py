"""Property tests: GET /allocation_candidates against a brute-force reference on random provider trees.

Random trees (roots with children), random inventories and usage, traits, and
sharing providers (MISC_SHARES_VIA_AGGREGATE) in an aggregate with some trees;
random requests of one unsuffixed group, optionally a granular group with
group_policy none/isolate and a required or forbidden trait. The reference
enumerates every assignment of every requested class to every provider of each
tree (plus the sharing providers anchored to it) and keeps the valid ones; the
candidate sets must be equal. The same database is reused across examples, so the
in-memory capacity index is also checked to follow every change.
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
AGGREGATE = "1e4b8a1e-7f41-4a55-9d8a-3c4f5f2b1a00"
H = {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement 1.39"}

inventory = st.dictionaries(st.sampled_from(CLASSES), st.tuples(st.integers(1, 8), st.integers(0, 8)), max_size=3)
node = st.fixed_dictionaries({"inventory": inventory, "traits": st.sets(st.sampled_from(TRAITS), max_size=2),
                              "in_aggregate": st.booleans()})
tree = st.tuples(node, st.lists(node, max_size=3))
world = st.fixed_dictionaries({
    "trees": st.lists(tree, min_size=1, max_size=4),
    "sharing": st.lists(st.dictionaries(st.sampled_from(CLASSES), st.tuples(st.integers(1, 8), st.integers(0, 8)),
                                        min_size=1, max_size=2), max_size=2),
})
query = st.fixed_dictionaries({
    "resources": st.dictionaries(st.sampled_from(CLASSES), st.integers(1, 4), min_size=1, max_size=2),
    "granular": st.one_of(st.none(), st.dictionaries(st.sampled_from(CLASSES), st.integers(1, 3), min_size=1,
                                                     max_size=1)),
    "policy": st.sampled_from(["none", "isolate"]),
    "required": st.one_of(st.none(), st.sampled_from(TRAITS), st.sampled_from(["!" + t for t in TRAITS])),
})


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    conf = Config.load(state_dir=tmp_path_factory.mktemp("prop"),
                       overrides={"placement": {"auth_strategy": "noauth2", "max_allocation_candidates": "-1"}})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    svc.prepare()
    yield svc
    svc.db.close()


class Provider:
    def __init__(self, uuid, root, parent, spec):
        self.uuid, self.root, self.parent = uuid, root, parent
        self.inventory = {rc: total - used for rc, (total, used) in spec.get("inventory", {}).items()
                          if used <= total}
        self.traits = set(spec.get("traits", ()))
        self.aggregates = {AGGREGATE} if spec.get("in_aggregate") else set()
        self.sharing = spec.get("sharing", False)


async def _build(http: httpx.AsyncClient, data: dict) -> list[Provider]:
    providers: list[Provider] = []

    async def make(spec, parent: Provider | None):
        uuid = str(uuidlib.uuid4())
        body = {"name": uuid, "uuid": uuid}
        if parent:
            body["parent_provider_uuid"] = parent.uuid
        assert (await http.post("/resource_providers", json=body)).status_code == 200
        gen = 0
        inv = {rc: {"total": total} for rc, (total, used) in spec.get("inventory", {}).items() if used <= total}
        if inv:
            r = await http.put(f"/resource_providers/{uuid}/inventories",
                               json={"resource_provider_generation": gen, "inventories": inv})
            assert r.status_code == 200, r.text
            gen += 1
            used = {rc: u for rc, (total, u) in spec["inventory"].items() if 0 < u <= total}
            if used:
                r = await http.put(f"/allocations/{uuidlib.uuid4()}", json={
                    "allocations": {uuid: {"resources": used}}, "project_id": "p", "user_id": "u",
                    "consumer_generation": None, "consumer_type": "INSTANCE"})
                assert r.status_code == 204, r.text
                gen += 1
        traits = sorted(spec.get("traits", ())) + (["MISC_SHARES_VIA_AGGREGATE"] if spec.get("sharing") else [])
        if traits:
            r = await http.put(f"/resource_providers/{uuid}/traits",
                               json={"resource_provider_generation": gen, "traits": traits})
            assert r.status_code == 200, r.text
            gen += 1
        if spec.get("in_aggregate"):
            r = await http.put(f"/resource_providers/{uuid}/aggregates",
                               json={"resource_provider_generation": gen, "aggregates": [AGGREGATE]})
            assert r.status_code == 200, r.text
        provider = Provider(uuid, parent.root if parent else uuid, parent.uuid if parent else None, spec)
        providers.append(provider)
        return provider

    for root_spec, children in data["trees"]:
        root = await make(root_spec, None)
        for child in children:
            await make(child, root)
    for inv in data["sharing"]:
        await make({"inventory": inv, "sharing": True, "in_aggregate": True}, None)
    return providers


async def _clear(http: httpx.AsyncClient) -> None:
    for consumer in list(_consumers):
        await http.delete(f"/allocations/{consumer}")
    listing = (await http.get("/resource_providers")).json()["resource_providers"]
    # children before parents
    depth = {p["uuid"]: (0 if p["parent_provider_uuid"] is None else 1) for p in listing}
    for p in sorted(listing, key=lambda p: -depth[p["uuid"]]):
        allocs = (await http.get(f"/resource_providers/{p['uuid']}/allocations")).json()["allocations"]
        for consumer in allocs:
            await http.delete(f"/allocations/{consumer}")
        assert (await http.delete(f"/resource_providers/{p['uuid']}")).status_code == 204


_consumers: list[str] = []


def reference(providers: list[Provider], q: dict) -> set:
    by_root: dict[str, list[Provider]] = {}
    for p in providers:
        by_root.setdefault(p.root, []).append(p)
    sharing = [p for p in providers if p.sharing]
    results = set()
    required = q["required"]

    def traits_ok(used: list[Provider]) -> bool:
        if required is None:
            return True
        have = set().union(*(p.traits for p in used))
        return (required[1:] not in have) if required.startswith("!") else (required in have)

    for root, members in by_root.items():
        tree_aggs = set().union(*(p.aggregates for p in members))
        pool = members + [s for s in sharing if s.root != root and s.aggregates & tree_aggs]
        if required and required.startswith("!"):
            # a provider with a forbidden trait takes no part in the unsuffixed group
            unsuffixed_pool = [p for p in pool if required[1:] not in p.traits]
        else:
            unsuffixed_pool = pool
        classes = sorted(q["resources"])
        for picked in itertools.product(unsuffixed_pool, repeat=len(classes)):
            if not all(p.inventory.get(rc, 0) >= q["resources"][rc] for p, rc in zip(picked, classes)):
                continue
            if not traits_ok(list(set(picked))):
                continue
            granular_options = [None]
            if q["granular"]:
                granular_options = [p for p in pool if all(p.inventory.get(rc, 0) >= n
                                                           for rc, n in q["granular"].items())]
            for extra in granular_options:
                used: dict[tuple[str, str], int] = {}
                for p, rc in zip(picked, classes):
                    used[(p.uuid, rc)] = used.get((p.uuid, rc), 0) + q["resources"][rc]
                if extra is not None:
                    for rc, n in q["granular"].items():
                        used[(extra.uuid, rc)] = used.get((extra.uuid, rc), 0) + n
                    if q["policy"] == "isolate":
                        pass   # isolation only separates suffixed groups from each other
                lookup = {p.uuid: p for p in providers}
                if any(lookup[u].inventory.get(rc, 0) < n for (u, rc), n in used.items()):
                    continue
                mappings = frozenset([("", frozenset(p.uuid for p in picked))]
                                     + ([("_G", frozenset([extra.uuid]))] if extra is not None else []))
                results.add((frozenset(used.items()), mappings))
    return results


def _query_string(q: dict) -> str:
    parts = ["resources=" + ",".join(f"{rc}:{n}" for rc, n in sorted(q["resources"].items()))]
    if q["required"]:
        parts.append("required=" + q["required"])
    if q["granular"]:
        parts.append("resources_G=" + ",".join(f"{rc}:{n}" for rc, n in q["granular"].items()))
        parts.append("group_policy=" + q["policy"])
    return "&".join(parts)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=world, q=query)
# lone providers with sharing providers anchored to them (the sharing fast path), then a nested one
@example(data={"trees": [({"inventory": {"VCPU": (4, 0), "DISK_GB": (4, 2)}, "traits": set(), "in_aggregate": True},
                          []),
                         ({"inventory": {"VCPU": (4, 4)}, "traits": set(), "in_aggregate": True}, [])],
               "sharing": [{"DISK_GB": (8, 0)}, {"DISK_GB": (8, 1), "VCPU": (2, 0)}]},
         q={"resources": {"VCPU": 1, "DISK_GB": 2}, "granular": None, "policy": "none", "required": None})
@example(data={"trees": [({"inventory": {"VCPU": (4, 0)}, "traits": {"CUSTOM_GOLD"}, "in_aggregate": False},
                          [{"inventory": {"DISK_GB": (4, 0)}, "traits": set(), "in_aggregate": True}])],
               "sharing": [{"DISK_GB": (8, 0)}]},
         q={"resources": {"VCPU": 1, "DISK_GB": 2}, "granular": {"DISK_GB": 1}, "policy": "isolate",
            "required": "CUSTOM_GOLD"})
def test_candidates_match_brute_force(placement, data, q):
    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=placement.app), base_url="http://p",
                                     headers=H) as http:
            await _clear(http)
            for trait in TRAITS:
                await http.put(f"/traits/{trait}")
            providers = await _build(http, data)
            response = await http.get("/allocation_candidates?" + _query_string(q))
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
            assert got == expected, (_query_string(q), data)
    asyncio.run(run())
