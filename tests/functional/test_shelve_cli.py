"""Shelve, shelve offload, unshelve and createBackup through the real `openstack` and `nova` CLIs and
openstacksdk against `kilonova up` (fake driver): statuses, the shelved image, Placement usage (none
while offloaded), the host after unshelve, ports kept, upstream's 409s and microversion boundaries."""
from __future__ import annotations

import shutil
import time

import pytest

from tests.cloud import new_cloud, wait_for


def wait_status(cloud, server: str, status: str, timeout: float = 30) -> dict:
    """The server in ``status`` with its task over (shelving passes through each status with a task)."""
    return cloud.wait_status(server, status, timeout, settled=True)


def allocations(cloud, uuid: str) -> dict:
    with cloud.http("placement") as placement:
        reply = placement.get(f"/allocations/{uuid}", headers={"OpenStack-API-Version": "placement 1.28"})
        assert reply.status_code == 200, reply.text
        return reply.json()["allocations"]


def images_named(cloud, name: str) -> list[dict]:
    return [i for i in cloud.openstack("image", "list", "--long", fmt_json=True) if i["Name"] == name]


def ports_of(cloud, uuid: str) -> list[dict]:
    with cloud.http("network") as network:
        return network.get("/v2.0/ports", params={"device_id": uuid}).json()["ports"]


def action(cloud, uuid: str, body: dict, version: str, cloud_name: str = "kilonova"):
    with cloud.http("compute", cloud=cloud_name) as compute:
        return compute.post(f"/servers/{uuid}/action", json=body,
                            headers={"OpenStack-API-Version": f"compute {version}"})


def boot(cloud, name: str, *extra: str, cloud_name: str = "kilonova") -> dict:
    return cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                           "private", *extra, "--wait", name, fmt_json=True, cloud=cloud_name)


