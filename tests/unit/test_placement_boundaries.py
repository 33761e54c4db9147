"""Microversion boundaries of GET /allocation_candidates and friends, error cases, the candidate cap, the
generation strategies and the combination guard."""
from __future__ import annotations

import uuid

import httpx
import pytest

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.config import Config
from kilonova.placement.service import PlacementService
from tests.unit.test_placement_api import Client, compute_inventory, error_of

AC = "/allocation_candidates?resources=VCPU:1"


class AdminClient(Client):
    """noauth2: the token "admin" is the admin user."""

    async def request(self, method, path, version="1.39", token="admin", **kw):
        return await super().request(method, path, version=version, token=token, **kw)


@pytest.fixture
async def world(tmp_path):
    conf = Config.load(state_dir=tmp_path, overrides={"placement": {"auth_strategy": "noauth2",
                                                                    "max_allocation_candidates": "5"}})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    svc.prepare()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p") as http:
        client = AdminClient(http)
        root = await client.provider("host", inventory=compute_inventory(), traits=["HW_CPU_X86_AVX2"])
        for i in range(8):
            await client.provider(f"host-pf{i}", parent=root["uuid"],
                                  inventory={"SRIOV_NET_VF": {"total": 8}})
        yield client, root
    svc.db.close()


@pytest.mark.parametrize("query, below, at", [
    (AC + "&limit=1", "1.15", "1.16"),
    (AC + "&required=HW_CPU_X86_AVX2", "1.16", "1.17"),
    (AC + "&required=!HW_CPU_X86_AVX2", "1.21", "1.22"),
    (AC + "&member_of=4f1c2b8e-7a6d-4e0f-9b3a-2c5d8e1f0a01", "1.20", "1.21"),
    (AC + "&resources1=SRIOV_NET_VF:1", "1.24", "1.25"),
    (AC + "&resources_NIC=SRIOV_NET_VF:1", "1.32", "1.33"),
    (AC + "&in_tree=4f1c2b8e-7a6d-4e0f-9b3a-2c5d8e1f0a02", "1.30", "1.31"),
    (AC + "&member_of=!4f1c2b8e-7a6d-4e0f-9b3a-2c5d8e1f0a03", "1.31", "1.32"),
    (AC + "&root_required=HW_CPU_X86_AVX2", "1.34", "1.35"),
    (AC + "&resources_A=SRIOV_NET_VF:1&same_subtree=_A&group_policy=none", "1.35", "1.36"),
    (AC + "&required=in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE", "1.38", "1.39"),
])
async def test_query_parameters_appear_at_their_version(world, query, below, at):
    client, _ = world
    response = await client.get(query, version=below, token="admin")
    assert response.status_code == 400, response.text
    response = await client.get(query, version=at, token="admin")
    assert response.status_code == 200, response.text


async def test_candidate_shapes_across_versions(world):
    client, root = world
    old = (await client.get(AC, version="1.11", token="admin")).json()
    assert isinstance(old["allocation_requests"][0]["allocations"], list)
    assert "traits" not in old["provider_summaries"][root["uuid"]]
    body = (await client.get(AC, version="1.17", token="admin")).json()
    assert body["provider_summaries"][root["uuid"]]["traits"] == ["HW_CPU_X86_AVX2"]
    assert "parent_provider_uuid" not in body["provider_summaries"][root["uuid"]]
    assert "mappings" not in body["allocation_requests"][0]
    body = (await client.get(AC, version="1.34", token="admin")).json()
    assert body["allocation_requests"][0]["mappings"] == {"": [root["uuid"]]}
    summary = body["provider_summaries"][root["uuid"]]
    assert summary["root_provider_uuid"] == root["uuid"] and summary["parent_provider_uuid"] is None
    # 1.27: every inventoried class is summarized; before, only the requested ones
    assert set(summary["resources"]) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    before = (await client.get(AC, version="1.26", token="admin")).json()
    assert set(before["provider_summaries"][root["uuid"]]["resources"]) == {"VCPU"}
    response = await client.get(AC, version="1.15", token="admin")
    assert response.headers["cache-control"] == "no-cache" and "last-modified" in response.headers


