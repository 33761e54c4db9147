"""Resize and cold migration through the real `openstack` and `nova` CLIs and openstacksdk against `kilonova up`.

What a user sees at each boundary: status, flavor and host; Placement usages on the source and the
destination (both claims during VERIFY_RESIZE -- the migration's on the source, the server's on the
destination -- one after); the hypervisors' usage; upstream's refusals; and `kilonova manage placement
audit` finding nothing leaked after every ending.
"""
from __future__ import annotations

import sqlite3
import time

import pytest

from tests.cloud import wait_for


BOOT = ("--image", "kilonova-tiny", "--network", "private")


def boot(cloud, name: str, flavor: str = "m1.tiny", cloud_name: str = "kilonova", *extra: str) -> dict:
    return cloud.openstack("server", "create", "--flavor", flavor, *BOOT, *extra, "--wait", name, fmt_json=True,
                           cloud=cloud_name)


def provider_uuid(cloud, host: str) -> str:
    return cloud.openstack("resource", "provider", "list", "--name", host, fmt_json=True)[0]["uuid"]


def provider_usage(cloud, host: str) -> dict[str, int]:
    rows = cloud.openstack("resource", "provider", "usage", "show", provider_uuid(cloud, host), fmt_json=True)
    return {row["resource_class"]: row["usage"] for row in rows}


def allocations(cloud, consumer: str) -> dict[str, dict]:
    """{provider uuid: resources} held by ``consumer`` (a server or a migration record)."""
    with cloud.http("placement") as http:
        response = http.get(f"/allocations/{consumer}", headers={"OpenStack-API-Version": "placement 1.28"})
    assert response.status_code == 200, response.text
    return {rp: a["resources"] for rp, a in response.json()["allocations"].items()}


def action(cloud, server: str, key: str, body, version: str = "2.1", cloud_name: str = "kilonova"):
    with cloud.http("compute", cloud=cloud_name) as http:
        return http.post(f"/servers/{server}/action", json={key: body},
                         headers={"OpenStack-API-Version": f"compute {version}"})


def fault_message(response) -> str:
    body = response.json()
    return next(iter(body.values()))["message"]


def move_records(cloud, server: str) -> tuple[list[dict], list[str]]:
    """(the server's migration records, its fault messages), oldest first, from the cell database: upstream
    shows a fault in the server only once it is ERROR, and os-migrations is another module's."""
    db = sqlite3.connect(f"file:{cloud.state_dir / 'cell1.sqlite'}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        moves = [dict(row) for row in db.execute("SELECT * FROM migrations WHERE instance_uuid = ? ORDER BY id",
                                                 (server,))]
        faults = [row["message"] for row in db.execute("SELECT message FROM instance_faults WHERE instance_uuid = ? "
                                                       "ORDER BY id", (server,))]
    finally:
        db.close()
    return moves, faults


def wait_move_ended(cloud, server: str, status: str, timeout: float = 30) -> dict:
    """The server's last move once it ended in ``status``, and the server's task over."""
    def ended():
        moves, _faults = move_records(cloud, server)
        return moves and moves[-1]["status"] == status and not cloud.server(server)["OS-EXT-STS:task_state"] \
            and moves[-1]
    return wait_for(ended, f"the move of {server} to end {status}", timeout)


def hypervisor_memory_used(cloud, host: str) -> int:
    shown = cloud.openstack("--os-compute-api-version", "2.27", "hypervisor", "show", host, fmt_json=True)
    return int(shown["memory_mb_used"])


