"""GET /allocation_candidates on the scenarios of upstream's gabbi suites (granular.yaml,
shared-resources.yaml, granular-same-subtree.yaml, allocation-candidates-root-required.yaml), rewritten
here, plus the regressions an audit found (in_tree with sharing providers, summed amounts over max_unit)."""
from __future__ import annotations

import uuid

import pytest

from tests.unit.test_placement_api import (client, compute_inventory, detail_of, error_of, message_of,  # noqa: F401
                                           service)

AGG = "5f1b3c1e-9d4e-4a4f-8f4b-0c2b9a7e6d10"


def picks(body) -> list[dict]:
    """Each candidate as {provider uuid: {class: amount}}."""
    return [{rp: alloc["resources"] for rp, alloc in r["allocations"].items()}
            for r in body["allocation_requests"]]


async def test_in_tree_leaves_out_sharing_providers_of_other_trees(client):
    host = await client.provider("cn", inventory={"VCPU": {"total": 4}}, aggregates=[AGG])
    await client.provider("nfs", inventory={"DISK_GB": {"total": 100}}, aggregates=[AGG],
                          traits=["MISC_SHARES_VIA_AGGREGATE"])
    query = "/allocation_candidates?resources=VCPU:1,DISK_GB:10"
    assert len((await client.get(query)).json()["allocation_requests"]) == 1
    assert (await client.get(f"{query}&in_tree={host['uuid']}")).json()["allocation_requests"] == []
    # a granular group in the tree still combines with an unrestricted group using the sharing provider
    body = (await client.get(f"/allocation_candidates?resources1=VCPU:1&in_tree1={host['uuid']}"
                             f"&resources2=DISK_GB:10&group_policy=none")).json()
    assert len(body["allocation_requests"]) == 1


async def test_in_tree_of_a_granular_group_and_of_a_resourceless_group(client):
    """As upstream 16.0.0 answers (checked side by side): a granular group's in_tree may name a sharing
    provider, which still serves the trees anchored to it; a resourceless group's in_tree only has to
    name an existing provider, and such a group matches only through required traits or member_of."""
    host = await client.provider("cn", inventory={"VCPU": {"total": 4}}, aggregates=[AGG], traits=["CUSTOM_A"])
    nic = await client.provider("nic", inventory={"SRIOV_NET_VF": {"total": 4}}, parent=host["uuid"],
                                traits=["CUSTOM_B"])
    other = await client.provider("cn2", inventory={"VCPU": {"total": 4}}, traits=["CUSTOM_B"])
    nfs = await client.provider("nfs", inventory={"DISK_GB": {"total": 100}}, aggregates=[AGG],
                                traits=["MISC_SHARES_VIA_AGGREGATE"])

    async def mapped(query):
        body = (await client.get(f"/allocation_candidates?{query}&group_policy=none")).json()
        return sorted(tuple(sorted((s, tuple(rps)) for s, rps in r["mappings"].items()))
                      for r in body["allocation_requests"])
    assert await mapped(f"resources=VCPU:1&resources1=DISK_GB:10&in_tree1={nfs['uuid']}") == [
        (("", (host["uuid"],)), ("1", (nfs["uuid"],)))]
    assert await mapped(f"resources=VCPU:1&resources1=DISK_GB:10&in_tree1={host['uuid']}") == []
    # in_tree of a resourceless group naming another tree changes nothing
    everywhere = sorted([(("", (host["uuid"],)), ("1", (nic["uuid"],))),
                         (("", (other["uuid"],)), ("1", (other["uuid"],)))])
    assert await mapped("resources=VCPU:1&required1=CUSTOM_B&same_subtree=1") == everywhere
    assert await mapped(f"resources=VCPU:1&required1=CUSTOM_B&in_tree1={other['uuid']}&same_subtree=1") == everywhere
    assert await mapped(f"resources=VCPU:1&required1=CUSTOM_B&in_tree1={uuid.uuid4()}&same_subtree=1") == []
    # without required traits or member_of a resourceless group matches nothing
    for query in (f"resources=VCPU:1&in_tree1={host['uuid']}&same_subtree=1",
                  "resources=VCPU:1&required1=!CUSTOM_A&same_subtree=1",
                  f"resources=VCPU:1&member_of1=!{AGG}&same_subtree=1"):
        assert await mapped(query) == [], query