async def test_max_allocation_candidates_caps_combinatorial_blow_up(world):
    client, root = world
    query = ("/allocation_candidates?resources=VCPU:1&resources1=SRIOV_NET_VF:1&resources2=SRIOV_NET_VF:1"
             "&group_policy=isolate")
    body = (await client.get(query, token="admin")).json()
    assert len(body["allocation_requests"]) == 5      # 8 * 7 = 56 without the cap
    body = (await client.get(query + "&limit=3", token="admin")).json()
    assert len(body["allocation_requests"]) == 3
    pairs = {tuple(c["mappings"]["1"] + c["mappings"]["2"]) for c in body["allocation_requests"]}
    assert len(pairs) == 3 and all(a != b for a, b in pairs)


async def _wide_world(tmp_path, overrides: dict, hosts: int = 1, children: int = 8, vfs: int = 1):
    """``hosts`` roots with ``children`` child providers each holding ``vfs`` SRIOV_NET_VF."""
    conf = Config.load(state_dir=tmp_path, overrides={"placement": {"auth_strategy": "noauth2", **overrides}})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    svc.prepare()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p")
    client = AdminClient(http)
    roots = []
    for h in range(hosts):
        root = await client.provider(f"wide-{h}", inventory=compute_inventory())
        for i in range(children):
            await client.provider(f"wide-{h}-pf{i}", parent=root["uuid"], inventory={"SRIOV_NET_VF": {"total": vfs}})
        roots.append(root["uuid"])
    return svc, http, client, roots


def _groups(count: int, policy: str = "isolate") -> str:
    return ("/allocation_candidates?" + "&".join(f"resources{g}=SRIOV_NET_VF:1" for g in range(1, count + 1))
            + f"&group_policy={policy}")


async def test_no_candidate_cap_by_default_as_upstream(tmp_path):
    """Upstream's default max_allocation_candidates is -1: every candidate (8 * 7 * 6 = 336 here)."""
    svc, http, client, _ = await _wide_world(tmp_path, {})
    try:
        body = (await client.get(_groups(3))).json()
        assert len(body["allocation_requests"]) == 336
        pairs = {tuple(c["mappings"][str(g)][0] for g in (1, 2, 3)) for c in body["allocation_requests"]}
        assert len(pairs) == 336 and all(len(set(p)) == 3 for p in pairs)
    finally:
        await http.aclose()
        svc.db.close()


async def test_generation_strategies_spread_a_capped_result_differently(tmp_path):
    """depth-first fills the cap from the first tree; breadth-first takes one candidate per tree per round."""
    first, second = tmp_path / "depth", tmp_path / "breadth"
    first.mkdir()
    second.mkdir()
    for state, strategy in ((first, "depth-first"), (second, "breadth-first")):
        svc, http, client, roots = await _wide_world(state, {"max_allocation_candidates": "4",
                                                             "allocation_candidates_generation_strategy": strategy},
                                                     hosts=2, children=3)
        try:
            body = (await client.get(_groups(2))).json()
            summaries = body["provider_summaries"]
            used_roots = [summaries[c["mappings"]["1"][0]]["root_provider_uuid"] for c in body["allocation_requests"]]
            assert len(used_roots) == 4
            if strategy == "depth-first":
                assert used_roots == [roots[0]] * 4          # 3 * 2 = 6 candidates in the first tree
            else:
                assert used_roots == [roots[0], roots[1]] * 2
        finally:
            await http.aclose()
            svc.db.close()


