"""GET /resource_providers filters (required with ! and in:, member_of with in:/!in:, repeated keys) and
the microversion boundaries around providers, inventories, classes and allocations, as upstream."""
from __future__ import annotations

import uuid

import pytest

from tests.unit.test_placement_api import claim, client, compute_inventory, detail_of, error_of, service  # noqa: F401

AGG1, AGG2 = "3b9f1c2a-1d4e-4f5a-8b6c-7d8e9f0a1b21", "3b9f1c2a-1d4e-4f5a-8b6c-7d8e9f0a1b22"


def names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(p["name"] for p in response.json()["resource_providers"])


@pytest.fixture
async def trio(client):  # noqa: F811
    """gold (AVX2, agg1), silver (SSE, agg2), plain (agg1 and agg2)."""
    await client.provider("gold", inventory=compute_inventory(), traits=["HW_CPU_X86_AVX2"], aggregates=[AGG1])
    await client.provider("silver", inventory=compute_inventory(), traits=["HW_CPU_X86_SSE"], aggregates=[AGG2])
    await client.provider("plain", inventory=compute_inventory(vcpu=1), aggregates=[AGG1, AGG2])
    return client


async def test_list_by_required_traits(trio):
    get = trio.get
    assert names(await get("/resource_providers?required=HW_CPU_X86_AVX2")) == ["gold"]
    assert names(await get("/resource_providers?required=!HW_CPU_X86_AVX2")) == ["plain", "silver"]
    assert names(await get("/resource_providers?required=in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE")) == ["gold", "silver"]
    # repeated: every value counts from 1.39, the last one only below
    query = "/resource_providers?required=!HW_CPU_X86_AVX2&required=!HW_CPU_X86_SSE"
    assert names(await get(query)) == ["plain"]
    assert names(await get(query, version="1.38")) == ["gold", "plain"]
    response = await get("/resource_providers?required=!HW_CPU_X86_AVX2", version="1.21")
    assert response.status_code == 400
    assert detail_of(response) == ("Invalid query string parameters: Expected 'required' parameter value of the "
                                   "form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: !HW_CPU_X86_AVX2")
    response = await get("/resource_providers?required=in:HW_CPU_X86_AVX2", version="1.38")
    assert response.status_code == 400 and "only supported since microversion 1.39" in detail_of(response)
    response = await get("/resource_providers?required=CUSTOM_NOPE")
    assert detail_of(response) == 'Invalid trait(s) in "required" parameter: No such trait(s): CUSTOM_NOPE.'


async def test_list_by_member_of(trio):
    get = trio.get
    assert names(await get(f"/resource_providers?member_of={AGG1}")) == ["gold", "plain"]
    assert names(await get(f"/resource_providers?member_of=in:{AGG1},{AGG2}")) == ["gold", "plain", "silver"]
    assert names(await get(f"/resource_providers?member_of=!{AGG2}")) == ["gold"]
    assert names(await get(f"/resource_providers?member_of=!in:{AGG1},{AGG2}")) == []
    repeated = f"/resource_providers?member_of={AGG1}&member_of={AGG2}"
    assert names(await get(repeated, version="1.24")) == ["plain"]
    response = await get(repeated, version="1.23")
    assert response.status_code == 400 and detail_of(response) == "Multiple member_of parameters are not supported"
    response = await get(f"/resource_providers?member_of=!{AGG2}", version="1.31")
    assert detail_of(response) == "Forbidden member_of parameters are not supported in the specified microversion"


@pytest.mark.parametrize("query, below, at", [
    (f"member_of={AGG1}", "1.2", "1.3"),
    ("resources=VCPU:1", "1.3", "1.4"),
    ("in_tree=3b9f1c2a-1d4e-4f5a-8b6c-7d8e9f0a1b23", "1.13", "1.14"),
    ("required=HW_CPU_X86_AVX2", "1.17", "1.18"),
    ("required=!HW_CPU_X86_AVX2", "1.21", "1.22"),
    (f"member_of={AGG1}&member_of={AGG2}", "1.23", "1.24"),
    (f"member_of=!{AGG1}", "1.31", "1.32"),
    ("required=in:HW_CPU_X86_AVX2,HW_CPU_X86_SSE", "1.38", "1.39"),
])
async def test_provider_list_parameters_appear_at_their_version(client, query, below, at):  # noqa: F811
    assert (await client.get(f"/resource_providers?{query}", version=below)).status_code == 400
    assert (await client.get(f"/resource_providers?{query}", version=at)).status_code == 200


