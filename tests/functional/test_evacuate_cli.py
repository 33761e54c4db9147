"""Evacuation through the real `openstack` and `nova` CLIs, openstacksdk and plain HTTP, on its own `kilonova up`
(its first host is forced down, then the whole cloud restarts: the failed host's agent comes back)."""
from __future__ import annotations

import shutil

import pytest

from tests.cloud import new_cloud, wait_for
from tests.functional.test_rebuild_cli import action_events

# compute4 fails every spawn and is disabled, compute5 is disabled: only a forced evacuation reaches them. A pause takes
# seconds: long enough to try an evacuation while it is under way.
PAUSE_SECONDS = 12
CONFIG = {"fake_driver": {"fail_spawn_hosts": "compute4", "step_delays": f"pause={PAUSE_SECONDS}"}}


@pytest.fixture(scope="module")
def evac_cloud():
    cloud = new_cloud(hosts=5, config=CONFIG)
    cloud.start()
    cloud.openstack("compute", "service", "set", "--disable", "compute5", "nova-compute")
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def api(cloud, version: str, cloud_name: str = "kilonova"):
    client = cloud.http("compute", cloud_name)
    client.headers["OpenStack-API-Version"] = f"compute {version}"
    return client


def evacuate(cloud, uuid: str, body: dict, version: str, cloud_name: str = "kilonova"):
    with api(cloud, version, cloud_name) as client:
        return client.post(f"/servers/{uuid}/action", json={"evacuate": body})


def allocations(cloud) -> dict[str, dict[str, dict]]:
    """provider name -> {consumer: resources}, straight from Placement."""
    with cloud.http("placement") as placement:
        placement.headers["OpenStack-API-Version"] = "placement 1.36"
        found = {}
        for provider in placement.get("/resource_providers").json()["resource_providers"]:
            held = placement.get(f"/resource_providers/{provider['uuid']}/allocations").json()["allocations"]
            found[provider["name"]] = {consumer: a["resources"] for consumer, a in held.items()}
        return found


def migrations_of(cloud, uuid: str) -> list[dict]:
    """The server's migration records, oldest first (os-migrations, 2.59)."""
    with api(cloud, "2.59") as client:
        return list(reversed(client.get("/os-migrations", params={"instance_uuid": uuid}).json()["migrations"]))


def boot(cloud, name: str, host: str) -> dict:
    return cloud.openstack("--os-compute-api-version", "2.74", "server", "create", "--flavor", "m1.tiny",
                           "--image", "kilonova-tiny", "--network", "private", "--host", host, "--wait", name,
                           fmt_json=True)


def ports(cloud, uuid: str) -> dict[str, dict]:
    return {p["id"]: p for p in (cloud.openstack("port", "show", row["ID"], fmt_json=True)
                                 for row in cloud.openstack("port", "list", "--server", uuid, fmt_json=True))}


