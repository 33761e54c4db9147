"""Bad requests get the status and error body upstream gives: never a 500, nothing half-created."""
from __future__ import annotations

import pytest

from kilonova.compute.api import microversions


@pytest.fixture(scope="module")
def compute(cloud):
    with cloud.http("compute") as client:
        yield client


def _server_body(cloud, **overrides):
    with cloud.http("image") as image, cloud.http("network") as network:
        image_id = next(i["id"] for i in image.get("/v2/images").json()["images"] if i["name"] == "kilonova-tiny")
        net_id = next(n["id"] for n in network.get("/v2.0/networks").json()["networks"] if n["name"] == "private")
    server = {"name": "bad", "flavorRef": "1", "imageRef": image_id, "networks": [{"uuid": net_id}]}
    server.update(overrides)
    return {"server": server}


def test_missing_and_invalid_tokens_are_401(cloud):
    with cloud.http("compute", cloud=None) as anonymous:
        assert anonymous.get("/servers").status_code == 401
        forged = anonymous.get("/servers", headers={"X-Auth-Token": "gAAAAABnot-a-real-token"})
        assert forged.status_code == 401
        # The version document at /v2.1 stays public (/v2.1/ is the API's, as upstream's api-paste.ini has it).
        assert anonymous.get(cloud.urls["compute"]).status_code == 200
        assert anonymous.get("/").status_code == 401
    with cloud.http("identity", cloud=None) as identity:
        wrong = identity.post("/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": "admin", "password": "wrong", "domain": {"id": "default"}}}}}})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == 401


def test_revoked_token_is_refused_by_identity(cloud):
    token = cloud.token()
    with cloud.http("identity") as identity:
        assert identity.delete("/auth/tokens", headers={"X-Subject-Token": token}).status_code == 204
        assert identity.get("/auth/tokens", headers={"X-Subject-Token": token}).status_code == 404


def test_malformed_and_invalid_server_requests(cloud, compute):
    malformed = compute.post("/servers", content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and "badRequest" in malformed.json()
    long_name = compute.post("/servers", json=_server_body(cloud, name="x" * 256))
    assert long_name.status_code == 400
    assert "badRequest" in long_name.json()
    wrong_type = compute.post("/servers", json=_server_body(cloud, min_count="many"))
    assert wrong_type.status_code == 400
    # a number written as a string is held to the bounds, as Nova's validator holds it
    zero = compute.post("/servers", json=_server_body(cloud, min_count="0"))
    assert zero.status_code == 400
    assert "0 is less than the minimum of 1" in zero.json()["badRequest"]["message"]
    unknown_flavor = compute.post("/servers", json=_server_body(cloud, flavorRef="no-such-flavor"))
    assert unknown_flavor.status_code == 400
    assert "Flavor no-such-flavor could not be found" in unknown_flavor.json()["badRequest"]["message"]
    oversized = compute.post("/servers", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                             headers={"Content-Type": "application/json"})
    assert oversized.status_code == 413
    names = [s["name"] for s in compute.get("/servers").json()["servers"]]
    assert "bad" not in names and "x" * 256 not in names


def test_unknown_server_and_microversions(compute):
    missing = compute.get("/servers/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["code"] == 404
    too_new = compute.get("/servers", headers={"OpenStack-API-Version": "compute 2.999"})
    assert too_new.status_code == 406
    latest = compute.get("/flavors", headers={"OpenStack-API-Version": "compute latest"})
    assert latest.status_code == 200
    assert latest.headers["OpenStack-API-Version"] == f"compute {microversions.MAX_VERSION}"
    legacy = compute.get("/flavors", headers={"X-OpenStack-Nova-API-Version": "2.25"})
    assert legacy.headers["X-OpenStack-Nova-API-Version"] == "2.25"


def test_duplicate_keypair_is_409(compute):
    first = compute.post("/os-keypairs", json={"keypair": {"name": "dup-key"}},
                         headers={"OpenStack-API-Version": "compute 2.10"})
    assert first.status_code == 201
    try:
        again = compute.post("/os-keypairs", json={"keypair": {"name": "dup-key"}},
                             headers={"OpenStack-API-Version": "compute 2.10"})
        assert again.status_code == 409
        assert again.json()["conflictingRequest"]["code"] == 409
    finally:
        compute.delete("/os-keypairs/dup-key")


def test_demo_cannot_touch_admins_server_or_admin_apis(cloud, compute):
    created = compute.post("/servers", json=_server_body(cloud, name="admins-only"))
    assert created.status_code == 202
    server_id = created.json()["server"]["id"]
    try:
        with cloud.http("compute", cloud="kilonova-demo") as demo:
            assert demo.get(f"/servers/{server_id}").status_code == 404
            assert demo.delete(f"/servers/{server_id}").status_code == 404
            assert demo.post(f"/servers/{server_id}/action", json={"os-stop": None}).status_code == 404
            assert demo.get("/os-hypervisors").status_code == 403
            assert demo.get("/servers", params={"all_tenants": "1"}).status_code == 403 or \
                server_id not in [s["id"] for s in demo.get("/servers", params={"all_tenants": "1"}).json()["servers"]]
    finally:
        compute.delete(f"/servers/{server_id}")