async def test_member_of_narrows_the_sharing_providers_of_the_unsuffixed_group(client):
    """As upstream 16.0.0 answers (checked side by side): the host passes member_of through its own
    aggregates, but a sharing provider anchored to it contributes only when it is in them itself."""
    agg_a, agg_b, agg_c = (str(uuid.uuid4()) for _ in range(3))
    host = await client.provider("cn", inventory={"VCPU": {"total": 4}}, aggregates=[agg_a, agg_b])
    shares = {}
    for name, aggs in (("nfs-a", [agg_a]), ("nfs-bc", [agg_b, agg_c])):
        shares[name] = (await client.provider(name, inventory={"DISK_GB": {"total": 100}}, aggregates=aggs,
                                              traits=["MISC_SHARES_VIA_AGGREGATE"]))["uuid"]

    async def disks(member_of):
        body = (await client.get(f"/allocation_candidates?resources=VCPU:1,DISK_GB:10&member_of={member_of}")).json()
        assert all(host["uuid"] in p for p in picks(body))
        return sorted(rp for p in picks(body) for rp, res in p.items() if "DISK_GB" in res)
    assert await disks(agg_a) == [shares["nfs-a"]]
    assert await disks(agg_b) == [shares["nfs-bc"]]
    assert await disks(f"in:{agg_a},{agg_c}") == sorted(shares.values())
    assert await disks(f"!{agg_c}") == [shares["nfs-a"]]
    assert await disks(agg_c) == []


async def test_groups_summed_on_one_provider_respect_max_unit(client):
    await client.provider("gpus", inventory={"VGPU": {"total": 8, "max_unit": 4}})
    body = (await client.get("/allocation_candidates?resources1=VGPU:3&resources2=VGPU:3"
                             "&group_policy=none")).json()
    assert body["allocation_requests"] == []
    body = (await client.get("/allocation_candidates?resources1=VGPU:2&resources2=VGPU:2"
                             "&group_policy=none")).json()
    assert [list(p.values()) for p in picks(body)] == [[{"VGPU": 4}]]


U1 = "9f0e8a4c-1b2d-4c3e-8f5a-6b7c8d9e0f11"
BAD = "Invalid query string parameters: "