def test_evacuate_from_a_forced_down_host_then_the_host_comes_back(evac_cloud):
    cloud = evac_cloud
    cloud.openstack("compute", "service", "set", "--disable", "compute4", "nova-compute")
    active = boot(cloud, "ev-active", "compute1")
    stopped = boot(cloud, "ev-stopped", "compute1")
    forced = boot(cloud, "ev-forced", "compute1")
    doomed = boot(cloud, "ev-doomed", "compute1")
    cloud.openstack("server", "stop", stopped["id"])
    cloud.wait_status(stopped["id"], "SHUTOFF")
    before_ports = {s["id"]: ports(cloud, s["id"]) for s in (active, stopped, forced)}

    # While compute1 is up: upstream's 400, nothing recorded.
    alive = evacuate(cloud, active["id"], {}, "2.68")
    assert alive.status_code == 400
    assert alive.json()["badRequest"]["message"] == "Compute service of compute1 is still in use."
    refused = cloud.nova("evacuate", active["id"], check=False)
    assert refused.returncode != 0 and "Compute service of compute1 is still in use." in refused.stderr

    cloud.openstack("compute", "service", "set", "--down", "compute1", "nova-compute")
    with api(cloud, "2.11") as client:
        service = client.get("/os-services", params={"host": "compute1"}).json()["services"][0]
    assert service["state"] == "down" and service["forced_down"] is True

    # Microversion boundaries and upstream's refusals.
    uuid = active["id"]
    assert evacuate(cloud, uuid, {}, "2.13").status_code == 400  # onSharedStorage required until 2.14
    assert evacuate(cloud, uuid, {"onSharedStorage": False}, "2.14").status_code == 400
    assert evacuate(cloud, uuid, {"host": "compute2", "force": True}, "2.28").status_code == 400
    assert evacuate(cloud, uuid, {"host": "compute2", "force": True}, "2.68").status_code == 400
    no_host = evacuate(cloud, uuid, {"force": True}, "2.29")
    assert no_host.status_code == 400
    assert no_host.json()["badRequest"]["message"] == "Can't force to a non-provided destination"
    unknown = evacuate(cloud, uuid, {"host": "compute9"}, "2.29")
    assert unknown.status_code == 404 and unknown.json()["itemNotFound"]["message"] == "Compute host compute9 not found."
    same = evacuate(cloud, uuid, {"host": "compute1"}, "2.29")
    assert same.status_code == 400
    assert same.json()["badRequest"]["message"] == "The target host can't be the same one."
    shared = evacuate(cloud, uuid, {"onSharedStorage": True, "adminPass": "x"}, "2.13")
    assert shared.status_code == 400
    assert shared.json()["badRequest"]["message"] == "admin password can't be changed on existing disk"
    assert cloud.openstack("server", "show", uuid, fmt_json=True)["status"] == "ACTIVE", "nothing was started"

    # The nova CLI, to a named host (scheduled there: from 2.29 a host is checked by the scheduler). It
    # negotiates 2.96: from 2.95 an evacuated server ends stopped, as upstream.
    cloud.nova("evacuate", "--password", "n0va-pass", uuid, "compute2")
    shown = cloud.wait_status(uuid, "SHUTOFF")
    assert shown["OS-EXT-SRV-ATTR:host"] == "compute2"
    # The openstack CLI, scheduled (a stopped server ends stopped).
    cloud.openstack("server", "evacuate", stopped["id"])
    moved = cloud.wait_status(stopped["id"], "SHUTOFF")
    assert moved["OS-EXT-SRV-ATTR:host"] in ("compute2", "compute3")
    # Before 2.14, forced to the named host, the password in the answer.
    legacy = evacuate(cloud, forced["id"], {"host": "compute3", "onSharedStorage": False, "adminPass": "old-way"},
                      "2.13")
    assert legacy.status_code == 200 and legacy.json() == {"adminPass": "old-way"}
    assert cloud.wait_status(forced["id"], "ACTIVE")["OS-EXT-SRV-ATTR:host"] == "compute3"

    for server in (active, stopped, forced):
        shown = cloud.openstack("server", "show", server["id"], fmt_json=True)
        assert shown["addresses"] == server["addresses"], "the server keeps its ports and addresses"
        now = ports(cloud, server["id"])
        assert set(now) == set(before_ports[server["id"]])
        assert {p["binding_host_id"] for p in now.values()} == {shown["OS-EXT-SRV-ATTR:host"]}
        console = cloud.openstack("console", "log", "show", server["id"]).stdout
        assert f"Kilonova fake hypervisor {shown['OS-EXT-SRV-ATTR:host']}: booting" in console

    assert action_events(cloud, uuid, "evacuate") == {
        "conductor_rebuild_instance": "Success", "rebuild_server": "Success", "compute_rebuild_instance": "Success"}
    assert [(m["migration_type"], m["status"], m["source_compute"], m["dest_compute"])
            for m in migrations_of(cloud, uuid)] == [("evacuation", "done", "compute1", "compute2")]

    # A forced evacuation to a host whose spawn fails: back on compute1 in ERROR, no claim left there.
    failed = evacuate(cloud, doomed["id"], {"host": "compute4", "force": True}, "2.29")
    assert failed.status_code == 200 and failed.text == ""
    errored = cloud.wait_status(doomed["id"], "ERROR")
    assert errored["OS-EXT-SRV-ATTR:host"] == "compute1"
    assert "Evacuation to compute4 failed" in errored["fault"]["message"]
    assert action_events(cloud, doomed["id"], "evacuate")["compute_rebuild_instance"] == "Error"
    assert [m["status"] for m in migrations_of(cloud, doomed["id"])] == ["failed"]
    assert doomed["id"] not in allocations(cloud)["compute4"]
    # From ERROR it may be evacuated again (scheduled, 2.68: no force any more).
    assert evacuate(cloud, doomed["id"], {"host": "compute3"}, "2.68").status_code == 200
    assert cloud.wait_status(doomed["id"], "ACTIVE")["OS-EXT-SRV-ATTR:host"] == "compute3"

    # Until compute1 comes back, every evacuated server holds its claim there too (as upstream).
    held = allocations(cloud)
    servers = {s["id"] for s in (active, stopped, forced, doomed)}
    assert set(held["compute1"]) == servers
    assert {uuid for name in ("compute2", "compute3") for uuid in held[name]} == servers
    cloud.audit()

    # compute1 may not be forced up before its agent cleaned up (upstream's 400).
    with api(cloud, "2.53") as client:
        service_id = client.get("/os-services", params={"host": "compute1"}).json()["services"][0]["id"]
        early = client.put(f"/os-services/{service_id}", json={"forced_down": False})
    assert early.status_code == 400
    assert early.json()["badRequest"]["message"].startswith("Unable to force up host compute1 as `done` evacuation")

    # compute1 comes back: its stale guests are destroyed and its claims released; nothing runs twice.
    assert cloud.stop() == 0
    cloud.start()
    held = allocations(cloud)
    assert held["compute1"] == {}
    assert {uuid for name in ("compute2", "compute3") for uuid in held[name]} == servers
    for server in (forced, doomed):  # evacuated before 2.95: running again
        assert cloud.openstack("server", "show", server["id"], fmt_json=True)["status"] == "ACTIVE"
    assert cloud.openstack("server", "show", active["id"], fmt_json=True)["status"] == "SHUTOFF"
    cloud.audit()
    assert {m["status"] for s in servers for m in migrations_of(cloud, s)} == {"completed", "failed"}
    cloud.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--up", "compute1", "nova-compute")
    with api(cloud, "2.53") as client:
        assert client.get("/os-services", params={"host": "compute1"}).json()["services"][0]["state"] == "up"

    for server in (active, stopped, forced, doomed):
        cloud.openstack("server", "delete", "--wait", server["id"])
    assert all(held == {} for name, held in allocations(cloud).items())


