"""GET /allocation_candidates on the scenarios of upstream's gabbi suites (granular.yaml,
shared-resources.yaml, granular-same-subtree.yaml, allocation-candidates-root-required.yaml), rewritten
here, plus the regressions an audit found (in_tree with sharing providers, summed amounts over max_unit)."""
from __future__ import annotations

import uuid

import pytest

from tests.unit.test_placement_api import client, compute_inventory, detail_of, error_of, service  # noqa: F401

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
])
async def test_candidate_query_errors_as_upstream(client, query, version, code, detail):
    response = await client.get(f"/allocation_candidates?{query}", version=version)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == code if version >= "1.23" else True
    assert detail_of(response) == detail


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