@pytest.mark.parametrize("query, version, code, detail", [
    ("resources=VCPU:1&root_required=HW_CPU_X86_AVX2&root_required=!CUSTOM_X", "1.35",
     "placement.query.duplicate_key", "Query parameter 'root_required' may be specified only once."),
    ("resources=VCPU:1&root_required=in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE", "1.39", "placement.undefined_code",
     BAD + "The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since microversion 1.39. "
           "Got: in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE"),
    ("resources=VCPU:1&root_required=HW_CPU_X86_AVX2,!HW_CPU_X86_AVX2", "1.35", "placement.query.bad_value",
     "Conflicting required and forbidden traits found in root_required: HW_CPU_X86_AVX2"),
    ("resources=VCPU:1&required=in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE", "1.38", "placement.undefined_code",
     BAD + "The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since microversion 1.39. "
           "Got: in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE"),
    ("resources=VCPU:1&required=in:HW_CPU_X86_AVX2,!HW_CPU_X86_SSE", "1.39", "placement.undefined_code",
     BAD + "The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' does not support forbidden traits. "
           "Got: in:HW_CPU_X86_AVX2,!HW_CPU_X86_SSE"),
    ("resources=VCPU:1&required=HW_CPU_X86_AVX2,", "1.39", "placement.undefined_code",
     BAD + "Expected 'required' parameter value of the form: HW_CPU_X86_VMX,!CUSTOM_MAGIC. "
           "Got an empty trait in: HW_CPU_X86_AVX2,"),
    ("resources=VCPU:1&required=!HW_CPU_X86_AVX2", "1.21", "placement.undefined_code",
     BAD + "Expected 'required' parameter value of the form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: !HW_CPU_X86_AVX2"),
    ("resources=VCPU:1&required=HW_CPU_X86_AVX2&required=!HW_CPU_X86_AVX2", "1.39", "placement.undefined_code",
     "Conflicting required and forbidden traits found in the following traits keys: required: (HW_CPU_X86_AVX2)"),
    (f"resources=VCPU:1&member_of=!{U1}", "1.31", "placement.undefined_code",
     "Forbidden member_of parameters are not supported in the specified microversion"),
    (f"resources=VCPU:1&member_of={U1}&member_of={U1}", "1.23", "placement.undefined_code",
     "Multiple member_of parameters are not supported"),
    (f"resources=VCPU:1&member_of={U1},{U1}", "1.39", "placement.undefined_code",
     "Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' keyword using the valid "
     f"microversion. Got: {U1},{U1}"),
    ("resources=VCPU:1&in_tree=nope", "1.31", "placement.undefined_code",
     BAD + "Expected 'in_tree' parameter to be a format of uuid. Got: nope"),
    ("resources1=VCPU:1&required=HW_CPU_X86_AVX2", "1.35", "placement.undefined_code",
     "All traits parameters must be associated with resources.  Found the following orphaned traits keys: "
     "required"),
    (f"resources1=VCPU:1&member_of2={U1}&group_policy=none", "1.35", "placement.undefined_code",
     "All member_of parameters must be associated with resources. Found the following orphaned member_of "
     "keys: member_of2"),
    (f"resources1=VCPU:1&in_tree2={U1}&group_policy=none", "1.35", "placement.undefined_code",
     "All request groups must specify resources."),
    ("resources1=VCPU:1&required_X=HW_CPU_X86_AVX2", "1.36", "placement.query.bad_value",
     "Resourceless suffixed group request should be specified in `same_subtree` query param: bad group(s) - "
     "['_X']."),
    ("resources=VCPU:1&resources_A=VCPU:1&same_subtree=_A,_B", "1.36", "placement.query.bad_value",
     "Real suffixes should be specified in `same_subtree`: ['_B'] not found in ['', '_A']."),
    ("resources_A=VCPU:1&same_subtree=_A,", "1.36", "placement.query.bad_value",
     "Empty string (unsuffixed group) can not be specified in `same_subtree` "),
    ("resources=VCPU:1&limit=0", "1.16", "placement.undefined_code",
     BAD + "'0' does not match '^[1-9][0-9]*$'"),
    # before 1.25 a missing 'resources' is named before the unknown key
    ("resources1=VCPU:1", "1.21", None, BAD + "'resources' is a required property"),
])
async def test_candidate_query_errors_as_upstream(client, query, version, code, detail):
    response = await client.get(f"/allocation_candidates?{query}", version=version)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == code if version >= "1.23" else True
    assert message_of(response) == detail


async def test_first_limit_and_group_policy_count(client):
    await client.provider("a", inventory={"VCPU": {"total": 4}})
    await client.provider("b", inventory={"VCPU": {"total": 4}})
    body = (await client.get("/allocation_candidates?resources=VCPU:1&limit=1&limit=2")).json()
    assert len(body["allocation_requests"]) == 1
    # group_policy: the first value counts (isolate: the two groups can never share a lone provider)
    query = "/allocation_candidates?resources1=VCPU:1&resources2=VCPU:1"
    assert (await client.get(f"{query}&group_policy=isolate&group_policy=none")).json()[
        "allocation_requests"] == []
    assert len((await client.get(f"{query}&group_policy=none&group_policy=isolate")).json()[
        "allocation_requests"]) == 2


# ---------------------------------------------------------------- upstream's NUMA and network world

