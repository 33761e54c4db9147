"""Placement API behaviour, driven through the ASGI app with a fake token validator."""
from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.common.testing import FakeValidator
from kilonova.config import Config
from kilonova.placement.service import PlacementService

ADMIN = "admin-token"
MEMBER = "member-token"
SERVICE = "service-token"


# token -> (user, project, roles), for kilonova.common.testing.FakeValidator
TOKENS = {ADMIN: ("user", "p1", ["admin", "member"]), MEMBER: ("user", "p1", ["member"]),
          SERVICE: ("user", "p1", ["service"])}


@pytest.fixture
async def service(tmp_path):
    conf = Config.load(state_dir=tmp_path)
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None),
                           validator=FakeValidator(TOKENS))
    svc.prepare()
    yield svc
    svc.db.close()


class Client:
    def __init__(self, http: httpx.AsyncClient):
        self.http = http

    async def request(self, method, path, version="1.39", token=ADMIN, **kw):
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["X-Auth-Token"] = token
        if version:
            headers["OpenStack-API-Version"] = f"placement {version}"
        return await self.http.request(method, path, headers=headers, **kw)

    async def get(self, path, **kw):
        return await self.request("GET", path, **kw)

    async def post(self, path, **kw):
        return await self.request("POST", path, **kw)

    async def put(self, path, **kw):
        return await self.request("PUT", path, **kw)

    async def delete(self, path, **kw):
        return await self.request("DELETE", path, **kw)

    async def provider(self, name, *, inventory=None, traits=None, parent=None, aggregates=None):
        body = {"name": name}
        if parent:
            body["parent_provider_uuid"] = parent
        response = await self.post("/resource_providers", json=body)
        assert response.status_code == 200, response.text
        rp = response.json()
        if inventory:
            response = await self.put(f"/resource_providers/{rp['uuid']}/inventories", json={
                "resource_provider_generation": rp["generation"], "inventories": inventory})
            assert response.status_code == 200, response.text
            rp["generation"] = response.json()["resource_provider_generation"]
        if traits:
            for trait in traits:
                if trait.startswith("CUSTOM_"):
                    await self.put(f"/traits/{trait}")
            response = await self.put(f"/resource_providers/{rp['uuid']}/traits", json={
                "resource_provider_generation": rp["generation"], "traits": traits})
            assert response.status_code == 200, response.text
            rp["generation"] = response.json()["resource_provider_generation"]
        if aggregates:
            response = await self.put(f"/resource_providers/{rp['uuid']}/aggregates", json={
                "resource_provider_generation": rp["generation"], "aggregates": aggregates})
            assert response.status_code == 200, response.text
            rp["generation"] = response.json()["resource_provider_generation"]
        return rp


@pytest.fixture
async def client(service):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://placement") as http:
        yield Client(http)


def compute_inventory(vcpu=8, ram=4096, disk=100, **extra):
    inv = {"VCPU": {"total": vcpu, "allocation_ratio": 1.0}, "MEMORY_MB": {"total": ram},
           "DISK_GB": {"total": disk}}
    inv.update(extra)
    return inv


def error_of(response):
    return response.json()["errors"][0]


def detail_of(response) -> str:
    """The message of an error, without the status explanation upstream (webob) puts before it."""
    detail = error_of(response)["detail"]
    return detail.split("\n\n ", 1)[1][:-2] if "\n\n " in detail else detail


def message_of(response) -> str:
    """detail_of without what follows jsonschema's message in a schema error (the keyword and schema part
    that failed, the instance: tests/unit/test_placement_schemas.py checks those)."""
    return detail_of(response).split("  Failed validating ", 1)[0]


# ---------------------------------------------------------------- root, auth, versions

async def test_root_is_public_and_advertises_versions(client):
    response = await client.get("/", token=None, version=None)
    assert response.status_code == 200
    version = response.json()["versions"][0]
    assert version["id"] == "v1.0" and version["min_version"] == "1.0" and version["status"] == "CURRENT"
    assert tuple(map(int, version["max_version"].split("."))) >= (1, 36)
    assert response.headers["openstack-api-version"] == "placement 1.0"
    assert "openstack-api-version" in response.headers["vary"].lower()


async def test_latest_and_out_of_range_versions(client):
    root = (await client.get("/", token=None, version=None)).json()["versions"][0]
    response = await client.get("/resource_providers", version="latest")
    assert response.headers["openstack-api-version"] == f"placement {root['max_version']}"
    response = await client.get("/resource_providers", version="1.99")
    assert response.status_code == 406
    error = error_of(response)
    assert error["max_version"] == root["max_version"] and error["min_version"] == "1.0"
    response = await client.get("/resource_providers", version="1.a")
    assert response.status_code == 400


async def test_missing_token_is_401_and_member_is_403(client):
    response = await client.get("/resource_providers", token=None)
    assert response.status_code == 401
    response = await client.get("/resource_providers", token="bogus")
    assert response.status_code == 401
    response = await client.get("/resource_providers", token=MEMBER)
    assert response.status_code == 403
    error = error_of(response)
    assert error["title"] == "Forbidden" and error["code"] == "placement.undefined_code"
    assert (await client.get("/resource_providers", token=SERVICE)).status_code == 200


