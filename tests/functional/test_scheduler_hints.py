"""The same_host, different_host and query scheduler hints on the shared four-host cloud: the real
`openstack server create --hint same_host=...` once, openstacksdk for the rest; the "No valid host" fault
naming the hint's filter; the create schema's hint validation as upstream's."""
from __future__ import annotations

import json

import pytest

from tests import forked_cli
from tests.cloud import client_env, wait_for
from tests.projects import member_of_new_project

PROJECT = "hints"


@pytest.fixture(scope="module")
def member(cloud):
    admin, project, conn = member_of_new_project(cloud, PROJECT)
    yield admin, project, conn
    for server in conn.compute.servers():
        conn.compute.delete_server(server)
    wait_for(lambda: not list(conn.compute.servers()), "the servers to go", timeout=60)


def boot(conn, name: str, hints: dict):
    image = conn.image.find_image("kilonova-tiny")
    body = {"server": {"name": name, "flavorRef": "1", "imageRef": image.id, "networks": "none"},
            "os:scheduler_hints": hints}
    return conn.compute.post("/servers", json=body, microversion="2.37")


def settled(conn, server_id: str):
    wait_for(lambda: conn.compute.get_server(server_id).status in ("ACTIVE", "ERROR"), "the build to end", 60)
    return conn.compute.get_server(server_id)


def booted(conn, name: str, hints: dict) -> str:
    response = boot(conn, name, hints)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def test_same_host_and_different_host_place_servers_by_other_servers(cloud, member):
    admin, _, conn = member
    first = booted(conn, "anchor", {})
    assert settled(conn, first).status == "ACTIVE"
    anchor_host = admin.compute.get_server(first).compute_host

    env = {**client_env(), "OS_AUTH_URL": cloud.auth()["auth_url"], "OS_USERNAME": f"{PROJECT}-user",
           "OS_PASSWORD": f"{PROJECT}-pw", "OS_PROJECT_NAME": PROJECT, "OS_USER_DOMAIN_NAME": "Default",
           "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne", "OS_IDENTITY_API_VERSION": "3"}
    done = forked_cli.run("openstack", ["server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                        "--network", "private", "--hint", f"same_host={first}", "--wait",
                                        "-f", "json", "beside"], env, 120)
    assert done.returncode == 0, done.stderr
    beside = json.loads(done.stdout)["id"]
    assert admin.compute.get_server(beside).compute_host == anchor_host

    away = booted(conn, "away", {"different_host": [first, beside]})
    assert settled(conn, away).status == "ACTIVE"
    assert admin.compute.get_server(away).compute_host != anchor_host

    # A server that is on no host: no host holds it, and the fault says which filter removed them all.
    nowhere = booted(conn, "nowhere", {"same_host": "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa"})
    failed = settled(admin, nowhere)
    assert failed.status == "ERROR"
    assert "SameHostFilter removed" in failed.fault["message"] + failed.fault.get("details", "")
    assert "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa (same_host hint)" in failed.fault.get("details", "") + \
        failed.fault["message"]


def test_query_hint_picks_hosts_by_their_state(member):
    admin, _, conn = member
    roomy = booted(conn, "roomy", {"query": json.dumps(["and", [">=", "$free_ram_mb", 64],
                                                          ["in", "$hypervisor_type", "fake", "QEMU"]])})
    assert settled(conn, roomy).status == "ACTIVE"
    chosen = admin.compute.get_server(roomy).compute_host
    only = booted(conn, "only", {"query": json.dumps(["=", "$host", chosen])})
    assert settled(conn, only).status == "ACTIVE"
    assert admin.compute.get_server(only).compute_host == chosen

    impossible = booted(conn, "impossible", {"query": '[">=", "$free_ram_mb", 1000000000]'})
    failed = settled(admin, impossible)
    assert failed.status == "ERROR"
    text = failed.fault["message"] + failed.fault.get("details", "")
    assert "JsonFilter removed" in text and '[">=", "$free_ram_mb", 1000000000]' in text