async def _numa_network(client) -> dict[str, str]:
    """The provider world of upstream's NUMANetworkFixture (rebuilt here): name -> uuid.

    ss1 (sharing DISK_GB 2000, aggA); cn1 (MULTI_ATTACH, aggA, no inventory) with numa0 (NUMA_ROOT;
    VCPU 4, 2 used; MEMORY_MB 2048 min 512 step 256; children fpga0 CUSTOM_FPGA 1, pgpu0 VGPU 8) and
    numa1 (NUMA_ROOT, FOO; VCPU 4; MEMORY_MB 2048 min 256 max 1024; children fpga1_0/fpga1_1), an sriov
    agent (esn1/esn2 bandwidth) and an ovs agent (br_int); cn2 (FOO, aggA; VCPU 8, 3 used; MEMORY_MB 2048
    min 1024 step 128; DISK_GB 1000) with nic1 (pf1_1 NET1 VF 4, pf1_2 NET2 VF 4), nic2 (pf2_1..pf2_4
    alternating NET1/NET2, VF 2 each) and nic3 (pf3_1 NET1 VF 8), each nic with CUSTOM_HW_NIC_ROOT."""
    for name in ("CUSTOM_FPGA", "CUSTOM_VF"):
        await client.post("/resource_classes", json={"name": name})
    ids: dict[str, str] = {}

    def inv(total, **extra):
        return {"total": total, "max_unit": total, **extra}

    async def make(name, parent=None, inventory=None, traits=(), aggregates=None):
        rp = await client.provider(name, parent=ids.get(parent), inventory=inventory, traits=list(traits) or None,
                                   aggregates=aggregates)
        ids[name] = rp["uuid"]

    agg = [AGG]
    await make("ss1", inventory={"DISK_GB": inv(2000)}, traits=["MISC_SHARES_VIA_AGGREGATE"], aggregates=agg)
    await make("cn1", traits=["COMPUTE_VOLUME_MULTI_ATTACH"], aggregates=agg)
    await make("numa0", "cn1", {"VCPU": inv(4), "MEMORY_MB": inv(2048, min_unit=512, step_size=256)},
               ["HW_NUMA_ROOT"])
    await make("numa1", "cn1", {"VCPU": inv(4), "MEMORY_MB": inv(2048, min_unit=256, max_unit=1024)},
               ["HW_NUMA_ROOT", "CUSTOM_FOO"])
    await make("fpga0", "numa0", {"CUSTOM_FPGA": inv(1)})
    await make("pgpu0", "numa0", {"VGPU": inv(8)})
    await make("fpga1_0", "numa1", {"CUSTOM_FPGA": inv(1)})
    await make("fpga1_1", "numa1", {"CUSTOM_FPGA": inv(1)})
    await make("sriov_agent", "cn1", traits=["CUSTOM_VNIC_TYPE_DIRECT"])
    for i in (1, 2):
        await make(f"esn{i}", "sriov_agent", {"NET_BW_EGR_KILOBIT_PER_SEC": inv(10000 * i)}, [f"CUSTOM_PHYSNET{i}"])
    await make("ovs_agent", "cn1", traits=["CUSTOM_VNIC_TYPE_NORMAL"])
    await make("br_int", "ovs_agent", {"NET_BW_EGR_KILOBIT_PER_SEC": inv(1000)}, ["CUSTOM_PHYSNET0"])
    await make("cn2", inventory={"VCPU": inv(8), "MEMORY_MB": inv(2048, min_unit=1024, step_size=128),
                                 "DISK_GB": inv(1000)}, traits=["CUSTOM_FOO"], aggregates=agg)
    for i in (1, 2, 3):
        await make(f"nic{i}", "cn2", traits=["CUSTOM_HW_NIC_ROOT"])
    for i in (1, 2):
        await make(f"pf1_{i}", "nic1", {"CUSTOM_VF": inv(4)}, [f"CUSTOM_PHYSNET{i}"])
    for i in range(4):
        await make(f"pf2_{i + 1}", "nic2", {"CUSTOM_VF": inv(2)}, [f"CUSTOM_PHYSNET{i % 2 + 1}"])
    await make("pf3_1", "nic3", {"CUSTOM_VF": inv(8)}, ["CUSTOM_PHYSNET1"])
    for name, vcpus in (("numa0", 2), ("cn2", 3)):
        response = await client.put(f"/allocations/{uuid.uuid4()}", json={
            "allocations": {ids[name]: {"resources": {"VCPU": vcpus}}}, "project_id": "p", "user_id": "u",
            "consumer_generation": None, "consumer_type": "INSTANCE"})
        assert response.status_code == 204, response.text
    return ids


def _named(body, ids: dict[str, str]) -> list[dict]:
    """Candidates as sorted lists of (provider name, class, amount), sorted."""
    names = {uuid_: name for name, uuid_ in ids.items()}
    return sorted(sorted((names[rp], rc, n) for rp, res in candidate.items() for rc, n in res.items())
                  for candidate in picks(body))