async def test_error_body_format_and_code_from_1_23(client):
    missing = str(uuid.uuid4())
    response = await client.get(f"/resource_providers/{missing}")
    assert response.status_code == 404
    error = error_of(response)
    assert error["status"] == 404 and error["title"] == "Not Found"
    assert missing in error["detail"] and error["code"] == "placement.undefined_code"
    assert error["request_id"].startswith("req-")
    old = error_of(await client.get(f"/resource_providers/{missing}", version="1.22"))
    assert "code" not in old


async def test_405_with_allow_and_version_gated_routes(client):
    response = await client.request("PATCH", "/resource_providers")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"   # upstream's declaration order
    assert error_of(response)["detail"] == ("The method PATCH is not allowed for this resource. \n\n The method "
                                            "specified is not allowed for this resource.")
    response = await client.request("HEAD", "/resource_providers/" + str(uuid.uuid4()))
    assert response.status_code == 405 and response.headers["allow"] == "GET, DELETE, PUT"   # no HEAD upstream
    response = await client.request("PATCH", "/resource_providers/x/inventories")
    assert response.headers["allow"] == "GET, POST, PUT, DELETE"
    assert (await client.get("/traits", version="1.5")).status_code == 404
    assert (await client.get("/allocation_candidates?resources=VCPU:1", version="1.9")).status_code == 404
    rp = await client.provider("gate")
    response = await client.delete(f"/resource_providers/{rp['uuid']}/inventories", version="1.4")
    assert response.status_code == 405