@pytest.fixture
def server(cloud):
    created = boot(cloud, f"rz-{time.monotonic_ns() % 100000}")
    yield created
    cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_resize_then_confirm_with_the_openstack_cli(cloud, server):
    source = server["OS-EXT-SRV-ATTR:host"]
    assert cloud.openstack("server", "show", server["id"], fmt_json=True)["progress"] == 0  # nothing under way
    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", server["id"])
    shown = cloud.wait_status(server["id"], "VERIFY_RESIZE")
    assert shown["progress"] == 0  # the resize's steps are over
    dest = shown["OS-EXT-SRV-ATTR:host"]
    assert dest != source  # [DEFAULT] allow_resize_to_same_host is False by default
    assert shown["flavor"]["name"] == "m1.small"
    # Both claims while the user decides: the migration's (old flavor) on the source, the server's on the dest.
    held = allocations(cloud, server["id"])
    assert held == {provider_uuid(cloud, dest): {"DISK_GB": 20, "MEMORY_MB": 2048, "VCPU": 1}}
    assert provider_usage(cloud, source)["MEMORY_MB"] >= 512
    wait_for(lambda: hypervisor_memory_used(cloud, dest) >= 2048, "the destination hypervisor to count the server")
    cloud.audit()

    before = provider_usage(cloud, source)["MEMORY_MB"]
    cloud.openstack("server", "resize", "confirm", server["id"])
    shown = cloud.wait_status(server["id"], "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"] == dest and shown["flavor"]["name"] == "m1.small"
    assert wait_for(lambda: provider_usage(cloud, source)["MEMORY_MB"] == before - 512 or None,
                    "the source claim to be dropped", 10)
    assert list(allocations(cloud, server["id"])) == [provider_uuid(cloud, dest)]
    cloud.audit()
    # The steps as os-instance-actions and os-migrations show them.
    actions = cloud.openstack("server", "event", "list", server["id"], fmt_json=True)
    assert [a["Action"] for a in actions][:2] == ["confirmResize", "resize"]
    resize_request = next(a["Request ID"] for a in actions if a["Action"] == "resize")
    shown = cloud.openstack("--os-compute-api-version", "2.51", "server", "event", "show", server["id"],
                            resize_request, fmt_json=True)
    assert sorted(e["event"] for e in shown["events"]) == ["compute_finish_resize", "compute_prep_resize",
                                                          "compute_resize_instance", "conductor_migrate_server"]
    assert all(e["result"] == "Success" for e in shown["events"])
    moves = cloud.openstack("--os-compute-api-version", "2.59", "server", "migration", "list", "--server",
                            server["id"], fmt_json=True)
    assert [(m["Source Compute"], m["Dest Compute"], m["Status"], m["Type"]) for m in moves] == \
        [(source, dest, "confirmed", "resize")]
    # Confirmed: nothing left to confirm or revert.
    refused = action(cloud, server["id"], "confirmResize", None)
    assert refused.status_code == 409
    assert fault_message(refused) == (f"Cannot 'confirmResize' instance {server['id']} while it is in "
                                      "vm_state active")


def test_resize_then_revert_with_the_nova_cli(cloud, server):
    source = server["OS-EXT-SRV-ATTR:host"]
    cloud.nova("resize", server["id"], "m1.small")
    shown = cloud.wait_status(server["id"], "VERIFY_RESIZE")
    dest = shown["OS-EXT-SRV-ATTR:host"]
    again = cloud.nova("resize", server["id"], "m1.medium", check=False)
    assert again.returncode != 0 and "while it is in vm_state resized" in again.stderr
    cloud.nova("resize-revert", server["id"])
    shown = cloud.wait_status(server["id"], "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"] == source and shown["flavor"]["name"] == "m1.tiny"
    assert allocations(cloud, server["id"]) == {provider_uuid(cloud, source): {"DISK_GB": 1, "MEMORY_MB": 512,
                                                                               "VCPU": 1}}
    assert dest != source
    cloud.audit()
    # The guest was booted again on the source with its old flavor.
    console = cloud.openstack("console", "log", "show", server["id"]).stdout
    assert "resize reverted" in console and "512 MB RAM" in console.splitlines()[-3]