# (query, version, expected candidates as lists of (provider, class, amount))
NUMA_CASES = [
    # allocation-candidates-root-required.yaml
    ("resources=VCPU:1&root_required=HW_NUMA_ROOT", "1.35", []),
    ("resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&root_required=MISC_SHARES_VIA_AGGREGATE", "1.35", []),
    ("resources=VCPU:1,MEMORY_MB:1024&root_required=COMPUTE_VOLUME_MULTI_ATTACH", "1.35", [
        [("numa0", "MEMORY_MB", 1024), ("numa0", "VCPU", 1)],
        [("numa0", "MEMORY_MB", 1024), ("numa1", "VCPU", 1)],
        [("numa0", "VCPU", 1), ("numa1", "MEMORY_MB", 1024)],
        [("numa1", "MEMORY_MB", 1024), ("numa1", "VCPU", 1)]]),
    ("resources1=VCPU:1&resources2=MEMORY_MB:1024&group_policy=isolate"
     "&root_required=COMPUTE_VOLUME_MULTI_ATTACH", "1.35", [
        [("numa0", "MEMORY_MB", 1024), ("numa1", "VCPU", 1)],
        [("numa0", "VCPU", 1), ("numa1", "MEMORY_MB", 1024)]]),
    ("resources1=VCPU:1,MEMORY_MB:1024&resources2=DISK_GB:100&group_policy=none"
     "&root_required=COMPUTE_VOLUME_MULTI_ATTACH", "1.35", [
        [("numa0", "MEMORY_MB", 1024), ("numa0", "VCPU", 1), ("ss1", "DISK_GB", 100)],
        [("numa1", "MEMORY_MB", 1024), ("numa1", "VCPU", 1), ("ss1", "DISK_GB", 100)]]),
    ("resources=VCPU:1,DISK_GB:100&required=CUSTOM_FOO", "1.35", [
        [("cn2", "DISK_GB", 100), ("cn2", "VCPU", 1)],
        [("cn2", "VCPU", 1), ("ss1", "DISK_GB", 100)],
        [("numa1", "VCPU", 1), ("ss1", "DISK_GB", 100)]]),
    ("resources=VCPU:1,DISK_GB:100&root_required=CUSTOM_FOO", "1.35", [
        [("cn2", "DISK_GB", 100), ("cn2", "VCPU", 1)],
        [("cn2", "VCPU", 1), ("ss1", "DISK_GB", 100)]]),
    ("resources=VCPU:3&root_required=!HW_NUMA_ROOT", "1.35", [[("cn2", "VCPU", 3)], [("numa1", "VCPU", 3)]]),
    ("resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&root_required=!CUSTOM_FOO,!COMPUTE_VOLUME_MULTI_ATTACH",
     "1.35", []),
    ("resources=VCPU:1&required=CUSTOM_FOO&root_required=CUSTOM_FOO", "1.35", [[("cn2", "VCPU", 1)]]),
    ("resources1=VCPU:1&required1=CUSTOM_FOO&root_required=!CUSTOM_FOO", "1.35", [[("numa1", "VCPU", 1)]]),
    ("resources1=VCPU:1&required1=!CUSTOM_FOO&root_required=CUSTOM_FOO", "1.35", []),
    # granular-same-subtree.yaml
    ("resources_COMPUTE=VCPU:1&resources_ACCEL=CUSTOM_FPGA:1&same_subtree=_COMPUTE,_ACCEL&group_policy=none",
     "1.36", [[("fpga0", "CUSTOM_FPGA", 1), ("numa0", "VCPU", 1)],
              [("fpga1_0", "CUSTOM_FPGA", 1), ("numa1", "VCPU", 1)],
              [("fpga1_1", "CUSTOM_FPGA", 1), ("numa1", "VCPU", 1)]]),
    ("resources_COMPUTE1=VCPU:1&resources_COMPUTE2=MEMORY_MB:1024&same_subtree=_COMPUTE1,_COMPUTE2"
     "&group_policy=isolate", "1.36", []),
    ("resources=VCPU:1&required_NIC=CUSTOM_HW_NIC_ROOT&resources_PORT1=CUSTOM_VF:4&required_PORT1=CUSTOM_PHYSNET1"
     "&resources_PORT2=CUSTOM_VF:4&required_PORT2=CUSTOM_PHYSNET2&same_subtree=_NIC,_PORT1,_PORT2&group_policy=none",
     "1.36", [[("cn2", "VCPU", 1), ("pf1_1", "CUSTOM_VF", 4), ("pf1_2", "CUSTOM_VF", 4)]]),
    ("resources_PORT1=CUSTOM_VF:8&required_PORT2=CUSTOM_PHYSNET1&same_subtree=_PORT1,_PORT2&group_policy=none",
     "1.36", [[("pf3_1", "CUSTOM_VF", 8)]]),
    ("resources_COMPUTE1=VCPU:1&required_COMPUTE2=CUSTOM_FOO&required_COMPUTE3=HW_NUMA_ROOT"
     "&same_subtree=_COMPUTE1,_COMPUTE2,_COMPUTE3&group_policy=none", "1.36", [[("numa1", "VCPU", 1)]]),
]