async def test_provider_microversion_boundaries(client):  # noqa: F811
    rp = await client.provider("edges", inventory=compute_inventory())
    base = f"/resource_providers/{rp['uuid']}"
    # 1.1: aggregates
    assert (await client.get(f"{base}/aggregates", version="1.0")).status_code == 404
    assert (await client.get(f"{base}/aggregates", version="1.1")).json() == {"aggregates": []}
    # 1.14: parents and roots
    body = {"name": "kid", "parent_provider_uuid": rp["uuid"]}
    assert (await client.post("/resource_providers", json=body, version="1.13")).status_code == 400
    listed = (await client.get("/resource_providers", version="1.13")).json()["resource_providers"][0]
    assert "root_provider_uuid" not in listed
    # 1.15: last-modified and cache-control on reads
    assert "cache-control" not in (await client.get(base, version="1.14")).headers
    assert (await client.get(base, version="1.15")).headers["cache-control"] == "no-cache"
    # 1.7: PUT /resource_classes/{name} creates (201) then confirms (204), without a body
    assert (await client.put("/resource_classes/CUSTOM_EDGE", version="1.7")).status_code == 201
    assert (await client.put("/resource_classes/CUSTOM_EDGE", version="1.7")).status_code == 204
    assert (await client.put("/resource_classes/CUSTOM_EDGE", version="1.6")).status_code == 415   # wants a body
    # 1.8: project_id and user_id required; 1.13: POST /allocations
    consumer = str(uuid.uuid4())
    bare = {"allocations": [{"resource_provider": {"uuid": rp["uuid"]}, "resources": {"VCPU": 1}}]}
    assert (await client.put(f"/allocations/{consumer}", json=bare, version="1.7")).status_code == 204
    assert (await client.put(f"/allocations/{consumer}", json=bare, version="1.8")).status_code == 400
    assert (await client.post("/allocations", json={}, version="1.12")).status_code in (404, 405)
    # 1.28: consumer_generation in GET /allocations/{c}
    assert "consumer_generation" not in (await client.get(f"/allocations/{consumer}", version="1.27")).json()
    assert (await client.get(f"/allocations/{consumer}", version="1.28")).json()["consumer_generation"] == 1


async def test_unparenting_at_1_37(client):  # noqa: F811
    root = await client.provider("uproot")
    child = await client.provider("ukid", parent=root["uuid"])
    path = f"/resource_providers/{child['uuid']}"
    response = await client.put(path, json={"name": "ukid", "parent_provider_uuid": None}, version="1.36")
    assert response.status_code == 400
    response = await client.put(path, json={"name": "ukid", "parent_provider_uuid": None}, version="1.37")
    assert response.status_code == 200, response.text
    assert response.json()["parent_provider_uuid"] is None and response.json()["root_provider_uuid"] == child["uuid"]
    assert (await client.delete(f"/resource_providers/{root['uuid']}")).status_code == 204


async def test_deleting_one_inventory_in_use(client):  # noqa: F811
    rp = await client.provider("busy-one", inventory=compute_inventory())
    await claim(client, str(uuid.uuid4()), rp["uuid"], {"VCPU": 1})
    response = await client.delete(f"/resource_providers/{rp['uuid']}/inventories/VCPU")
    assert response.status_code == 409 and error_of(response)["code"] == "placement.concurrent_update"
    assert detail_of(response) == (f"Unable to delete inventory of class VCPU: Inventory for 'VCPU' on resource "
                                   f"provider '{rp['uuid']}' in use.")
    assert (await client.delete(f"/resource_providers/{rp['uuid']}/inventories/DISK_GB")).status_code == 204
    response = await client.delete(f"/resource_providers/{rp['uuid']}/inventories/DISK_GB")
    assert response.status_code == 404 and detail_of(response) == (   # upstream says it twice
        "No inventory of class DISK_GB found for delete: No inventory of class DISK_GB found for delete")


async def test_accept_and_amounts(client):  # noqa: F811
    rp = await client.provider("amounts", inventory=compute_inventory())
    response = await client.get("/resource_providers", headers={"Accept": "text/plain"})
    assert response.status_code == 406
    assert (await client.get("/resource_providers", headers={"Accept": "application/json"})).status_code == 200
    for amount in (0, -1):
        response = await client.get(f"/allocation_candidates?resources=VCPU:{amount}")
        assert detail_of(response) == f"Requested resource VCPU requires amount >= 1. Got: {amount}."
        response = await claim(client, str(uuid.uuid4()), rp["uuid"], {"VCPU": amount})
        assert response.status_code == 400, response.text


async def test_provider_write_errors_as_upstream(client):  # noqa: F811
    a = await client.provider("err-a")
    b = await client.provider("err-b", parent=a["uuid"])
    response = await client.put(f"/resource_providers/{b['uuid']}", json={"name": "err-a"})
    assert response.status_code == 409 and error_of(response)["code"] == "placement.duplicate_name"
    assert detail_of(response) == "Conflicting resource provider err-a already exists."
    response = await client.post("/resource_providers", json={"name": "err-a"})
    assert detail_of(response) == "Conflicting resource provider name: err-a already exists."
    response = await client.put(f"/resource_providers/{a['uuid']}", json={"name": "err-a",
                                                                          "parent_provider_uuid": b["uuid"]})
    assert response.status_code == 400
    assert detail_of(response) == (f"Unable to save resource provider {a['uuid']}: Object action update failed "
                                   f"because: creating loop in the provider tree is not allowed.")
    missing, new = str(uuid.uuid4()), str(uuid.uuid4())
    response = await client.post("/resource_providers", json={"name": "err-c", "uuid": new,
                                                              "parent_provider_uuid": missing})
    assert detail_of(response) == (f'Unable to create resource provider "err-c", {new}: Object action create '
                                   f'failed because: parent provider UUID does not exist.')


async def test_not_found_details_as_upstream(client):  # noqa: F811
    missing = str(uuid.uuid4())
    for path, detail in ((f"/resource_providers/{missing}", f"No resource provider with uuid {missing} found"),
                         ("/resource_classes/CUSTOM_MISSING", "No such resource class CUSTOM_MISSING."),
                         ("/traits/CUSTOM_MISSING", "No such trait(s): CUSTOM_MISSING.")):
        response = await client.get(path)
        assert response.status_code == 404 and detail_of(response) == detail, path
    response = await client.delete(f"/resource_providers/{missing}")
    assert detail_of(response) == f"No resource provider with uuid {missing} found for delete"
    response = await client.delete(f"/allocations/{missing}")
    assert detail_of(response) == f"No allocations for consumer '{missing}'"