@pytest.fixture(scope="module")
def shelf():
    """Two hosts; shelved servers stay SHELVED until offloaded explicitly (shelved_offload_time -1)."""
    instance = new_cloud(hosts=2, config={"DEFAULT": {"shelved_offload_time": "-1"},
                                          "fake_driver": {"fail_spawn_hosts": ""}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


def test_shelve_offload_unshelve_through_the_openstack_and_nova_clis(shelf):
    server = boot(shelf, "vm-shelf")
    uuid, first_host = server["id"], server["OS-EXT-SRV-ATTR:host"]
    ports = ports_of(shelf, uuid)
    claim = allocations(shelf, uuid)
    assert ports and claim

    shelf.openstack("server", "shelve", "--wait", uuid)
    shown = wait_status(shelf, uuid, "SHELVED")
    assert shown["OS-EXT-SRV-ATTR:host"] == first_host
    assert shown["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    assert allocations(shelf, uuid) == claim  # a SHELVED server keeps its guest and its claim
    [image] = images_named(shelf, "vm-shelf-shelved")
    assert image["Status"] == "active"
    props = shelf.openstack("image", "show", image["ID"], fmt_json=True)["properties"]
    assert props["image_type"] == "snapshot" and props["instance_uuid"] == uuid

    shelf.nova("shelve-offload", uuid)
    shown = wait_status(shelf, uuid, "SHELVED_OFFLOADED")
    assert shown["OS-EXT-SRV-ATTR:host"] is None
    assert allocations(shelf, uuid) == {}  # nothing held while offloaded
    offloaded_ports = ports_of(shelf, uuid)
    assert [p["id"] for p in offloaded_ports] == [p["id"] for p in ports]  # ports and addresses kept
    assert all(not p["binding:host_id"] for p in offloaded_ports)
    shelf.audit()

    shelf.openstack("server", "unshelve", "--wait", uuid)
    shown = wait_status(shelf, uuid, "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"]
    assert list(allocations(shelf, uuid)) == [p for p in allocations(shelf, uuid)]
    assert len(allocations(shelf, uuid)) == 1
    after = ports_of(shelf, uuid)
    assert [p["id"] for p in after] == [p["id"] for p in ports]
    assert {p["fixed_ips"][0]["ip_address"] for p in after} == {p["fixed_ips"][0]["ip_address"] for p in ports}
    assert all(p["binding:host_id"] == shown["OS-EXT-SRV-ATTR:host"] for p in after)
    assert images_named(shelf, "vm-shelf-shelved") == []  # deleted once unshelved, as upstream
    shelf.audit()

    shelf.nova("shelve", uuid)
    wait_status(shelf, uuid, "SHELVED")
    shelf.nova("unshelve", uuid)  # unshelved where it is: just powered on
    shown = wait_status(shelf, uuid, "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"] and images_named(shelf, "vm-shelf-shelved") == []
    shelf.openstack("server", "delete", "--wait", uuid)


def test_state_rules_answer_upstreams_409s(shelf):
    server = boot(shelf, "vm-rules")
    uuid = server["id"]
    reply = action(shelf, uuid, {"unshelve": None}, "2.1")
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == \
        f"Cannot 'unshelve' instance {uuid} while it is in vm_state active"
    reply = action(shelf, uuid, {"shelveOffload": None}, "2.1")
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == \
        f"Cannot 'shelveOffload' instance {uuid} while it is in vm_state active"

    assert action(shelf, uuid, {"shelve": None}, "2.1").status_code == 202
    wait_status(shelf, uuid, "SHELVED")
    reply = action(shelf, uuid, {"shelve": None}, "2.1")
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == \
        f"Cannot 'shelve' instance {uuid} while it is in vm_state shelved"
    reply = action(shelf, uuid, {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 1}}, "2.1")
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == \
        f"Cannot 'createBackup' instance {uuid} while it is in vm_state shelved"
    # A zone (2.77) or a host (2.91) only for a SHELVED_OFFLOADED server.
    reply = action(shelf, uuid, {"unshelve": {"availability_zone": "nova"}}, "2.77")
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == (
        f"Specifying an availability zone or a host when unshelving server \"{uuid}\" with status \"shelved\" "
        "is not supported. The server status must be SHELVED_OFFLOADED.")
    shelf.openstack("server", "delete", "--wait", uuid)


def test_unshelve_microversions_zone_and_host(shelf):
    server = boot(shelf, "vm-where")
    uuid, first_host = server["id"], server["OS-EXT-SRV-ATTR:host"]
    other = "compute2" if first_host == "compute1" else "compute1"
    shelf.openstack("server", "shelve", "--offload", "--wait", uuid)
    wait_status(shelf, uuid, "SHELVED_OFFLOADED")

    # 2.77: an object must name the zone; the zone must exist.
    assert action(shelf, uuid, {"unshelve": {}}, "2.77").status_code == 400
    reply = action(shelf, uuid, {"unshelve": {"availability_zone": "nowhere"}}, "2.77")
    assert reply.status_code == 400
    assert reply.json()["badRequest"]["message"] == "The requested availability zone is not available"
    assert action(shelf, uuid, {"unshelve": {"availability_zone": None}}, "2.90").status_code == 400
    # host: not before 2.91; admin only; must exist; must be in the zone asked for.
    assert action(shelf, uuid, {"unshelve": {"host": other}}, "2.90").status_code == 400
    reply = action(shelf, uuid, {"unshelve": {"host": other}}, "2.91", cloud_name="kilonova-demo")
    assert reply.status_code in (403, 404)  # the demo user may not even see the admin's server
    reply = action(shelf, uuid, {"unshelve": {"host": "no-such-host"}}, "2.91")
    assert reply.status_code == 400
    assert reply.json()["badRequest"]["message"] == "Compute host no-such-host could not be found."
    shelf.openstack("aggregate", "create", "--zone", "az-shelf", "agg-shelf")
    try:
        reply = action(shelf, uuid, {"unshelve": {"host": other, "availability_zone": "az-shelf"}}, "2.91")
        assert reply.status_code == 400  # no host in az-shelf yet: not an available zone
        shelf.openstack("aggregate", "add", "host", "agg-shelf", other)
        reply = action(shelf, uuid, {"unshelve": {"host": first_host, "availability_zone": "az-shelf"}}, "2.91")
        assert reply.status_code == 409
        assert reply.json()["conflictingRequest"]["message"] == \
            f"Host \"{first_host}\" is not in the availability zone \"az-shelf\"."
        assert allocations(shelf, uuid) == {}

        shelf.openstack("--os-compute-api-version", "2.91", "server", "unshelve", "--host", other, "--wait", uuid)
        shown = wait_status(shelf, uuid, "ACTIVE")
        assert shown["OS-EXT-SRV-ATTR:host"] == other
        assert shown["OS-EXT-AZ:availability_zone"] == "az-shelf"

        shelf.openstack("server", "shelve", "--offload", "--wait", uuid)
        wait_status(shelf, uuid, "SHELVED_OFFLOADED")
        shelf.openstack("--os-compute-api-version", "2.77", "server", "unshelve", "--availability-zone", "az-shelf",
                        "--wait", uuid)
        shown = wait_status(shelf, uuid, "ACTIVE")
        assert shown["OS-EXT-SRV-ATTR:host"] == other and shown["OS-EXT-AZ:availability_zone"] == "az-shelf"

        # Pinned to az-shelf now: a host outside it is refused, unless the pin is dropped (zone null, 2.91).
        shelf.openstack("server", "shelve", "--offload", "--wait", uuid)
        wait_status(shelf, uuid, "SHELVED_OFFLOADED")
        reply = action(shelf, uuid, {"unshelve": {"host": first_host}}, "2.91")
        assert reply.status_code == 409
        assert reply.json()["conflictingRequest"]["message"] == \
            f"Host \"{first_host}\" is not in the availability zone \"az-shelf\"."
        reply = action(shelf, uuid, {"unshelve": {"host": first_host, "availability_zone": None}}, "2.91")
        assert reply.status_code == 202
        shown = wait_status(shelf, uuid, "ACTIVE")
        assert shown["OS-EXT-SRV-ATTR:host"] == first_host and shown["OS-EXT-AZ:availability_zone"] == "nova"
    finally:
        shelf.openstack("server", "delete", "--wait", uuid, check=False)
        shelf.openstack("aggregate", "remove", "host", "agg-shelf", other, check=False)
        shelf.openstack("aggregate", "delete", "agg-shelf", check=False)
    shelf.audit()


def test_deleting_a_shelved_server_deletes_its_image_and_claims(shelf):
    for offload in (False, True):
        uuid = boot(shelf, "vm-gone")["id"]
        shelf.openstack("server", "shelve", *(["--offload"] if offload else []), "--wait", uuid)
        wait_status(shelf, uuid, "SHELVED_OFFLOADED" if offload else "SHELVED")
        assert len(images_named(shelf, "vm-gone-shelved")) == 1
        shelf.openstack("server", "delete", "--wait", uuid)
        assert images_named(shelf, "vm-gone-shelved") == []
        assert allocations(shelf, uuid) == {} and ports_of(shelf, uuid) == []
    shelf.audit()


def test_a_locked_server_refuses_its_owner(shelf):
    uuid = boot(shelf, "vm-locked", cloud_name="kilonova-demo")["id"]
    try:
        shelf.openstack("server", "lock", uuid)  # by the admin
        for body in ({"shelve": None}, {"createBackup": {"name": "b", "backup_type": "d", "rotation": 1}}):
            reply = action(shelf, uuid, body, "2.1", cloud_name="kilonova-demo")
            if "shelve" in body:
                assert reply.status_code == 409
                assert reply.json()["conflictingRequest"]["message"] == f"Instance {uuid} is locked"
            else:  # upstream's backup does not look at the lock
                assert reply.status_code == 202
                wait_status(shelf, uuid, "ACTIVE")
        shelf.openstack("server", "unlock", uuid)
        shelf.openstack("server", "shelve", "--offload", "--wait", uuid)  # offloading is the admin's (upstream policy)
        wait_status(shelf, uuid, "SHELVED_OFFLOADED")
        shelf.openstack("server", "lock", uuid)
        reply = action(shelf, uuid, {"unshelve": None}, "2.1", cloud_name="kilonova-demo")
        assert reply.status_code == 409
        assert reply.json()["conflictingRequest"]["message"] == f"Instance {uuid} is locked"
        # 2.91: a host is the admin's to name.
        reply = action(shelf, uuid, {"unshelve": {"host": "compute1"}}, "2.91", cloud_name="kilonova-demo")
        assert reply.status_code == 403
        assert reply.json()["forbidden"]["message"] == \
            "Policy doesn't allow os_compute_api:os-shelve:unshelve_to_host to be performed."
    finally:
        shelf.openstack("server", "unlock", uuid, check=False)
        shelf.openstack("server", "delete", "--wait", uuid, check=False)
        for image in shelf.openstack("image", "list", "--property", f"instance_uuid={uuid}", fmt_json=True):
            shelf.openstack("image", "delete", image["ID"], check=False)


def test_openstacksdk_shelve_offload_unshelve(shelf):
    conn = shelf.sdk()
    server = conn.compute.find_server(boot(shelf, "vm-sdk")["id"])
    conn.compute.shelve_server(server)
    conn.compute.wait_for_server(server, status="SHELVED", wait=60, interval=0.5)
    conn.compute.shelve_offload_server(server)
    server = conn.compute.wait_for_server(server, status="SHELVED_OFFLOADED", wait=60, interval=0.5)
    assert allocations(shelf, server.id) == {}
    conn.compute.unshelve_server(server)
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=60, interval=0.5)
    assert server.compute_host and allocations(shelf, server.id)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60, interval=0.5)


