"""Placement details that differed from upstream 16.0.0 until compared side by side (benchmarks/
placement_compare.py); the expected answers are upstream's, as that comparison recorded them. The whole
recorded comparison is replayed by tests/placement_db/test_placement_upstream_answers.py."""
from __future__ import annotations

import uuid

from tests.unit.test_placement_api import (SERVICE, claim, client, compute_inventory, detail_of,  # noqa: F401
                                           error_of, service)


async def test_schema_errors_in_the_validators_words(client):
    rp = await client.provider("schema")
    response = await client.post(f"/resource_providers/{rp['uuid']}/inventories", json={
        "resource_class": "VCPU", "total": 0}, version="1.0")
    assert response.status_code == 400
    assert detail_of(response) == (
        "JSON does not validate: 0 is less than the minimum of 1  "
        "Failed validating 'minimum' in schema['properties']['total']:     "
        "{'type': 'integer', 'maximum': 2147483647, 'minimum': 1}  "
        "On instance['total']:     0")
    response = await client.post("/resource_classes", json={"name": "VCPU"}, version="1.2")
    assert detail_of(response) == (
        "JSON does not validate: 'VCPU' does not match '^CUSTOM_[A-Z0-9_]+$'  "
        "Failed validating 'pattern' in schema['properties']['name']:     "
        "{'type': 'string', 'pattern': '^CUSTOM_[A-Z0-9_]+$', 'maxLength': 255}  "
        "On instance['name']:     'VCPU'")
    # a negative allocation ratio passes the schema, as upstream (its capacity check answers)
    response = await client.put(f"/resource_providers/{rp['uuid']}/inventories", json={
        "resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8, "allocation_ratio": -1.0}}})
    assert response.status_code == 400 and "JSON does not validate" not in detail_of(response)


async def _generation(client, rp):
    return (await client.get(f"/resource_providers/{rp}")).json()["generation"]


async def _usages(client, rp):
    return (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"]


async def test_reshape_down_and_back_up(client):
    """Each reshape bumps a provider given inventory three times (interim inventory, allocations, final
    inventory), one given none once; usages follow the allocations both ways."""
    host = await client.provider("host", inventory={"VCPU": {"total": 8}, "MEMORY_MB": {"total": 1024}})
    child = await client.provider("numa", parent=host["uuid"])
    consumer = str(uuid.uuid4())
    assert (await claim(client, consumer, host["uuid"], {"VCPU": 2, "MEMORY_MB": 256})).status_code == 204
    owner = {"project_id": "p1", "user_id": "u1", "consumer_type": "INSTANCE"}
    down = {"inventories": {
        host["uuid"]: {"resource_provider_generation": 2, "inventories": {"MEMORY_MB": {"total": 1024}}},
        child["uuid"]: {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8}}}},
        "allocations": {consumer: {"allocations": {host["uuid"]: {"resources": {"MEMORY_MB": 256}},
                                                   child["uuid"]: {"resources": {"VCPU": 2}}},
                                   "consumer_generation": 1, **owner}}}
    assert (await client.post("/reshaper", json=down, token=SERVICE)).status_code == 204
    assert (await _generation(client, host["uuid"]), await _generation(client, child["uuid"])) == (5, 3)
    assert await _usages(client, host["uuid"]) == {"MEMORY_MB": 256}
    assert await _usages(client, child["uuid"]) == {"VCPU": 2}
    up = {"inventories": {
        host["uuid"]: {"resource_provider_generation": 5, "inventories": {
            "VCPU": {"total": 8}, "MEMORY_MB": {"total": 1024}}},
        child["uuid"]: {"resource_provider_generation": 3, "inventories": {}}},
        "allocations": {consumer: {"allocations": {host["uuid"]: {"resources": {"VCPU": 2, "MEMORY_MB": 256}}},
                                   "consumer_generation": 2, **owner}}}
    assert (await client.post("/reshaper", json=up, token=SERVICE)).status_code == 204
    assert (await _generation(client, host["uuid"]), await _generation(client, child["uuid"])) == (8, 4)
    assert await _usages(client, host["uuid"]) == {"VCPU": 2, "MEMORY_MB": 256}
    assert await _usages(client, child["uuid"]) == {}


async def test_an_over_committed_inventory_takes_a_smaller_claim(client):
    rp = await client.provider("oc", inventory={"VCPU": {"total": 4}})
    consumer = str(uuid.uuid4())
    assert (await claim(client, consumer, rp["uuid"], {"VCPU": 4})).status_code == 204
    response = await client.put(f"/resource_providers/{rp['uuid']}/inventories", json={
        "resource_provider_generation": 2, "inventories": {"VCPU": {"total": 2}}})
    assert response.status_code == 200   # upstream only warns
    assert (await claim(client, consumer, rp["uuid"], {"VCPU": 3}, generation=1)).status_code == 204
    assert (await claim(client, consumer, rp["uuid"], {"VCPU": 4}, generation=2)).status_code == 409
    assert (await claim(client, str(uuid.uuid4()), rp["uuid"], {"VCPU": 1})).status_code == 409


async def test_mappings_as_upstreams_schema(client):
    rp = await client.provider("map", inventory=compute_inventory())
    body = {"allocations": {rp["uuid"]: {"resources": {"VCPU": 1}}}, "project_id": "p1", "user_id": "u1",
            "consumer_generation": None, "consumer_type": "INSTANCE"}
    for mappings, status in (({"": [rp["uuid"]]}, 204), ({"": []}, 204), ({}, 400), ({"_A": []}, 400)):
        response = await client.put(f"/allocations/{uuid.uuid4()}", json=dict(body, mappings=mappings))
        assert response.status_code == status, (mappings, response.text)


async def test_http_details(client):
    response = await client.post("/resource_providers", json={"name": "loc"}, version="1.19")
    assert response.headers["location"] == f"http://placement/resource_providers/{response.headers['location'][-36:]}"
    # a body without a content type: 400 before routing and policy, without Vary
    for method, path in (("POST", "/resource_providers"), ("PUT", "/traits/CUSTOM_X"), ("POST", "/nowhere")):
        response = await client.request(method, path, content=b'{"name": "x"}')
        assert response.status_code == 400, (path, response.text)
        assert detail_of(response) == "content-type header required when content-length > 0"
        assert "vary" not in response.headers and response.headers["openstack-api-version"] == "placement 1.39"
    response = await client.post("/resource_providers", content=b"", headers={"Content-Type": "APPLICATION/JSON"})
    assert response.status_code == 415   # the media type is case-sensitive
    assert (await client.get("/resource_providers/")).status_code == 404
    response = await client.get(f"/resource_providers/{uuid.uuid4()}")
    assert response.status_code == 404 and "vary" not in response.headers
    response = await client.request("HEAD", "/resource_providers")
    assert response.status_code == 405 and response.headers["content-type"] == "text/html; charset=UTF-8"
    # no cache headers on PUT /resource_classes/{name} (1.7+), unlike PUT /traits/{name}
    response = await client.put("/resource_classes/CUSTOM_CACHE", version="1.15")
    assert response.status_code == 201 and "cache-control" not in response.headers


async def test_provider_texts(client):
    mine = str(uuid.uuid4())
    response = await client.post("/resource_providers", json={"name": "me", "uuid": mine,
                                                              "parent_provider_uuid": mine})
    assert detail_of(response) == (
        f'Unable to create resource provider "me", {mine}: Object action create failed because: parent provider '
        f"UUID cannot be same as UUID. Please set parent provider UUID to None if there is no parent.")
    response = await client.post("/resource_providers", json={"name": "", "uuid": mine})
    assert response.status_code == 400 and detail_of(response) == (
        f'Unable to create resource provider "", {mine}: Object action create failed because: name is required')
    parent = await client.provider("parent")
    child = await client.provider("child", parent=parent["uuid"])
    nowhere = str(uuid.uuid4())
    response = await client.put(f"/resource_providers/{child['uuid']}", json={
        "name": "child", "parent_provider_uuid": nowhere}, version="1.14")
    assert detail_of(response) == (f"Unable to save resource provider {child['uuid']}: Object action create "
                                   f"failed because: parent provider UUID does not exist.")
    response = await client.put(f"/resource_providers/{parent['uuid']}/traits", json={
        "resource_provider_generation": parent["generation"], "traits": ["CUSTOM_NOPE"]})
    assert detail_of(response) == "No such trait CUSTOM_NOPE"