def test_evacuate_with_openstacksdk(evac_cloud):
    cloud = evac_cloud
    server = boot(cloud, "ev-sdk", "compute2")
    conn = cloud.sdk()
    cloud.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--down", "compute2",
                    "nova-compute")
    try:
        conn.compute.evacuate_server(server["id"], host="compute3", admin_pass="sdk-pass")
        # The SDK negotiates 2.100: from 2.95 the server ends stopped at its destination.
        moved = conn.compute.wait_for_server(conn.compute.get_server(server["id"]), status="SHUTOFF", wait=60)
        assert moved.compute_host == "compute3"
    finally:
        cloud.openstack("server", "delete", "--wait", server["id"], check=False)


def test_evacuate_is_refused_while_a_task_is_under_way_or_from_paused(evac_cloud):
    """Upstream's evacuate starts from ACTIVE, SHUTOFF or ERROR with no task under way: 409 otherwise."""
    cloud = evac_cloud
    server = boot(cloud, "ev-busy", "compute3")
    try:
        cloud.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--down", "compute3",
                        "nova-compute")
        cloud.openstack("server", "pause", server["id"])  # the fake driver holds the pause a few seconds
        busy = cloud.nova("evacuate", server["id"], check=False)
        assert busy.returncode != 0 and "(HTTP 409)" in busy.stderr
        assert f"Cannot 'evacuate' instance {server['id']} while it is in task_state pausing" in busy.stderr
        cloud.wait_status(server["id"], "PAUSED", timeout=PAUSE_SECONDS + 30)
        paused = evacuate(cloud, server["id"], {}, "2.68")
        assert paused.status_code == 409
        assert paused.json()["conflictingRequest"]["message"] == \
            f"Cannot 'evacuate' instance {server['id']} while it is in vm_state paused"
        actions = [row["Action"] for row in cloud.openstack("server", "event", "list", server["id"], fmt_json=True)]
        assert "evacuate" not in actions, "nothing was started"
        assert migrations_of(cloud, server["id"]) == []
    finally:
        cloud.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--up", "compute3",
                        "nova-compute")
        cloud.openstack("server", "delete", "--wait", server["id"], check=False)


def _volume(cloud, volume_id: str) -> dict:
    return cloud.openstack("volume", "show", volume_id, fmt_json=True)


def _attached_on(cloud, project: str, server_id: str, volume_ids: list[str], host: str) -> dict[str, str]:
    """Once every volume is ``in-use`` with one attachment, to the server on ``host`` (polled over HTTP, then
    as ``openstack volume show`` shows it): {volume: attachment id}."""
    def settled(shown: dict[str, dict]) -> bool:
        return all(s["status"] == "in-use" and [(a["server_id"], a["host_name"]) for a in s["attachments"]]
                   == [(server_id, host)] for s in shown.values())
    with cloud.http("block-storage") as api:
        wait_for(lambda: settled({v: api.get(f"/v3/{project}/volumes/{v}").json()["volume"] for v in volume_ids}),
                 f"the volumes of {server_id} in-use on {host}", timeout=30)
    shown = {v: _volume(cloud, v) for v in volume_ids}
    assert settled(shown), shown
    return {v: s["attachments"][0]["attachment_id"] for v, s in shown.items()}