async def test_randomized_candidates_sample_every_tree(tmp_path):
    """[placement] randomize_allocation_candidates: with a limit, a random sample of all candidates (as
    upstream), so candidates of the later trees turn up too; summaries follow the sample."""
    svc, http, client, roots = await _wide_world(tmp_path, {"randomize_allocation_candidates": "true"},
                                                 hosts=4, children=0)
    try:
        seen = set()
        for _ in range(20):
            body = (await client.get("/allocation_candidates?resources=VCPU:1&limit=1")).json()
            (picked,) = [next(iter(c["allocations"])) for c in body["allocation_requests"]]
            assert list(body["provider_summaries"]) == [picked]
            seen.add(picked)
        assert len(seen) > 1 and seen <= set(roots)
        body = (await client.get("/allocation_candidates?resources=VCPU:1")).json()
        assert sorted(next(iter(c["allocations"])) for c in body["allocation_requests"]) == sorted(roots)
    finally:
        await http.aclose()
        svc.db.close()


def test_unknown_generation_strategy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="generation_strategy = 'sideways': must be one of depth-first, breadth-first"):
        Config.load(state_dir=tmp_path, overrides={"placement": {
            "auth_strategy": "noauth2", "allocation_candidates_generation_strategy": "sideways"}})


async def test_combination_guard_stops_a_blow_up_and_says_so(tmp_path, caplog):
    """8 children asked for by 6 isolated groups: 20,160 candidates (upstream's example). With a small
    max_candidate_combinations the search stops early, returns what it found, and logs a warning."""
    svc, http, client, _ = await _wide_world(tmp_path, {"max_candidate_combinations": "500"})
    try:
        with caplog.at_level("WARNING", logger="kilonova.placement.objects.candidates"):
            body = (await client.get(_groups(6))).json()
        found = body["allocation_requests"]
        assert 0 < len(found) < 500
        assert all(len({c["mappings"][str(g)][0] for g in range(1, 7)}) == 6 for c in found)
        assert any("max_candidate_combinations" in record.getMessage() for record in caplog.records)
        # an everyday query stays far below the guard
        assert len((await client.get("/allocation_candidates?resources=VCPU:1")).json()["allocation_requests"]) == 1
    finally:
        await http.aclose()
        svc.db.close()


@pytest.mark.parametrize("query, status, code", [
    ("/allocation_candidates", 400, None),
    ("/allocation_candidates?resources=VCPU:0", 400, None),
    ("/allocation_candidates?resources=VCPU:-1", 400, None),
    ("/allocation_candidates?resources=NOPE:1", 400, None),
    ("/allocation_candidates?resources=VCPU:1&required=CUSTOM_NOPE", 400, None),
    ("/allocation_candidates?resources=VCPU:1&limit=0", 400, None),
    ("/allocation_candidates?resources=VCPU:1&in_tree=not-a-uuid", 400, "placement.undefined_code"),
    ("/allocation_candidates?resources1=VCPU:1&resources2=VCPU:1", 400, "placement.undefined_code"),
    ("/allocation_candidates?resources=VCPU:1&group_policy=sometimes", 400, None),
    ("/allocation_candidates?resources=VCPU:1&same_subtree=_X", 400, "placement.query.bad_value"),
])
async def test_bad_candidate_queries(world, query, status, code):
    client, _ = world
    response = await client.get(query, token="admin")
    assert response.status_code == status, response.text
    if code:
        assert error_of(response)["code"] == code


async def test_routes_absent_below_their_version(world):
    client, root = world
    assert (await client.get("/usages?project_id=p", version="1.8", token="admin")).status_code == 404
    response = await client.post("/reshaper", json={}, version="1.29", token="admin")
    assert response.status_code == 404
    assert (await client.get("/resource_classes", version="1.1", token="admin")).status_code == 404
    consumer = str(uuid.uuid4())
    body = {"allocations": {root["uuid"]: {"resources": {"VCPU": 1}}}, "project_id": "p", "user_id": "u",
            "consumer_generation": None, "consumer_type": "INSTANCE"}
    response = await client.put(f"/allocations/{consumer}", json=body, version="1.37", token="admin")
    assert response.status_code == 400
    response = await client.put(f"/allocations/{consumer}", json=body, version="1.38", token="admin")
    assert response.status_code == 204
    response = await client.request("OPTIONS", "/resource_providers", token="admin")
    assert response.status_code == 405