NUMA_COUNTS = [
    ("resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&root_required=!MISC_SHARES_VIA_AGGREGATE", 6),
    ("resources=VCPU:1&required_NIC=CUSTOM_HW_NIC_ROOT&resources_PORT1=CUSTOM_VF:2&required_PORT1=CUSTOM_PHYSNET1"
     "&resources_PORT2=CUSTOM_VF:2&required_PORT2=CUSTOM_PHYSNET2&same_subtree=_NIC,_PORT1,_PORT2"
     "&group_policy=isolate", 5),
    ("resources=VCPU:1&required_NIC=CUSTOM_HW_NIC_ROOT&resources_PORT1=CUSTOM_VF:2&required_PORT1=CUSTOM_PHYSNET1"
     "&resources_PORT2A=CUSTOM_VF:1&required_PORT2A=CUSTOM_PHYSNET2&resources_PORT2B=CUSTOM_VF:1"
     "&required_PORT2B=CUSTOM_PHYSNET2&same_subtree=_NIC,_PORT1,_PORT2A,_PORT2B&group_policy=none", 9),
    ("resources=VCPU:1&required_NIC=CUSTOM_HW_NIC_ROOT&resources_PORT1=CUSTOM_VF:2&required_PORT1=CUSTOM_PHYSNET1"
     "&resources_PORT2A=CUSTOM_VF:1&required_PORT2A=CUSTOM_PHYSNET2&resources_PORT2B=CUSTOM_VF:1"
     "&required_PORT2B=CUSTOM_PHYSNET2&same_subtree=_NIC,_PORT1,_PORT2A,_PORT2B&group_policy=isolate", 4),
    ("resources_COMPUTE=VCPU:1&resources_ACCEL=CUSTOM_FPGA:1&group_policy=none", 6),
]


async def test_numa_network_scenarios_of_upstream(client):
    ids = await _numa_network(client)
    wrong = []
    for query, version, expected in NUMA_CASES:
        response = await client.get(f"/allocation_candidates?{query}", version=version)
        assert response.status_code == 200, (query, response.text)
        got = _named(response.json(), ids)
        if got != sorted(sorted(c) for c in expected):
            wrong.append((query, got))
    for query, count in NUMA_COUNTS:
        got = len((await client.get(f"/allocation_candidates?{query}", version="1.36")).json()["allocation_requests"])
        if got != count:
            wrong.append((query, got, count))
    assert wrong == []