def _gone(cloud, attachment_id: str) -> bool:
    shown = cloud.openstack("--os-volume-api-version", "3.27", "volume", "attachment", "show", attachment_id,
                            check=False)
    return shown.returncode != 0 and "could not be found" in shown.stderr


def test_evacuate_a_volume_backed_server_with_a_data_volume(evac_cloud):
    """As upstream: the destination makes new attachments of the server's volumes with its own connector and
    completes them; the failed source's are deleted (nothing is disconnected on it: it is down). A destination
    whose spawn fails deletes its new attachments: the server is back on its source in ERROR, its volumes still
    its own (reserved for it), and it evacuates again, then again from its new host. (The source's clean-up when
    it comes back, which leaves the attachments alone: tests/distributed/test_evacuate.py.)"""
    cloud = evac_cloud
    data = cloud.openstack("volume", "create", "--size", "1", "ev-data", fmt_json=True)
    server = cloud.openstack("--os-compute-api-version", "2.74", "server", "create", "--flavor", "m1.tiny",
                             "--image", "kilonova-tiny", "--boot-from-volume", "1", "--network", "private",
                             "--host", "compute3", "--wait", "ev-bfv", fmt_json=True)
    uuid, project = server["id"], cloud.sdk().current_project_id
    try:
        cloud.openstack("server", "add", "volume", uuid, data["id"])
        volume_ids = [v["id"] for v in cloud.openstack("server", "show", uuid, fmt_json=True)["volumes_attached"]]
        assert data["id"] in volume_ids and len(volume_ids) == 2
        first = _attached_on(cloud, project, uuid, volume_ids, "compute3")
        cloud.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--down", "compute3",
                        "nova-compute")

        # Forced to compute4, whose spawn fails: its new attachments go; the source's went before the spawn.
        assert evacuate(cloud, uuid, {"host": "compute4", "force": True}, "2.29").status_code == 200
        errored = cloud.wait_status(uuid, "ERROR")
        assert errored["OS-EXT-SRV-ATTR:host"] == "compute3"
        assert "Evacuation to compute4 failed" in errored["fault"]["message"]
        assert sorted(v["id"] for v in errored["volumes_attached"]) == sorted(volume_ids)
        for volume_id in volume_ids:
            shown = _volume(cloud, volume_id)
            assert (shown["status"], shown["attachments"]) == ("reserved", []), "reserved for the server, no host's"
        assert all(_gone(cloud, a) for a in first.values())

        # Evacuated again (the openstack CLI), to compute1: new attachments, connected there, in-use. The CLI
        # negotiates 2.95 or later: the server ends stopped.
        cloud.openstack("server", "evacuate", "--host", "compute1", uuid)
        assert cloud.wait_status(uuid, "SHUTOFF")["OS-EXT-SRV-ATTR:host"] == "compute1"
        second = _attached_on(cloud, project, uuid, volume_ids, "compute1")
        assert not set(second.values()) & set(first.values())
        console = cloud.openstack("console", "log", "show", uuid).stdout
        booted = console[console.index("compute1: booting ev-bfv from volume "):]
        assert all(f"volume {v} attached" in booted for v in volume_ids), console

        # A second evacuation (the nova CLI, forced at 2.29), compute1 to compute5: the attachments change again.
        cloud.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--down", "compute1",
                        "nova-compute")
        cloud.nova("--os-compute-api-version", "2.29", "evacuate", "--force", uuid, "compute5")
        assert cloud.wait_status(uuid, "SHUTOFF")["OS-EXT-SRV-ATTR:host"] == "compute5"
        third = _attached_on(cloud, project, uuid, volume_ids, "compute5")
        assert not set(third.values()) & set(second.values())
        assert all(_gone(cloud, a) for a in second.values())
        cloud.audit()
    finally:
        cloud.openstack("server", "delete", "--wait", uuid, check=False)
        for host in ("compute1", "compute3"):
            cloud.openstack("--os-compute-api-version", "2.53", "compute", "service", "set", "--up", host,
                            "nova-compute", check=False)
    wait_for(lambda: _volume(cloud, data["id"])["status"] == "available", "ev-data detached", timeout=30)
    cloud.openstack("volume", "delete", data["id"])