def test_shelve_offloads_at_once_by_default(cloud):
    server = boot(cloud, "vm-shelve-now")
    uuid = server["id"]
    cloud.openstack("server", "shelve", "--wait", uuid)
    shown = wait_status(cloud, uuid, "SHELVED_OFFLOADED")
    assert shown["OS-EXT-SRV-ATTR:host"] is None and allocations(cloud, uuid) == {}
    cloud.openstack("server", "unshelve", "--wait", uuid)
    wait_status(cloud, uuid, "ACTIVE")
    cloud.openstack("server", "delete", "--wait", uuid)


def test_backup_rotation_through_the_clis(cloud):
    server = boot(cloud, "vm-backup")
    uuid = server["id"]
    try:
        made = []
        for n in range(3):
            # The image service keeps created_at to the second (as Glance shows it) and rotation deletes the
            # oldest by it: backups made within one second would tie, so each starts in a second of its own.
            time.sleep(1.05 - time.time() % 1)
            made.append(cloud.openstack("server", "backup", "create", "--name", f"vm-backup-daily-{n}", "--type",
                                        "daily", "--rotate", "2", "--wait", uuid, fmt_json=True)["id"])
            wait_status(cloud, uuid, "ACTIVE")
        backups = [i for i in cloud.openstack("image", "list", "--property", f"instance_uuid={uuid}",
                                              "--property", "image_type=backup", fmt_json=True)]
        assert sorted(i["ID"] for i in backups) == sorted(made[1:])  # the oldest rotated away
        props = cloud.openstack("image", "show", made[2], fmt_json=True)["properties"]
        assert props["image_type"] == "backup" and props["backup_type"] == "daily"
        assert props["instance_uuid"] == uuid

        cloud.nova("backup", uuid, "vm-backup-weekly", "weekly", "1")
        wait_status(cloud, uuid, "ACTIVE")
        weekly = [i for i in cloud.openstack("image", "list", "--property", f"instance_uuid={uuid}",
                                             "--property", "backup_type=weekly", fmt_json=True)]
        assert [i["Name"] for i in weekly] == ["vm-backup-weekly"]
        # Another type's rotation leaves the daily ones alone.
        assert len(cloud.openstack("image", "list", "--property", f"instance_uuid={uuid}", "--property",
                                   "backup_type=daily", fmt_json=True)) == 2
    finally:
        cloud.openstack("server", "delete", "--wait", uuid, check=False)
        for image in cloud.openstack("image", "list", "--property", f"instance_uuid={uuid}", fmt_json=True):
            cloud.openstack("image", "delete", image["ID"], check=False)