async def test_shared_resources_scenario_of_upstream(client):
    """shared-resources.yaml: a provider shares only once it has both the aggregate and the trait."""
    await client.put("/resource_classes/CUSTOM_MAGIC")
    cn1 = await client.provider("cn1", inventory={"VCPU": {"total": 20}, "MEMORY_MB": {"total": 100000}})
    await client.provider("cn2", inventory={"VCPU": {"total": 20}, "MEMORY_MB": {"total": 100000},
                                            "DISK_GB": {"total": 100000}})
    share = await client.provider("custom magic share", inventory={"CUSTOM_MAGIC": {"total": 5}})
    query = "resources=VCPU:1,CUSTOM_MAGIC:1"

    async def seen():
        listed = (await client.get(f"/resource_providers?{query}")).json()["resource_providers"]
        body = (await client.get(f"/allocation_candidates?{query}")).json()
        return len(listed), len(body["allocation_requests"]), len(body["provider_summaries"])

    assert await seen() == (0, 0, 0)
    for rp in (share, cn1):
        response = await client.put(f"/resource_providers/{rp['uuid']}/aggregates", json={
            "aggregates": [AGG], "resource_provider_generation": 1})
        assert response.status_code == 200, response.text
    assert await seen() == (0, 0, 0)   # no MISC_SHARES_VIA_AGGREGATE yet
    response = await client.put(f"/resource_providers/{share['uuid']}/traits", json={
        "traits": ["MISC_SHARES_VIA_AGGREGATE"], "resource_provider_generation": 2})
    assert response.status_code == 200, response.text
    # the provider list wants one provider with everything; candidates combine cn1 with the share
    assert await seen() == (0, 1, 2)


# ---------------------------------------------------------------- upstream's granular world

AGG_A, AGG_B, AGG_C = (f"{n}a0c0e1e-5d1f-4b7a-9c2e-3f4a5b6c7d8e" for n in "abc")