async def test_bad_bodies(client):
    response = await client.post("/resource_providers", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "Malformed JSON" in error_of(response)["detail"]
    response = await client.post("/resource_providers", json={"name": "x", "color": "blue"})
    assert response.status_code == 400 and "JSON does not validate" in error_of(response)["detail"]
    response = await client.post("/resource_providers", json={"name": "x", "uuid": "not-a-uuid"})
    assert response.status_code == 400
    response = await client.post("/resource_providers", content=b"name=x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    response = await client.get("/resource_providers?color=blue")
    assert response.status_code == 400


# ---------------------------------------------------------------- providers

async def test_provider_crud_and_versions(client):
    response = await client.post("/resource_providers", json={"name": "cn1"}, version="1.19")
    assert response.status_code == 201 and response.content == b""
    location = response.headers["location"]
    rp = (await client.get(location)).json()
    assert rp["name"] == "cn1" and rp["generation"] == 0 and rp["root_provider_uuid"] == rp["uuid"]
    assert rp["parent_provider_uuid"] is None
    assert {link["rel"] for link in rp["links"]} == {"self", "inventories", "usages", "aggregates", "traits",
                                                     "allocations"}
    old = (await client.get(location, version="1.0")).json()
    assert "root_provider_uuid" not in old and {link["rel"] for link in old["links"]} == {
        "self", "inventories", "usages"}
    assert "last-modified" in (await client.get(location, version="1.15")).headers
    dup = await client.post("/resource_providers", json={"name": "cn1"})
    assert dup.status_code == 409 and error_of(dup)["code"] == "placement.duplicate_name"
    response = await client.put(location, json={"name": "cn1-renamed"})
    assert response.status_code == 200 and response.json()["name"] == "cn1-renamed"
    assert (await client.delete(location)).status_code == 204
    assert (await client.get(location)).status_code == 404


async def test_provider_trees_and_list_filters(client):
    root = await client.provider("root", inventory=compute_inventory())
    child = await client.provider("child", parent=root["uuid"], inventory={"VGPU": {"total": 4}})
    other = await client.provider("other", inventory=compute_inventory(vcpu=2))
    assert child["root_provider_uuid"] == root["uuid"] and child["parent_provider_uuid"] == root["uuid"]
    names = lambda r: sorted(p["name"] for p in r.json()["resource_providers"])  # noqa: E731
    assert names(await client.get(f"/resource_providers?in_tree={child['uuid']}")) == ["child", "root"]
    assert names(await client.get("/resource_providers?resources=VCPU:4")) == ["root"]
    assert names(await client.get("/resource_providers?name=other")) == ["other"]
    assert names(await client.get("/resource_providers?name=")) == ["child", "other", "root"]   # as upstream
    assert names(await client.get(f"/resource_providers?uuid={other['uuid']}")) == ["other"]
    response = await client.get("/resource_providers?resources=CUSTOM_NOPE:1")
    assert response.status_code == 400
    # a parent cannot go while it has children; re-parenting needs 1.37
    response = await client.delete(f"/resource_providers/{root['uuid']}")
    assert response.status_code == 409
    assert error_of(response)["code"] == "placement.resource_provider.cannot_delete_parent"
    response = await client.put(f"/resource_providers/{child['uuid']}", version="1.36",
                                json={"name": "child", "parent_provider_uuid": other["uuid"]})
    assert response.status_code == 400
    response = await client.put(f"/resource_providers/{child['uuid']}", version="1.37",
                                json={"name": "child", "parent_provider_uuid": other["uuid"]})
    assert response.status_code == 200 and response.json()["root_provider_uuid"] == other["uuid"]
    response = await client.put(f"/resource_providers/{other['uuid']}", version="1.37",
                                json={"name": "other", "parent_provider_uuid": child["uuid"]})
    assert response.status_code == 400


# ---------------------------------------------------------------- inventories

async def test_inventories_roundtrip_and_validation(client):
    rp = await client.provider("inv")
    base = f"/resource_providers/{rp['uuid']}/inventories"
    response = await client.put(base, json={"resource_provider_generation": 0, "inventories": {
        "VCPU": {"total": 16, "reserved": 2, "max_unit": 8, "allocation_ratio": 2.0}}})
    assert response.status_code == 200
    body = response.json()
    assert body["resource_provider_generation"] == 1
    assert body["inventories"]["VCPU"] == {"total": 16, "reserved": 2, "min_unit": 1, "max_unit": 8,
                                           "step_size": 1, "allocation_ratio": 2.0}
    stale = await client.put(base, json={"resource_provider_generation": 0, "inventories": {}})
    assert stale.status_code == 409 and error_of(stale)["code"] == "placement.concurrent_update"
    bad = await client.put(base, json={"resource_provider_generation": 1, "inventories": {
        "VCPU": {"total": 4, "reserved": 4}}}, version="1.25")
    assert bad.status_code == 400
    # as upstream, a stale generation is answered before the values are judged
    stale = await client.put(f"{base}/VCPU", json={"resource_provider_generation": 0, "total": 4, "reserved": 4},
                             version="1.25")
    assert stale.status_code == 409 and detail_of(stale) == "resource provider generation conflict"
    ok = await client.put(base, json={"resource_provider_generation": 1, "inventories": {
        "VCPU": {"total": 4, "reserved": 4}}}, version="1.26")
    assert ok.status_code == 200
    for invalid in ({"total": 0}, {"total": 4, "step_size": 0}, {"total": 4, "min_unit": 0},
                    {"total": 4, "reserved": -1}, {"total": 4, "allocation_ratio": "x"}, {"total": 4, "bogus": 1}):
        response = await client.put(base, json={"resource_provider_generation": 2, "inventories": {"VCPU": invalid}})
        assert response.status_code == 400, invalid
    unknown = await client.put(base, json={"resource_provider_generation": 2, "inventories": {
        "CUSTOM_UNKNOWN": {"total": 1}}})
    assert unknown.status_code == 400
    # a generation in the body of a POST is accepted (and ignored), as upstream
    created = await client.post(base, json={"resource_class": "DISK_GB", "total": 100,
                                            "resource_provider_generation": 99})
    assert created.status_code == 201 and created.json()["resource_provider_generation"] == 3
    assert created.headers["location"].endswith("/inventories/DISK_GB")
    one = await client.get(f"{base}/DISK_GB")
    assert one.status_code == 200 and one.json()["total"] == 100
    updated = await client.put(f"{base}/DISK_GB", json={"resource_provider_generation": 3, "total": 200})
    assert updated.status_code == 200 and updated.json()["total"] == 200
    assert (await client.delete(f"{base}/DISK_GB")).status_code == 204
    assert (await client.get(f"{base}/DISK_GB")).status_code == 404
    assert (await client.delete(base)).status_code == 204
    assert (await client.get(base)).json()["inventories"] == {}


async def test_inventory_in_use_cannot_be_removed(client):
    rp = await client.provider("busy", inventory=compute_inventory())
    consumer = str(uuid.uuid4())
    await claim(client, consumer, rp["uuid"], {"VCPU": 2})
    gen = (await client.get(f"/resource_providers/{rp['uuid']}")).json()["generation"]
    response = await client.put(f"/resource_providers/{rp['uuid']}/inventories", json={
        "resource_provider_generation": gen, "inventories": {"MEMORY_MB": {"total": 1024}}})
    assert response.status_code == 409 and error_of(response)["code"] == "placement.inventory.inuse"
    response = await client.delete(f"/resource_providers/{rp['uuid']}/inventories")
    assert response.status_code == 409 and error_of(response)["code"] == "placement.inventory.inuse"
    response = await client.delete(f"/resource_providers/{rp['uuid']}")
    assert response.status_code == 409 and error_of(response)["code"] == "placement.resource_provider.inuse"


# ---------------------------------------------------------------- allocations

async def claim(client, consumer, rp_uuid, resources, generation=None, version="1.39", **extra):
    body = {"allocations": {rp_uuid: {"resources": resources}}, "project_id": "p1", "user_id": "u1",
            "consumer_generation": generation, **extra}
    if version == "1.39":
        body.setdefault("consumer_type", "INSTANCE")
    return await client.put(f"/allocations/{consumer}", json=body, version=version)


async def test_allocations_with_generations(client):
    rp = await client.provider("alloc", inventory=compute_inventory(vcpu=4))
    consumer = str(uuid.uuid4())
    response = await claim(client, consumer, rp["uuid"], {"VCPU": 2, "MEMORY_MB": 512})
    assert response.status_code == 204, response.text
    body = (await client.get(f"/allocations/{consumer}")).json()
    assert body["allocations"][rp["uuid"]]["resources"] == {"VCPU": 2, "MEMORY_MB": 512}
    assert body["consumer_generation"] == 1 and body["project_id"] == "p1" and body["consumer_type"] == "INSTANCE"
    # a new consumer must say null, an existing one its generation
    stale = await claim(client, consumer, rp["uuid"], {"VCPU": 1}, generation=None)
    assert stale.status_code == 409 and error_of(stale)["code"] == "placement.concurrent_update"
    assert (await claim(client, consumer, rp["uuid"], {"VCPU": 1}, generation=1)).status_code == 204
    # over capacity, and min/max/step violations, are conflicts
    other = str(uuid.uuid4())
    over = await claim(client, other, rp["uuid"], {"VCPU": 4})
    assert over.status_code == 409 and "capacity" in error_of(over)["detail"]
    assert (await claim(client, other, rp["uuid"], {"VCPU": 3})).status_code == 204
    by_rp = (await client.get(f"/resource_providers/{rp['uuid']}/allocations")).json()
    assert set(by_rp["allocations"]) == {consumer, other}
    usages = (await client.get(f"/resource_providers/{rp['uuid']}/usages")).json()
    assert usages["usages"] == {"VCPU": 4, "MEMORY_MB": 0, "DISK_GB": 0}
    assert usages["resource_provider_generation"] == by_rp["resource_provider_generation"]
    # an allocation on a provider that does not exist is a 400 (upstream 16.0.0 leaves the new consumer behind,
    # empty at generation 0, which no GET shows and which then refuses every claim saying null: not copied)
    lost = str(uuid.uuid4())
    assert (await claim(client, lost, str(uuid.uuid4()), {"VCPU": 1})).status_code == 400
    response = await client.post("/allocations", json={lost: {
        "allocations": {rp["uuid"]: {"resources": {"CUSTOM_NOPE": 1}}}, "project_id": "p1", "user_id": "u1",
        "consumer_generation": None, "consumer_type": "INSTANCE"}})
    assert detail_of(response) == "Unable to allocate inventory No such resource class CUSTOM_NOPE."
    assert (await client.delete(f"/allocations/{consumer}")).status_code == 204
    assert (await client.delete(f"/allocations/{consumer}")).status_code == 404
    assert (await client.get(f"/allocations/{consumer}")).json() == {"allocations": {}}


async def test_only_providers_of_the_new_allocations_get_a_generation_bump(client):
    a = await client.provider("gen-a", inventory={"VCPU": {"total": 2, "max_unit": 2}})
    b = await client.provider("gen-b", inventory={"VCPU": {"total": 2, "step_size": 2}})

    async def generation(rp):
        return (await client.get(f"/resource_providers/{rp['uuid']}")).json()["generation"]

    async def candidates():
        body = (await client.get("/allocation_candidates?resources=VCPU:2")).json()
        return sorted(next(iter(r["allocations"])) for r in body["allocation_requests"])

    consumer = str(uuid.uuid4())
    assert (await claim(client, consumer, a["uuid"], {"VCPU": 2})).status_code == 204
    before_a, before_b = await generation(a), await generation(b)
    assert await candidates() == [b["uuid"]]
    # moving the consumer off A: only B (in the new allocations) is bumped, as upstream
    assert (await claim(client, consumer, b["uuid"], {"VCPU": 2}, generation=1)).status_code == 204
    assert (await generation(a), await generation(b)) == (before_a, before_b + 1)
    assert await candidates() == [a["uuid"]]   # the capacity index still saw A freed
    # deleting a consumer's allocations bumps nothing
    assert (await client.delete(f"/allocations/{consumer}")).status_code == 204
    assert (await generation(a), await generation(b)) == (before_a, before_b + 1)
    assert await candidates() == sorted([a["uuid"], b["uuid"]])
    response = await claim(client, str(uuid.uuid4()), b["uuid"], {"VCPU": 1})
    assert response.status_code == 409
    assert detail_of(response) == (f"Unable to allocate inventory: Unable to create allocation for 'VCPU' on "
                                   f"resource provider '{b['uuid']}'. The requested amount would violate "
                                   f"inventory constraints.")


async def test_old_microversion_allocation_formats(client):
    rp = await client.provider("old", inventory=compute_inventory())
    consumer = str(uuid.uuid4())
    response = await client.put(f"/allocations/{consumer}", version="1.0", json={"allocations": [
        {"resource_provider": {"uuid": rp["uuid"]}, "resources": {"VCPU": 1}}]})
    assert response.status_code == 204
    body = (await client.get(f"/allocations/{consumer}", version="1.11")).json()
    assert set(body) == {"allocations"} and body["allocations"][rp["uuid"]]["resources"] == {"VCPU": 1}
    response = await client.put(f"/allocations/{consumer}", version="1.12", json={
        "allocations": {rp["uuid"]: {"resources": {"VCPU": 2}}}, "project_id": "p", "user_id": "u"})
    assert response.status_code == 204
    response = await client.put(f"/allocations/{consumer}", version="1.12", json={
        "allocations": {rp["uuid"]: {"resources": {"VCPU": 2}}}})
    assert response.status_code == 400


async def test_post_allocations_moves_consumers_atomically(client):
    rp = await client.provider("post", inventory=compute_inventory(vcpu=2))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert (await claim(client, first, rp["uuid"], {"VCPU": 2})).status_code == 204
    body = {first: {"allocations": {}, "project_id": "p1", "user_id": "u1", "consumer_generation": 1,
                    "consumer_type": "INSTANCE"},
            second: {"allocations": {rp["uuid"]: {"resources": {"VCPU": 2}}}, "project_id": "p1", "user_id": "u1",
                     "consumer_generation": None, "consumer_type": "MIGRATION"}}
    response = await client.post("/allocations", json=body)
    assert response.status_code == 204, response.text
    assert (await client.get(f"/allocations/{first}")).json()["allocations"] == {}
    assert (await client.get(f"/allocations/{second}")).json()["consumer_type"] == "MIGRATION"


async def test_usages_by_project_and_consumer_type(client):
    rp = await client.provider("usage", inventory=compute_inventory())
    await claim(client, str(uuid.uuid4()), rp["uuid"], {"VCPU": 1, "MEMORY_MB": 128})
    await claim(client, str(uuid.uuid4()), rp["uuid"], {"VCPU": 2}, consumer_type="MIGRATION")
    response = await client.get("/usages?project_id=p1", version="1.37")
    assert response.json() == {"usages": {"VCPU": 3, "MEMORY_MB": 128}}
    response = await client.get("/usages?project_id=p1&user_id=nobody", version="1.9")
    assert response.json() == {"usages": {}}
    grouped = (await client.get("/usages?project_id=p1")).json()["usages"]
    assert grouped == {"INSTANCE": {"VCPU": 1, "MEMORY_MB": 128, "consumer_count": 1},
                       "MIGRATION": {"VCPU": 2, "consumer_count": 1}}
    all_of = (await client.get("/usages?project_id=p1&consumer_type=all")).json()["usages"]
    assert all_of == {"all": {"VCPU": 3, "MEMORY_MB": 128, "consumer_count": 2}}
    assert (await client.get("/usages")).status_code == 400
    for kind in ("bad type", ""):   # upstream's pattern names both
        response = await client.get(f"/usages?project_id=p1&consumer_type={kind}")
        assert response.status_code == 400
        assert message_of(response) == ("Invalid query string parameters: "
                                        f"'{kind}' does not match '^[A-Z0-9_]+$|^all|^unknown$'")
    # a route absent at the microversion: webob's bare 404 text, as upstream
    assert error_of(await client.get("/usages?project_id=p1", version="1.8"))["detail"] == (
        "The resource could not be found.\n\n   ")


async def test_fifty_concurrent_claims_never_overcommit(client):
    rp = await client.provider("contended", inventory=compute_inventory(vcpu=10))
    results = await asyncio.gather(*(claim(client, str(uuid.uuid4()), rp["uuid"], {"VCPU": 1})
                                     for _ in range(50)))
    statuses = [r.status_code for r in results]
    assert statuses.count(204) == 10 and statuses.count(409) == 40
    usages = (await client.get(f"/resource_providers/{rp['uuid']}/usages")).json()["usages"]
    assert usages["VCPU"] == 10


# ---------------------------------------------------------------- traits, aggregates, classes

async def test_traits(client):
    assert (await client.put("/traits/CUSTOM_GOLD")).status_code == 201
    assert (await client.put("/traits/CUSTOM_GOLD")).status_code == 204
    response = await client.put("/traits/NOT_CUSTOM")   # upstream's text names no schema detail
    assert detail_of(response) == ('The trait is invalid. A valid trait must be no longer than 255 characters, '
                                   'start with the prefix "CUSTOM_" and use following characters: "A"-"Z", '
                                   '"0"-"9" and "_"')
    assert detail_of(await client.get("/traits?name=bad")) == (
        "Badly formatted name parameter. Expected name query string parameter in form: "
        '?name=[in|startswith]:[name1,name2|prefix]. Got: "bad"')
    assert (await client.get("/traits/CUSTOM_GOLD")).status_code == 204
    assert (await client.get("/traits/CUSTOM_NOPE")).status_code == 404
    listed = (await client.get("/traits?name=startswith:CUSTOM_")).json()["traits"]
    assert listed == ["CUSTOM_GOLD"]
    listed = (await client.get("/traits?name=in:CUSTOM_GOLD,HW_CPU_X86_AVX2")).json()["traits"]
    assert listed == ["CUSTOM_GOLD", "HW_CPU_X86_AVX2"]
    rp = await client.provider("traited")
    base = f"/resource_providers/{rp['uuid']}/traits"
    response = await client.put(base, json={"resource_provider_generation": 0, "traits": ["CUSTOM_GOLD"]})
    assert response.status_code == 200 and response.json() == {"traits": ["CUSTOM_GOLD"],
                                                                 "resource_provider_generation": 1}
    stale = await client.put(base, json={"resource_provider_generation": 0, "traits": []})
    assert stale.status_code == 409 and error_of(stale)["code"] == "placement.concurrent_update"
    unknown = await client.put(base, json={"resource_provider_generation": 1, "traits": ["CUSTOM_NOPE"]})
    assert unknown.status_code == 400
    assert (await client.get("/traits?associated=true")).json()["traits"] == ["CUSTOM_GOLD"]
    assert (await client.delete("/traits/CUSTOM_GOLD")).status_code == 409
    assert (await client.delete("/traits/HW_CPU_X86_AVX2")).status_code == 400
    assert (await client.delete(base)).status_code == 204
    assert (await client.delete("/traits/CUSTOM_GOLD")).status_code == 204


async def test_aggregates_with_generation(client):
    rp = await client.provider("agg")
    base = f"/resource_providers/{rp['uuid']}/aggregates"
    agg = str(uuid.uuid4())
    response = await client.put(base, json={"resource_provider_generation": 0, "aggregates": [agg]})
    assert response.status_code == 200
    assert response.json() == {"aggregates": [agg], "resource_provider_generation": 1}
    stale = await client.put(base, json={"resource_provider_generation": 0, "aggregates": []})
    assert stale.status_code == 409 and error_of(stale)["code"] == "placement.concurrent_update"
    old = await client.put(base, json=[agg], version="1.18")
    assert old.status_code == 200 and old.json() == {"aggregates": [agg]}
    listed = (await client.get(f"/resource_providers?member_of={agg}")).json()["resource_providers"]
    assert [p["uuid"] for p in listed] == [rp["uuid"]]
    listed = (await client.get(f"/resource_providers?member_of=!{agg}")).json()["resource_providers"]
    assert listed == []


async def test_resource_classes(client):
    listed = (await client.get("/resource_classes")).json()["resource_classes"]
    assert {"name": "VCPU", "links": [{"rel": "self", "href": "/resource_classes/VCPU"}]} in listed
    assert (await client.post("/resource_classes", json={"name": "CUSTOM_FPGA"})).status_code == 201
    dup = await client.post("/resource_classes", json={"name": "CUSTOM_FPGA"})
    assert dup.status_code == 409 and error_of(dup)["code"] == "placement.duplicate_name"
    assert (await client.post("/resource_classes", json={"name": "FPGA"})).status_code == 400
    assert (await client.put("/resource_classes/CUSTOM_FPGA")).status_code == 204
    assert (await client.put("/resource_classes/CUSTOM_NEW")).status_code == 201
    assert (await client.get("/resource_classes/CUSTOM_NEW")).json()["name"] == "CUSTOM_NEW"
    response = await client.delete("/resource_classes/VCPU")
    assert detail_of(response) == "Error in delete resource class: Cannot delete standard resource class VCPU."
    assert message_of(await client.put("/resource_classes/VCPU")) == (
        "JSON does not validate: 'VCPU' does not match '^CUSTOM_[A-Z0-9_]+$'")
    assert (await client.delete("/resource_classes/CUSTOM_NEW")).status_code == 204
    assert (await client.get("/resource_classes/CUSTOM_NEW")).status_code == 404


# ---------------------------------------------------------------- allocation candidates

async def test_allocation_candidates_basic(client):
    big = await client.provider("big", inventory=compute_inventory(vcpu=16), traits=["HW_CPU_X86_AVX2"])
    small = await client.provider("small", inventory=compute_inventory(vcpu=2))
    response = await client.get("/allocation_candidates?resources=VCPU:1,MEMORY_MB:512&limit=10")
    assert response.status_code == 200, response.text
    body = response.json()
    providers = {next(iter(r["allocations"])) for r in body["allocation_requests"]}
    assert providers == {big["uuid"], small["uuid"]}
    request = next(r for r in body["allocation_requests"] if big["uuid"] in r["allocations"])
    assert request["allocations"][big["uuid"]]["resources"] == {"VCPU": 1, "MEMORY_MB": 512}
    assert request["mappings"] == {"": [big["uuid"]]}
    summary = body["provider_summaries"][big["uuid"]]
    assert summary["resources"]["VCPU"] == {"capacity": 16, "used": 0}
    assert summary["resources"]["DISK_GB"] == {"capacity": 100, "used": 0}
    assert summary["traits"] == ["HW_CPU_X86_AVX2"] and summary["root_provider_uuid"] == big["uuid"]
    too_big = (await client.get("/allocation_candidates?resources=VCPU:4")).json()
    assert [next(iter(r["allocations"])) for r in too_big["allocation_requests"]] == [big["uuid"]]
    required = (await client.get("/allocation_candidates?resources=VCPU:1&required=HW_CPU_X86_AVX2")).json()
    assert list(required["provider_summaries"]) == [big["uuid"]]
    forbidden = (await client.get("/allocation_candidates?resources=VCPU:1&required=!HW_CPU_X86_AVX2")).json()
    assert list(forbidden["provider_summaries"]) == [small["uuid"]]
    limited = (await client.get("/allocation_candidates?resources=VCPU:1&limit=1")).json()
    assert len(limited["allocation_requests"]) == 1 and len(limited["provider_summaries"]) == 1
    old = (await client.get("/allocation_candidates?resources=VCPU:1", version="1.11")).json()
    assert isinstance(old["allocation_requests"][0]["allocations"], list)
    assert "traits" not in old["provider_summaries"][big["uuid"]]


async def test_allocation_candidates_member_of_and_errors(client):
    agg = str(uuid.uuid4())
    inside = await client.provider("inside", inventory=compute_inventory(), aggregates=[agg])
    await client.provider("outside", inventory=compute_inventory())
    body = (await client.get(f"/allocation_candidates?resources=VCPU:1&member_of={agg}")).json()
    assert list(body["provider_summaries"]) == [inside["uuid"]]
    body = (await client.get(f"/allocation_candidates?resources=VCPU:1&member_of=in:{agg},{uuid.uuid4()}")).json()
    assert list(body["provider_summaries"]) == [inside["uuid"]]
    for bad, detail in (
            ("resources=VCPU:0", "Requested resource VCPU requires amount >= 1. Got: 0."),
            ("resources=VCPU", "Badly formed resources parameter. Expected resources query string parameter in "
                               "form: ?resources=VCPU:2,MEMORY_MB:1024. Got: VCPU."),
            ("resources=CUSTOM_NOPE:1", "Invalid resource class in resources parameter: No such resource class "
                                        "CUSTOM_NOPE."),
            ("resources=VCPU:1&required=NOPE", "No such trait(s): NOPE."),
            ("resources=VCPU:1&member_of=nope", "Invalid query string parameters: Expected 'member_of' parameter "
                                                "to contain valid UUID(s). Got: nope"),
            ("required=HW_CPU_X86_AVX2", "There must be at least one resources or resources[$S] parameter."),
            ("resources=VCPU:1&bogus=1", "Invalid query string parameters: 'bogus' does not match any of the "
                                         "regexes: '^in_tree([a-zA-Z0-9_-]{1,64})?$', "
                                         "'^member_of([a-zA-Z0-9_-]{1,64})?$', '^required([a-zA-Z0-9_-]{1,64})?$', "
                                         "'^resources([a-zA-Z0-9_-]{1,64})?$'")):
        response = await client.get(f"/allocation_candidates?{bad}")
        assert response.status_code == 400, bad
        assert message_of(response) == detail, bad
    response = await client.get("/allocation_candidates?resources1=VCPU:1&resources2=MEMORY_MB:1")
    assert response.status_code == 400 and error_of(response)["code"] == "placement.undefined_code"
    assert detail_of(response) == ('The "group_policy" parameter is required when specifying more than one '
                                   '"resources{N}" parameter.')


async def test_allocation_candidates_nested_granular(client):
    root = await client.provider("host", inventory=compute_inventory(vcpu=8))
    gpu1 = await client.provider("gpu1", parent=root["uuid"], inventory={"VGPU": {"total": 1}},
                                 traits=["CUSTOM_FAST"])
    gpu2 = await client.provider("gpu2", parent=root["uuid"], inventory={"VGPU": {"total": 1}})
    body = (await client.get("/allocation_candidates?resources=VCPU:1&resources1=VGPU:1&required1=CUSTOM_FAST"
                             "&group_policy=none")).json()
    assert len(body["allocation_requests"]) == 1
    request = body["allocation_requests"][0]
    assert request["allocations"] == {root["uuid"]: {"resources": {"VCPU": 1}},
                                      gpu1["uuid"]: {"resources": {"VGPU": 1}}}
    assert request["mappings"] == {"": [root["uuid"]], "1": [gpu1["uuid"]]}
    assert set(body["provider_summaries"]) == {root["uuid"], gpu1["uuid"], gpu2["uuid"]}
    isolated = (await client.get("/allocation_candidates?resources1=VGPU:1&resources2=VGPU:1"
                                 "&group_policy=isolate")).json()
    assert len(isolated["allocation_requests"]) == 2
    together = (await client.get("/allocation_candidates?resources1=VGPU:1&resources2=VGPU:1"
                                 "&group_policy=none")).json()
    assert len(together["allocation_requests"]) == 2   # each GPU holds one only: never both groups on one
    flat = (await client.get("/allocation_candidates?resources=VCPU:1,VGPU:1", version="1.28")).json()
    assert flat["allocation_requests"] == []
    nested = (await client.get("/allocation_candidates?resources=VCPU:1,VGPU:1")).json()
    assert len(nested["allocation_requests"]) == 2
    rooted = (await client.get("/allocation_candidates?resources1=VGPU:1&root_required=!CUSTOM_FAST")).json()
    assert len(rooted["allocation_requests"]) == 2
    subtree = (await client.get("/allocation_candidates?resources_G=VGPU:1&required_T=CUSTOM_FAST"
                                "&same_subtree=_G,_T&group_policy=none")).json()
    assert [list(r["allocations"]) for r in subtree["allocation_requests"]] == [[gpu1["uuid"]]]


async def test_reshaper_moves_inventory_and_allocations_to_a_child(client):
    root = await client.provider("reshape-root", inventory=compute_inventory(VGPU={"total": 2}))
    child = await client.provider("reshape-gpu", parent=root["uuid"])
    consumer = str(uuid.uuid4())
    assert (await claim(client, consumer, root["uuid"], {"VCPU": 1, "VGPU": 1})).status_code == 204
    root_gen = (await client.get(f"/resource_providers/{root['uuid']}")).json()["generation"]
    body = {
        "inventories": {
            root["uuid"]: {"resource_provider_generation": root_gen, "inventories": compute_inventory()},
            child["uuid"]: {"resource_provider_generation": 0, "inventories": {"VGPU": {"total": 2}}}},
        "allocations": {consumer: {
            "allocations": {root["uuid"]: {"resources": {"VCPU": 1}}, child["uuid"]: {"resources": {"VGPU": 1}}},
            "project_id": "p1", "user_id": "u1", "consumer_generation": 1, "consumer_type": "INSTANCE"}},
    }
    assert (await client.post("/reshaper", json=body, version="1.29", token=SERVICE)).status_code == 404
    # as upstream, the reshaper is for the service role alone: an admin is refused before the body is read
    response = await client.post("/reshaper", content=b"not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 403, response.text
    assert detail_of(response) == "Policy does not allow placement:reshaper:reshape to be performed."
    response = await client.post("/reshaper", json=body, token=SERVICE)
    assert response.status_code == 204, response.text
    allocations = (await client.get(f"/allocations/{consumer}")).json()["allocations"]
    assert allocations[child["uuid"]]["resources"] == {"VGPU": 1}
    # dropping inventory that is still allocated fails as a whole
    gen = (await client.get(f"/resource_providers/{child['uuid']}")).json()["generation"]
    response = await client.post("/reshaper", json={
        "inventories": {child["uuid"]: {"resource_provider_generation": gen, "inventories": {}}}, "allocations": {}},
        token=SERVICE)
    assert response.status_code == 409 and error_of(response)["code"] == "placement.inventory.inuse"
    # upstream's schema: at least one provider's inventories, keyed by 36 hex digits and dashes
    for inventories, detail in (({}, "{} should be non-empty"), (
            {child["uuid"].replace("-", ""): {"resource_provider_generation": gen, "inventories": {}}},
            f"'{child['uuid'].replace('-', '')}' does not match any of the regexes: '^[0-9a-fA-F-]{{36}}$'")):
        response = await client.post("/reshaper", json={"inventories": inventories, "allocations": {}}, token=SERVICE)
        assert response.status_code == 400 and message_of(response) == f"JSON does not validate: {detail}"
    # as upstream, the reshaper takes a reserved amount above the total (the inventory routes refuse it)
    response = await client.post("/reshaper", json={"inventories": {child["uuid"]: {
        "resource_provider_generation": gen, "inventories": {"VGPU": {"total": 2, "reserved": 3}}}},
        "allocations": {}}, token=SERVICE)
    assert response.status_code == 204, response.text


async def test_candidates_after_a_restart_summarize_classes_not_asked_for(client):
    """A fresh process knows no class names yet: the summaries of a tree (1.27+: every class of every
    provider of the tree) must still name the child's class that the query did not ask for."""
    from kilonova.placement.objects import resource_classes
    root = await client.provider("restart-host", inventory=compute_inventory(vcpu=4))
    nic = await client.provider("restart-nic", parent=root["uuid"], inventory={"SRIOV_NET_VF": {"total": 8}})
    resource_classes._caches.clear()   # what a restarted Placement process starts from
    response = await client.get("/allocation_candidates?resources=VCPU:1")
    assert response.status_code == 200, response.text
    summaries = response.json()["provider_summaries"]
    assert summaries[nic["uuid"]]["resources"] == {"SRIOV_NET_VF": {"capacity": 8, "used": 0}}
    assert summaries[root["uuid"]]["resources"]["VCPU"] == {"capacity": 4, "used": 0}


async def test_large_candidate_bodies_are_sent_in_slices(client, monkeypatch):
    from kilonova.placement.handlers import allocation_candidate
    for i in range(4):
        await client.provider(f"slice-{i}", inventory=compute_inventory())
    whole = await client.get("/allocation_candidates?resources=VCPU:1")
    monkeypatch.setattr(allocation_candidate.SlicedResponse, "SLICE", 100)
    sliced = await client.get("/allocation_candidates?resources=VCPU:1")
    assert sliced.status_code == 200 and len(sliced.content) > 400
    assert sliced.content == whole.content
    assert int(sliced.headers["content-length"]) == len(sliced.content)
    assert len(sliced.json()["allocation_requests"]) == 4


async def test_candidates_split_between_a_host_and_a_sharing_provider_at_each_format(client):
    agg = str(uuid.uuid4())
    host = await client.provider("share-host", inventory=compute_inventory(), aggregates=[agg])
    pool = await client.provider("ip-pool", inventory={"IPV4_ADDRESS": {"total": 16}}, aggregates=[agg],
                                 traits=["MISC_SHARES_VIA_AGGREGATE"])
    query = "/allocation_candidates?resources=VCPU:2,IPV4_ADDRESS:1,MEMORY_MB:64"
    latest = (await client.get(query)).json()["allocation_requests"]
    assert latest == [{"allocations": {pool["uuid"]: {"resources": {"IPV4_ADDRESS": 1}},
                                       host["uuid"]: {"resources": {"MEMORY_MB": 64, "VCPU": 2}}},
                       "mappings": {"": [pool["uuid"], host["uuid"]]}}]
    no_mappings = (await client.get(query, version="1.33")).json()["allocation_requests"]
    assert no_mappings == [{"allocations": latest[0]["allocations"]}]
    listed = (await client.get(query, version="1.11")).json()["allocation_requests"]
    assert listed == [{"allocations": [
        {"resource_provider": {"uuid": pool["uuid"]}, "resources": {"IPV4_ADDRESS": 1}},
        {"resource_provider": {"uuid": host["uuid"]}, "resources": {"MEMORY_MB": 64, "VCPU": 2}}]}]


async def test_below_1_29_candidates_use_at_most_one_provider_of_a_tree(client):
    """As upstream: before 1.29 the search still sees the trees, then drops every candidate that uses
    two providers of one tree; summaries list only the providers the candidates use."""
    root = await client.provider("flat-host", inventory=compute_inventory(vcpu=8))
    gpu = await client.provider("flat-gpu", parent=root["uuid"], inventory={"VGPU": {"total": 2}})
    alone = (await client.get("/allocation_candidates?resources=VGPU:1", version="1.28")).json()
    assert alone["allocation_requests"] == [{"allocations": {gpu["uuid"]: {"resources": {"VGPU": 1}}}}]
    assert list(alone["provider_summaries"]) == [gpu["uuid"]]
    assert "root_provider_uuid" not in alone["provider_summaries"][gpu["uuid"]]
    both = (await client.get("/allocation_candidates?resources=VCPU:1,VGPU:1", version="1.28")).json()
    assert both == {"allocation_requests": [], "provider_summaries": {}}
    nested = (await client.get("/allocation_candidates?resources=VGPU:1", version="1.29")).json()
    assert set(nested["provider_summaries"]) == {root["uuid"], gpu["uuid"]}