def test_backup_microversion_2_45_and_bad_input(cloud):
    server = boot(cloud, "vm-backup-mv")
    uuid = server["id"]
    body = {"createBackup": {"name": "mv-backup", "backup_type": "daily", "rotation": 3, "metadata": {"k": "v"}}}
    try:
        reply = action(cloud, uuid, body, "2.44")
        assert reply.status_code == 202 and reply.content == b""
        assert reply.headers["Location"].endswith("/images/" + reply.headers["Location"].rsplit("/", 1)[1])
        first = reply.headers["Location"].rsplit("/", 1)[1]
        wait_status(cloud, uuid, "ACTIVE")
        assert cloud.openstack("image", "show", first, fmt_json=True)["properties"]["k"] == "v"
        reply = action(cloud, uuid, body, "2.45")
        assert reply.status_code == 202 and "Location" not in reply.headers
        second = reply.json()["image_id"]
        wait_status(cloud, uuid, "ACTIVE")
        assert cloud.openstack("image", "show", second, fmt_json=True)["status"] == "active"
        # rotation 0 before 2.45: no Location; every backup of the type goes, the new one too (as upstream).
        reply = action(cloud, uuid, {"createBackup": {"name": "zero", "backup_type": "daily", "rotation": 0}}, "2.1")
        assert reply.status_code == 202 and "Location" not in reply.headers
        wait_status(cloud, uuid, "ACTIVE")
        deadline = time.monotonic() + 20
        while cloud.openstack("image", "list", "--property", f"instance_uuid={uuid}", fmt_json=True):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        for bad in ({"createBackup": {"name": "x", "backup_type": "daily"}},
                    {"createBackup": {"name": "x", "backup_type": "daily", "rotation": -1}},
                    {"createBackup": {"name": "x", "backup_type": "daily", "rotation": "two"}},
                    {"createBackup": {"name": "", "backup_type": "daily", "rotation": 1}},
                    {"createBackup": {"name": "x", "backup_type": "daily", "rotation": 1, "extra": 1}}):
            reply = action(cloud, uuid, bad, "2.45")
            assert reply.status_code == 400, (bad, reply.text)
            assert reply.json()["badRequest"]["message"].startswith("Invalid input for")
    finally:
        cloud.openstack("server", "delete", "--wait", uuid, check=False)
        for image in cloud.openstack("image", "list", "--property", f"instance_uuid={uuid}", fmt_json=True):
            cloud.openstack("image", "delete", image["ID"], check=False)