async def _granular_world(client) -> dict[str, str]:
    """The providers of upstream's GranularFixture (rebuilt here): name -> uuid.

    cn_left (aggA; VCPU 8, MEMORY_MB 4096, DISK_GB 500, VGPU 8, SRIOV_NET_VF 8, CUSTOM_NET_MBPS 4000;
    AVX, AVX2, DXVA, DCB_PFC, CUSTOM_FOO); cn_middle (aggA, aggB; VCPU 8, MEMORY_MB 4096, SRIOV_NET_VF 8,
    CUSTOM_NET_MBPS 4000; AVX, AVX2, SSE, NIC_ACCEL_TLS); cn_right (aggB, aggC; VCPU 8, MEMORY_MB 4096,
    DISK_GB 500, VGPU 8 max_unit 2; MMX, DXVA, CUSTOM_DISK_SSD); sharing shr_disk_1 (aggA; DISK_GB 1000;
    SSD), shr_disk_2 (aggA, aggB; DISK_GB 1000), shr_net (aggC; SRIOV_NET_VF 16, CUSTOM_NET_MBPS 40000)."""
    for name in ("CUSTOM_NET_MBPS",):
        await client.post("/resource_classes", json={"name": name})
    share = "MISC_SHARES_VIA_AGGREGATE"
    worlds = {
        "cn_left": ({"VCPU": 8, "MEMORY_MB": 4096, "DISK_GB": 500, "VGPU": 8, "SRIOV_NET_VF": 8,
                     "CUSTOM_NET_MBPS": 4000},
                    ["HW_CPU_X86_AVX", "HW_CPU_X86_AVX2", "HW_GPU_API_DXVA", "HW_NIC_DCB_PFC", "CUSTOM_FOO"], [AGG_A]),
        "cn_middle": ({"VCPU": 8, "MEMORY_MB": 4096, "SRIOV_NET_VF": 8, "CUSTOM_NET_MBPS": 4000},
                      ["HW_CPU_X86_AVX", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE", "HW_NIC_ACCEL_TLS"], [AGG_A, AGG_B]),
        "cn_right": ({"VCPU": 8, "MEMORY_MB": 4096, "DISK_GB": 500, "VGPU": (8, 2)},
                     ["HW_CPU_X86_MMX", "HW_GPU_API_DXVA", "CUSTOM_DISK_SSD"], [AGG_B, AGG_C]),
        "shr_disk_1": ({"DISK_GB": 1000}, [share, "CUSTOM_DISK_SSD"], [AGG_A]),
        "shr_disk_2": ({"DISK_GB": 1000}, [share], [AGG_A, AGG_B]),
        "shr_net": ({"SRIOV_NET_VF": 16, "CUSTOM_NET_MBPS": 40000}, [share], [AGG_C]),
    }
    ids = {}
    for name, (inventory, traits, aggregates) in worlds.items():
        records = {rc: ({"total": v[0], "max_unit": v[1]} if isinstance(v, tuple) else {"total": v})
                   for rc, v in inventory.items()}
        ids[name] = (await client.provider(name, inventory=records, traits=traits, aggregates=aggregates))["uuid"]
    return ids


# (query at 1.25, candidates, provider summaries)
GRANULAR_CASES = [
    ("resources1=VCPU:1&resources2=MEMORY_MB:1024&group_policy=none", 3, 3),
    ("resources1=VCPU:1&resources2=MEMORY_MB:1024&group_policy=isolate", 0, 0),
    ("resources1=VCPU:1&resources2=MEMORY_MB:1024&group_policy=isolate&group_policy=none", 0, 0),
    ("resources=VCPU:3,MEMORY_MB:512&resources1=VCPU:1,MEMORY_MB:1024&resources2=VCPU:2&group_policy=none", 3, 3),
    ("resources=VCPU:1&resources1=MEMORY_MB:2048", 3, 3),
    ("resources1=VCPU:1,MEMORY_MB:1024&resources2=DISK_GB:100&group_policy=isolate", 5, 5),
    ("resources1=VCPU:1,MEMORY_MB:1024&resources2=DISK_GB:100&group_policy=none", 7, 5),
    ("resources1=DISK_GB:800", 2, 2),
    ("resources=DISK_GB:800", 2, 2),
    ("resources1=VCPU:1,MEMORY_MB:1024&resources2=DISK_GB:100&required2=CUSTOM_DISK_SSD&group_policy=isolate",
     2, 3),
    ("resources1=VCPU:1&resources2=DISK_GB:100&required2=!CUSTOM_DISK_SSD&group_policy=none", 4, 4),
    (f"resources1=VCPU:1&resources2=DISK_GB:100&member_of2={AGG_C}&group_policy=none", 1, 1),
    (f"resources1=VCPU:1&required1=!HW_CPU_X86_SSE&resources2=DISK_GB:100&required2=CUSTOM_DISK_SSD"
     f"&member_of2=in:{AGG_A},{AGG_C}&group_policy=none", 2, 3),
    (f"resources1=VCPU:1&resources2=DISK_GB:100&member_of2={AGG_A}&member_of2=in:{AGG_B},{AGG_C}"
     f"&group_policy=isolate", 3, 4),
    ("resources1=VCPU:1&resources2=VGPU:1&required2=HW_GPU_API_DXVA&resources3=MEMORY_MB:1024"
     "&resources4=DISK_GB:100&required4=CUSTOM_DISK_SSD&resources5=DISK_GB:50&required5=!CUSTOM_DISK_SSD"
     "&resources6=SRIOV_NET_VF:1,CUSTOM_NET_MBPS:1000&resources7=SRIOV_NET_VF:2,CUSTOM_NET_MBPS:2000"
     "&group_policy=none", 3, None),
]


async def test_granular_scenarios_of_upstream(client):
    ids = await _granular_world(client)
    wrong = []
    for query, count, summaries in GRANULAR_CASES:
        response = await client.get(f"/allocation_candidates?{query}", version="1.25")
        assert response.status_code == 200, (query, response.text)
        body = response.json()
        got = (len(body["allocation_requests"]), len(body["provider_summaries"]) if summaries is not None else None)
        if got != (count, summaries):
            wrong.append((query, got))
    assert wrong == []
    # summed groups on one provider: cn_* give VCPU 6 and MEMORY_MB 1536 each
    body = (await client.get("/allocation_candidates?resources=VCPU:3,MEMORY_MB:512&resources1=VCPU:1,MEMORY_MB:1024"
                             "&resources2=VCPU:2&group_policy=none", version="1.25")).json()
    assert [list(p.values()) for p in picks(body)] == [[{"MEMORY_MB": 1536, "VCPU": 6}]] * 3
    # cn_right's VGPU max_unit of 2 holds for the sum of groups too
    body = (await client.get("/allocation_candidates?resources1=VGPU:2&resources2=VGPU:1&group_policy=none",
                             version="1.25")).json()
    assert sorted(next(iter(p)) for p in picks(body)) == [ids["cn_left"]]