@pytest.mark.parametrize("hints, words", [
    ({"different_host": "not-a-uuid"}, "'not-a-uuid' does not match"),   # a oneOf: the branch's own error
    ({"same_host": ["not-a-uuid"]}, "Value: not-a-uuid."),    # Nova names the innermost field: the item
    ({"query": 5}, "query"),
    ({"group": "not-a-uuid"}, "group"),
    ({"build_near_host_ip": "10.0.0.1", "cidr": "24"}, "cidr"),
    ({"different_cell": 5}, "different_cell"),
], ids=["different_host-not-uuid", "same_host-item-not-uuid", "query-number", "group-not-uuid", "cidr-no-slash",
        "different_cell-number"])
def test_hints_are_validated_as_upstream(member, hints, words):
    _, _, conn = member
    response = boot(conn, "bad-hint", hints)
    assert response.status_code == 400, response.text
    assert words in response.json()["badRequest"]["message"]


def test_manage_scheduler_explain_dry_runs_a_request(cloud, member):
    """`kilonova manage scheduler explain`: the stages and the weighed hosts of a request, nothing claimed;
    a request no host takes says which stage removed which hosts (exit code 3)."""
    audit_before = cloud.audit()
    fits = cloud.manage("scheduler", "explain", "--flavor", "m1.tiny", "--project", PROJECT, "--json")
    answer = json.loads(fits.stdout)
    assert answer["error"] is None and answer["chosen"], fits.stdout
    assert [s["stage"] for s in answer["stages"]][:1] == ["placement"]
    assert answer["weighed"][0]["host"] == answer["chosen"]
    away = cloud.manage("scheduler", "explain", "--flavor", "m1.tiny", "--hint", f"query=[\"=\", \"$host\", "
                        f"\"{answer['chosen']}\"]", "--hint", "target_cell=nowhere", check=False)
    assert away.returncode == 0, away.stdout + away.stderr   # TargetCellFilter is off by default: hint ignored
    assert f"Would choose: {answer['chosen']}" in away.stdout
    nowhere = cloud.manage("scheduler", "explain", "--flavor", "m1.tiny", "--availability-zone", "no-such-zone",
                           check=False)
    assert nowhere.returncode == 3, nowhere.stdout + nowhere.stderr
    assert "AvailabilityZoneFilter" in nowhere.stdout and "not in the requested availability zone" in nowhere.stdout
    assert "No valid host was found." in nowhere.stdout
    assert cloud.audit() == audit_before   # the dry runs claimed nothing


def test_a_disabled_compute_service_is_left_out_by_placement_and_explained(cloud):
    """`openstack compute service set --disable`: at its next heartbeat the host's provider carries
    COMPUTE_STATUS_DISABLED (the compute_status_filter pre-filter leaves it out), and enabled again loses it."""
    host = "compute4"

    def traits():
        with cloud.http("placement") as placement:
            placement.headers["OpenStack-API-Version"] = "placement 1.36"
            [provider] = placement.get("/resource_providers", params={"name": host}).json()["resource_providers"]
            return set(placement.get(f"/resource_providers/{provider['uuid']}/traits").json()["traits"])

    cloud.openstack("compute", "service", "set", "--disable", host, "nova-compute")
    try:
        wait_for(lambda: "COMPUTE_STATUS_DISABLED" in traits(), "the disabled trait", timeout=60)
        there = cloud.manage("scheduler", "explain", "--flavor", "m1.tiny", "--host", host, check=False)
        assert there.returncode == 3, there.stdout + there.stderr
        assert "pre-filter compute_status_filter left none" in there.stdout
    finally:
        cloud.openstack("compute", "service", "set", "--enable", host, "nova-compute")
    wait_for(lambda: "COMPUTE_STATUS_DISABLED" not in traits(), "the disabled trait to go", timeout=60)