def test_sdk_backup(cloud):
    conn = cloud.sdk()
    server = conn.compute.find_server(boot(cloud, "vm-sdk-backup")["id"])
    try:
        conn.compute.backup_server(server, "sdk-backup", "nightly", 1)
        deadline = time.monotonic() + 30
        while not [i for i in conn.image.images(instance_uuid=server.id) if i.status == "active"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        [image] = list(conn.image.images(instance_uuid=server.id))
        assert image.name == "sdk-backup" and image.properties["backup_type"] == "nightly"
    finally:
        conn.compute.delete_server(server)
        for image in conn.image.images(instance_uuid=server.id):
            conn.image.delete_image(image)


def event_names(cloud, uuid: str, action_name: str) -> list[tuple[str, str]]:
    """(event, result) of the newest ``action_name`` instance action of the server."""
    actions = cloud.openstack("--os-compute-api-version", "2.51", "server", "event", "list", uuid, fmt_json=True)
    request_id = next(a["Request ID"] for a in actions if a["Action"] == action_name)
    shown = cloud.openstack("--os-compute-api-version", "2.51", "server", "event", "show", uuid, request_id,
                            fmt_json=True)
    return [(e["event"], e["result"]) for e in shown["events"]]


def test_instance_actions_and_events(shelf):
    uuid = boot(shelf, "vm-events")["id"]
    try:
        shelf.openstack("server", "shelve", "--wait", uuid)
        wait_status(shelf, uuid, "SHELVED")
        shelf.nova("shelve-offload", uuid)
        wait_status(shelf, uuid, "SHELVED_OFFLOADED")
        shelf.openstack("server", "unshelve", "--wait", uuid)
        wait_status(shelf, uuid, "ACTIVE")
        assert event_names(shelf, uuid, "shelve") == [("compute_shelve_instance", "Success")]
        assert event_names(shelf, uuid, "shelveOffload") == [("compute_shelve_offload_instance", "Success")]
        assert sorted(event_names(shelf, uuid, "unshelve")) == [("compute_unshelve_instance", "Success"),
                                                                ("conductor_unshelve_instance", "Success")]
        shelf.openstack("server", "backup", "create", "--name", "ev-backup", "--type", "daily", "--rotate", "0",
                        "--wait", uuid, check=False)
        wait_status(shelf, uuid, "ACTIVE")
        assert event_names(shelf, uuid, "createBackup") == [("compute_backup_instance", "Success")]
    finally:
        shelf.openstack("server", "delete", "--wait", uuid, check=False)


# ------------------------------------------------------------------------------------------ failures

@pytest.fixture(scope="module")
def faulty():
    """Three hosts: compute2's snapshots fail, compute3's spawns fail; shelved servers are offloaded after 8 s."""
    instance = new_cloud(hosts=3, config={
        "DEFAULT": {"shelved_offload_time": "8", "shelved_poll_interval": "1"},
        "conductor": {"reconcile_interval": "1"},
        "fake_driver": {"fail_spawn_hosts": "compute3", "fail_steps": "snapshot", "fail_step_hosts": "compute2"}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


def boot_on(cloud, name: str, host: str) -> dict:
    return cloud.openstack("--os-compute-api-version", "2.74", "server", "create", "--flavor", "m1.tiny",
                           "--image", "kilonova-tiny", "--network", "private", "--host", host, "--wait", name,
                           fmt_json=True)


def event_details(cloud, uuid: str, action_name: str) -> list[str]:
    """The details (2.84) of the events of the newest ``action_name`` instance action of the server."""
    with cloud.http("compute") as compute:
        headers = {"OpenStack-API-Version": "compute 2.84"}
        actions = compute.get(f"/servers/{uuid}/os-instance-actions", headers=headers).json()["instanceActions"]
        request_id = next(a["request_id"] for a in actions if a["action"] == action_name)
        shown = compute.get(f"/servers/{uuid}/os-instance-actions/{request_id}", headers=headers).json()
        return [e.get("details") or "" for e in shown["instanceAction"]["events"]]


@pytest.fixture(scope="module")
def slow():
    """One host whose spawns take 3 s, beyond a 2 s deadline for shelving states (looked at every second)."""
    instance = new_cloud(hosts=1, config={
        "conductor": {"reconcile_interval": "1"}, "compute": {"shelve_timeout": "2"},
        "fake_driver": {"fail_spawn_hosts": "", "step_delays": "spawn=3"}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


def test_periodic_offload_after_shelved_offload_time(faulty):
    uuid = boot_on(faulty, "vm-periodic", "compute1")["id"]
    assert action(faulty, uuid, {"shelve": None}, "2.1").status_code == 202
    with faulty.http("compute") as compute:  # polled directly: SHELVED lasts shelved_offload_time (8 s)
        deadline = time.monotonic() + 8
        while True:
            shown = compute.get(f"/servers/{uuid}").json()["server"]
            if shown["status"] == "SHELVED" and not shown["OS-EXT-STS:task_state"]:
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
    assert shown["OS-EXT-SRV-ATTR:host"] == "compute1" and allocations(faulty, uuid)
    shown = wait_status(faulty, uuid, "SHELVED_OFFLOADED", timeout=30)
    assert shown["OS-EXT-SRV-ATTR:host"] is None and allocations(faulty, uuid) == {}
    faulty.audit()
    faulty.openstack("server", "delete", "--wait", uuid)


def test_a_failed_shelve_leaves_the_server_as_it_was(faulty):
    uuid = boot_on(faulty, "vm-snapfail", "compute2")["id"]
    try:
        faulty.openstack("server", "shelve", uuid)
        deadline = time.monotonic() + 30
        while True:  # polled over HTTP: often enough to see it never passes through SHELVED
            shown = faulty.server(uuid)
            if shown["status"] == "ACTIVE" and not shown["OS-EXT-STS:task_state"]:
                break
            assert time.monotonic() < deadline and shown["status"] != "SHELVED", shown
            time.sleep(0.2)
        assert shown["OS-EXT-STS:power_state"] in ("Running", 1)
        assert images_named(faulty, "vm-snapfail-shelved") == []  # the image that never filled is gone
        assert event_names(faulty, uuid, "shelve") == [("compute_shelve_instance", "Error")]
        assert allocations(faulty, uuid)
        faulty.audit()
    finally:
        faulty.openstack("server", "delete", "--wait", uuid, check=False)


def test_a_failed_unshelve_is_offloaded_again_holding_nothing(faulty):
    uuid = boot_on(faulty, "vm-spawnfail", "compute1")["id"]
    try:
        faulty.openstack("server", "shelve", "--offload", "--wait", uuid)
        wait_status(faulty, uuid, "SHELVED_OFFLOADED")
        reply = action(faulty, uuid, {"unshelve": {"host": "compute3"}}, "2.91")
        assert reply.status_code == 202
        time.sleep(1)
        shown = wait_status(faulty, uuid, "SHELVED_OFFLOADED", timeout=30)
        assert shown["OS-EXT-SRV-ATTR:host"] is None and allocations(faulty, uuid) == {}
        assert ("compute_unshelve_instance", "Error") in event_names(faulty, uuid, "unshelve")
        assert any("Simulated spawn failure on host compute3" in d for d in event_details(faulty, uuid, "unshelve"))
        assert all(not p["binding:host_id"] for p in ports_of(faulty, uuid))
        faulty.audit()
        # It can be unshelved again, elsewhere.
        reply = action(faulty, uuid, {"unshelve": {"host": "compute1"}}, "2.91")
        assert reply.status_code == 202
        assert wait_status(faulty, uuid, "ACTIVE", timeout=30)["OS-EXT-SRV-ATTR:host"] == "compute1"
    finally:
        faulty.openstack("server", "delete", "--wait", uuid, check=False)


def test_an_unshelve_past_its_deadline_is_undone(slow):
    """The spawn (3 s) outlives the 2 s deadline: the conductor puts the server back to SHELVED_OFFLOADED
    and releases its claim; the host, finishing late, removes the guest it made."""
    uuid = boot(slow, "vm-slow")["id"]
    try:
        slow.openstack("server", "shelve", "--wait", uuid)
        wait_status(slow, uuid, "SHELVED_OFFLOADED")
        assert action(slow, uuid, {"unshelve": None}, "2.1").status_code == 202
        time.sleep(0.5)
        shown = wait_status(slow, uuid, "SHELVED_OFFLOADED", timeout=30)
        assert shown["OS-EXT-SRV-ATTR:host"] is None and allocations(slow, uuid) == {}
        # the late spawn ends, finds the unshelve given up, and removes its guest (its event says so once done)
        wait_for(lambda: any("given up" in d for d in event_details(slow, uuid, "unshelve")),
                 "the late spawn's report", timeout=60)
        shown = slow.openstack("server", "show", uuid, fmt_json=True)
        assert shown["status"] == "SHELVED_OFFLOADED" and allocations(slow, uuid) == {}
        assert ("compute_unshelve_instance", "Error") in event_names(slow, uuid, "unshelve")
        assert any("given up" in d for d in event_details(slow, uuid, "unshelve"))
        actions = slow.openstack("server", "event", "list", "--long", uuid, fmt_json=True)
        assert next(a for a in actions if a["Action"] == "unshelve")["Message"] == "Error", actions
        slow.audit()
    finally:
        slow.openstack("server", "delete", "--wait", uuid, check=False)