def test_resize_confirm_with_the_nova_cli_and_the_sdk_keeps_a_stopped_server_stopped(cloud, server):
    conn = cloud.sdk()
    conn.compute.stop_server(server["id"])
    cloud.wait_status(server["id"], "SHUTOFF")
    flavor = conn.compute.find_flavor("m1.small")
    conn.compute.resize_server(server["id"], flavor.id)
    shown = cloud.wait_status(server["id"], "VERIFY_RESIZE")
    assert shown["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    cloud.nova("resize-confirm", server["id"])
    shown = cloud.wait_status(server["id"], "SHUTOFF")
    assert shown["flavor"]["name"] == "m1.small"
    # ... and a revert of a stopped server leaves it stopped too.
    conn.compute.resize_server(server["id"], conn.compute.find_flavor("m1.medium").id)
    cloud.wait_status(server["id"], "VERIFY_RESIZE")
    conn.compute.revert_server_resize(server["id"])
    shown = cloud.wait_status(server["id"], "SHUTOFF")
    assert shown["flavor"]["name"] == "m1.small"
    cloud.audit()


def test_cold_migration_with_both_clients_and_the_2_56_host(cloud, server):
    source = server["OS-EXT-SRV-ATTR:host"]
    cloud.openstack("server", "migrate", "--wait", server["id"])
    shown = cloud.wait_status(server["id"], "VERIFY_RESIZE")
    first = shown["OS-EXT-SRV-ATTR:host"]
    assert first != source and shown["flavor"]["name"] == "m1.tiny"
    cloud.nova("resize-confirm", server["id"])
    cloud.wait_status(server["id"], "ACTIVE")

    target = next(h for h in ("compute1", "compute2", "compute3", "compute4") if h not in (first,))
    too_old = action(cloud, server["id"], "migrate", {"host": target}, version="2.55")
    assert too_old.status_code == 400
    same = action(cloud, server["id"], "migrate", {"host": first}, version="2.56")
    assert same.status_code == 400 and fault_message(same) == "Cannot migrate to the host where the server exists."
    unknown = action(cloud, server["id"], "migrate", {"host": "nowhere"}, version="2.56")
    assert unknown.status_code == 400 and fault_message(unknown) == "Compute host nowhere could not be found."
    cloud.openstack("--os-compute-api-version", "2.56", "server", "migrate", "--host", target, "--wait", server["id"])
    shown = cloud.wait_status(server["id"], "VERIFY_RESIZE")
    assert shown["OS-EXT-SRV-ATTR:host"] == target
    refused = cloud.nova("migrate", server["id"], check=False)
    assert refused.returncode != 0 and f"Cannot 'migrate' instance {server['id']} while it is in vm_state resized" \
        in refused.stderr
    cloud.openstack("server", "migrate", "confirm", server["id"])
    shown = cloud.wait_status(server["id"], "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"] == target
    assert list(allocations(cloud, server["id"])) == [provider_uuid(cloud, target)]
    cloud.audit()


def test_refusals_as_upstream(cloud):
    owned = boot(cloud, "rz-demo", "m1.tiny", "kilonova-demo")
    uuid = owned["id"]
    try:
        denied = action(cloud, uuid, "migrate", None, cloud_name="kilonova-demo")
        assert denied.status_code == 403
        assert fault_message(denied) == "Policy doesn't allow os_compute_api:os-migrate-server:migrate to be performed."
        same = action(cloud, uuid, "resize", {"flavorRef": "1"}, cloud_name="kilonova-demo")
        assert same.status_code == 400 and fault_message(same) == "When resizing, instances must change flavor!"
        missing = action(cloud, uuid, "resize", {"flavorRef": "nope"}, cloud_name="kilonova-demo")
        assert missing.status_code == 400 and fault_message(missing) == "Flavor nope could not be found."
        bad = action(cloud, uuid, "resize", {"flavorRef": "2", "extra": 1}, cloud_name="kilonova-demo")
        assert bad.status_code == 400
        not_resized = action(cloud, uuid, "revertResize", None, cloud_name="kilonova-demo")
        assert not_resized.status_code == 409
        assert fault_message(not_resized) == f"Cannot 'revertResize' instance {uuid} while it is in vm_state active"
        cloud.openstack("server", "lock", uuid)  # by the admin
        locked = action(cloud, uuid, "resize", {"flavorRef": "2"}, cloud_name="kilonova-demo")
        assert locked.status_code == 409 and fault_message(locked) == f"Instance {uuid} is locked"
        cloud.openstack("server", "unlock", uuid)

        cloud.openstack("flavor", "create", "--ram", "512", "--disk", "0", "--vcpus", "1", "rz-nodisk")
        try:
            flavor_id = cloud.openstack("flavor", "show", "rz-nodisk", fmt_json=True)["id"]
            zero = action(cloud, uuid, "resize", {"flavorRef": flavor_id}, cloud_name="kilonova-demo")
            assert zero.status_code == 400
            assert fault_message(zero) == ("Server disk was unable to be resized because: Resize to zero disk "
                                           "flavor is not allowed.")
        finally:
            cloud.openstack("flavor", "delete", "rz-nodisk", check=False)

        # The quota counts what the resize adds (cores here).
        used = cloud.openstack("quota", "show", "--usage", "demo", fmt_json=True)
        cores = next(r for r in used if r["Resource"] == "cores")
        cloud.openstack("quota", "set", "--cores", str(cores["In Use"]), "demo")
        try:
            over = action(cloud, uuid, "resize", {"flavorRef": "3"}, cloud_name="kilonova-demo")
            assert over.status_code == 403
            assert fault_message(over) == (f"Quota exceeded for cores: Requested 1, but already used "
                                           f"{cores['In Use']} of {cores['In Use']} cores")
        finally:
            cloud.openstack("quota", "set", "--cores", str(cores["Limit"]), "demo")
        shown = cloud.openstack("server", "show", uuid, fmt_json=True)
        assert shown["status"] == "ACTIVE" and shown["flavor"]["name"] == "m1.tiny"  # nothing started
    finally:
        cloud.openstack("server", "delete", "--wait", uuid, check=False)


def test_a_disk_shrink_is_refused_by_the_source_and_rolled_back(cloud):
    created = boot(cloud, "rz-shrink", "m1.small")
    try:
        source = created["OS-EXT-SRV-ATTR:host"]
        accepted = action(cloud, created["id"], "resize", {"flavorRef": "1"})
        assert accepted.status_code == 202
        move = wait_move_ended(cloud, created["id"], "error")
        assert move["source_compute"] == source and move["migration_type"] == "resize"
        shown = cloud.openstack("server", "show", created["id"], fmt_json=True)
        assert shown["status"] == "ACTIVE"
        assert shown["OS-EXT-SRV-ATTR:host"] == source and shown["flavor"]["name"] == "m1.small"
        assert "Unable to resize disk down." in move_records(cloud, created["id"])[1][-1]
        assert list(allocations(cloud, created["id"])) == [provider_uuid(cloud, source)]
        cloud.audit()
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_no_valid_host_leaves_the_server_active_with_a_fault(cloud, server):
    cloud.openstack("flavor", "create", "--ram", "512", "--disk", "5000", "--vcpus", "1", "rz-huge")
    try:
        flavor_id = cloud.openstack("flavor", "show", "rz-huge", fmt_json=True)["id"]
        assert action(cloud, server["id"], "resize", {"flavorRef": flavor_id}).status_code == 202
        wait_move_ended(cloud, server["id"], "error")
        shown = cloud.openstack("server", "show", server["id"], fmt_json=True)
        assert shown["status"] == "ACTIVE" and shown["flavor"]["name"] == "m1.tiny"
        assert move_records(cloud, server["id"])[1][-1].startswith("No valid host was found.")
        assert list(allocations(cloud, server["id"])) == [provider_uuid(cloud, server["OS-EXT-SRV-ATTR:host"])]
        cloud.audit()
    finally:
        cloud.openstack("flavor", "delete", "rz-huge", check=False)


def test_deleting_a_server_in_verify_resize_frees_both_hosts(cloud):
    created = boot(cloud, "rz-delete")
    source = created["OS-EXT-SRV-ATTR:host"]
    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", created["id"])
    dest = cloud.wait_status(created["id"], "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
    before = {host: provider_usage(cloud, host).get("MEMORY_MB", 0) for host in (source, dest)}
    cloud.openstack("server", "delete", "--wait", created["id"])
    after = {host: provider_usage(cloud, host).get("MEMORY_MB", 0) for host in (source, dest)}
    assert after == {source: before[source] - 512, dest: before[dest] - 2048}
    cloud.audit()
