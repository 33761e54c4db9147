"""GET /allocation_candidates on the scenarios of upstream's gabbi suites (granular.yaml,
shared-resources.yaml, granular-same-subtree.yaml, allocation-candidates-root-required.yaml), rewritten
here, plus the regressions an audit found (in_tree with sharing providers, summed amounts over max_unit)."""
from __future__ import annotations

import uuid

import pytest

from tests.unit.test_placement_api import client, compute_inventory, error_of, service  # noqa: F401

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
