"""Live migration (os-migrateLive, force-complete, abort) through the real `openstack` and `nova` CLIs, openstacksdk
and the HTTP API, against a real `kilonova up` on the fake driver: the server's host before and after, the Placement
allocations at every step (the migration holds the source's while it runs), upstream's errors and microversion
boundaries, and a migration cut short by a kill -9 of the whole cloud ended by the conductor's reconcile pass."""
from __future__ import annotations

import contextlib
import shutil
import time
from datetime import datetime

import pytest

from tests.cloud import new_cloud, wait_for

DELAY = 25.0  # [fake_driver] live_migration_delay: long enough to catch progress, abort and force-complete
# (each of those tests takes 15 s at load 8, boot and delete included, with the CLIs forked from a warm process)


@pytest.fixture(scope="module")
def lm_cloud():
    instance = new_cloud(hosts=3, config={"fake_driver": {"fail_spawn_hosts": "", "live_migration_delay": str(DELAY)},
                                          "conductor": {"reconcile_interval": "1"}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


@contextlib.contextmanager
def booted(cloud, name: str):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                              "private", "--wait", name, fmt_json=True)
    try:
        yield created
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def show(cloud, server: str) -> dict:
    return cloud.openstack("server", "show", server, fmt_json=True)


def host_of(cloud, server: str) -> str:
    return show(cloud, server)["OS-EXT-SRV-ATTR:host"]


_PROVIDERS: dict[str, dict[str, str]] = {}


def providers(cloud) -> dict[str, str]:
    """Provider uuid -> name (the host), as `openstack resource provider list` shows them (read once a cloud)."""
    key = str(cloud.workdir)
    if key not in _PROVIDERS:
        _PROVIDERS[key] = {p["uuid"]: p["name"] for p in cloud.openstack("resource", "provider", "list",
                                                                          fmt_json=True)}
    return _PROVIDERS[key]


def allocations(cloud, consumer: str) -> dict[str, dict]:
    """Host -> resources the consumer holds there (the `openstack resource provider allocation show` view)."""
    names = providers(cloud)
    rows = cloud.openstack("resource", "provider", "allocation", "show", consumer, fmt_json=True) or []
    return {names[row["resource_provider"]]: row["resources"] for row in rows}


def allocations_now(cloud, *consumers: str) -> list[dict[str, dict]]:
    """The same straight from the Placement API, for several consumers at one moment (while a migration runs)."""
    names = providers(cloud)
    with cloud.http("placement") as http:
        found = [http.get(f"/allocations/{consumer}").json()["allocations"] for consumer in consumers]
    return [{names[rp]: held["resources"] for rp, held in one.items()} for one in found]


def migrations(cloud, server: str) -> list[dict]:
    """The server's live migrations, oldest first (GET /os-migrations at 2.80, ended ones included)."""
    with cloud.http("compute") as http:
        response = http.get("/os-migrations", params={"instance_uuid": server, "migration_type": "live-migration"},
                            headers={"OpenStack-API-Version": "compute 2.80"})
    assert response.status_code == 200, response.text
    return sorted(response.json()["migrations"], key=lambda m: m["id"])


def progress(cloud, server: str, migration_uuid: str) -> dict:
    """`openstack server migration show` (by uuid: the client finds it in GET /servers/{id}/migrations), with the
    memory and disk figures the source's driver reports ({} once the migration is no longer under way)."""
    shown = cloud.openstack("--os-compute-api-version", "2.80", "server", "migration", "show", server,
                            migration_uuid, fmt_json=True, check=False)
    return shown if isinstance(shown, dict) else {}


def wait_migration(cloud, server: str, statuses: tuple[str, ...], timeout: float = 30.0) -> dict:
    def newest():
        rows = migrations(cloud, server)
        return rows[-1] if rows and rows[-1]["status"] in statuses else None
    return wait_for(newest, f"a migration of {server} {'/'.join(statuses)}", timeout)


def wait_task_done(cloud, server: str, timeout: float = 30.0) -> dict:
    return cloud.wait_server(server, lambda s: s["OS-EXT-STS:task_state"] is None, "to end its task", timeout)


def action(cloud, server: str, body: dict, version: str, cloud_name: str = "kilonova"):
    with cloud.http("compute", cloud_name) as http:
        return http.post(f"/servers/{server}/action", json=body, headers={"OpenStack-API-Version": f"compute {version}"})


def message(response) -> str:
    body = response.json()
    return next(iter(body.values()))["message"]


# ------------------------------------------------------------------------------------------------ the moves

def test_openstack_cli_scheduled_live_migration_moves_the_server_and_its_allocation(lm_cloud):
    cloud = lm_cloud
    with booted(cloud, "lm-sched") as server:
        source = host_of(cloud, server["id"])
        assert allocations(cloud, server["id"]) == {source: {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}}
        cloud.openstack("server", "migrate", "--live-migration", "--wait", server["id"], timeout=60)
        moved = show(cloud, server["id"])
        assert moved["status"] == "ACTIVE" and moved["OS-EXT-STS:task_state"] is None
        dest = moved["OS-EXT-SRV-ATTR:host"]
        assert dest != source
        assert moved["OS-EXT-SRV-ATTR:hypervisor_hostname"] == dest
        assert allocations(cloud, server["id"]) == {dest: {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}}
        record = migrations(cloud, server["id"])[-1]
        assert (record["status"], record["source_compute"], record["dest_compute"]) == ("completed", source, dest)
        assert allocations(cloud, record["uuid"]) == {}
        ports = cloud.openstack("port", "list", "--device-id", server["id"], "--long", fmt_json=True)
        port = cloud.openstack("port", "show", ports[0]["ID"], fmt_json=True)
        assert port["binding_host_id"] == dest
        log = cloud.openstack("console", "log", "show", server["id"]).stdout
        assert f"live migration completed: running on {dest}" in log
        cloud.audit()


def test_progress_placement_during_the_move_and_force_complete(lm_cloud):
    cloud = lm_cloud
    with booted(cloud, "lm-force") as server:
        source = host_of(cloud, server["id"])
        dest = next(h for h in ("compute1", "compute2", "compute3") if h != source)
        cloud.openstack("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", dest,
                        server["id"])
        assert show(cloud, server["id"])["status"] == "MIGRATING"
        record = wait_migration(cloud, server["id"], ("running",))
        shown = wait_for(lambda: (lambda p: p if (p.get("Memory Processed Bytes") or 0) > 0 else None)(
            progress(cloud, server["id"], record["uuid"])))
        assert shown["Status"] == "running" and shown["Server UUID"] == server["id"]
        assert shown["Memory Total Bytes"] == 512 << 20
        assert 0 < shown["Memory Processed Bytes"] < shown["Memory Total Bytes"]
        assert shown["Disk Total Bytes"] == 1 << 30  # "auto" on hosts that share no storage: a block migration
        # The server's progress is the share of its data copied (as upstream's libvirt driver reports it).
        copied = shown["Memory Processed Bytes"] + shown["Disk Processed Bytes"]
        moving = show(cloud, server["id"])
        assert moving["status"] == "MIGRATING"
        assert 0 < moving["progress"] < 100 and moving["progress"] >= int(copied * 100 / ((512 << 20) + (1 << 30)))
        # While it runs the migration holds the source's allocation and the instance the destination's.
        flavor = {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}
        assert allocations_now(cloud, record["uuid"], server["id"]) == [{source: flavor}, {dest: flavor}]
        # A migration that is not the server's: 400, as upstream.
        bogus = cloud.openstack("--os-compute-api-version", "2.22", "server", "migration", "force", "complete",
                                server["id"], "999999", check=False)
        assert bogus.returncode != 0 and f"Migration 999999 not found for instance {server['id']}" in bogus.stderr
        cloud.openstack("--os-compute-api-version", "2.22", "server", "migration", "force", "complete", server["id"],
                        str(record["id"]))
        done = wait_migration(cloud, server["id"], ("completed",), timeout=DELAY)
        assert done["dest_compute"] == dest
        took = datetime.fromisoformat(done["updated_at"]) - datetime.fromisoformat(done["created_at"])
        assert took.total_seconds() < DELAY - 1, took  # forced: no need to copy the rest at the usual pace
        moved = wait_task_done(cloud, server["id"])
        assert moved["status"] == "ACTIVE" and moved["OS-EXT-SRV-ATTR:host"] == dest and moved["progress"] == 0
        assert allocations(cloud, server["id"]) == {dest: flavor}
        assert allocations(cloud, record["uuid"]) == {}
        cloud.audit()


def test_nova_cli_abort_keeps_the_server_on_its_source(lm_cloud):
    cloud = lm_cloud
    with booted(cloud, "lm-abort") as server:
        source = host_of(cloud, server["id"])
        flavor = {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}
        cloud.nova("live-migration", server["id"])
        record = wait_migration(cloud, server["id"], ("running",))
        # `nova server-migration-list`: the migration under way with the memory the driver has reported.
        row = wait_for(lambda: next((line for line in cloud.nova(
            "--os-compute-api-version", "2.24", "server-migration-list", server["id"]).stdout.splitlines()
            if f"| {record['id']} " in line and str(512 << 20) in line), None))
        assert "running" in row and source in row
        cloud.nova("--os-compute-api-version", "2.24", "live-migration-abort", server["id"], str(record["id"]))
        ended = wait_migration(cloud, server["id"], ("cancelled",), timeout=DELAY)
        assert ended["id"] == record["id"]
        stayed = wait_task_done(cloud, server["id"])
        assert stayed["status"] == "ACTIVE" and stayed["OS-EXT-SRV-ATTR:host"] == source
        assert allocations(cloud, server["id"]) == {source: flavor}
        assert allocations(cloud, record["uuid"]) == {}
        # Aborting it again: it is over (400), and the server is no longer migrating (409).
        again = cloud.nova("--os-compute-api-version", "2.65", "live-migration-abort", server["id"], str(record["id"]),
                           check=False)
        assert again.returncode != 0 and f"Cannot 'abort live migration' instance {server['id']} while it is in " \
                                          f"task_state None" in again.stderr
        cloud.audit()


def test_openstack_cli_delete_mid_copy_aborts_the_migration_instead_of_waiting_for_it(lm_cloud):
    """As upstream: a delete does not wait for the server's live migration; the copy stops, the migration ends in
    error, the guest is deleted on the source and neither host keeps a claim."""
    cloud = lm_cloud
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                              "private", "--wait", "lm-delete", fmt_json=True)
    uuid, source = created["id"], created["OS-EXT-SRV-ATTR:host"]
    cloud.openstack("server", "migrate", "--live-migration", uuid)
    record = wait_migration(cloud, uuid, ("running",))
    started = time.monotonic()
    cloud.openstack("server", "delete", "--wait", uuid, timeout=DELAY + 30)
    took = time.monotonic() - started
    assert took < DELAY / 2, f"the delete waited {took:.0f} s for the live migration"
    ended = migrations(cloud, uuid)[-1]
    assert (ended["id"], ended["status"], ended["source_compute"]) == (record["id"], "error", source)
    assert allocations_now(cloud, uuid, record["uuid"]) == [{}, {}]
    output = "".join(cloud.output)
    assert f"{uuid} is being deleted: cutting its live migration to {record['dest_compute']} short" in output
    assert f"{uuid} was deleted during its live migration: removing the guest it got" not in output
    cloud.audit()


def test_nova_cli_and_sdk_to_a_named_host_then_force_complete_with_nova(lm_cloud):
    cloud = lm_cloud
    with booted(cloud, "lm-nova") as server:
        source = host_of(cloud, server["id"])
        dest = next(h for h in ("compute1", "compute2", "compute3") if h != source)
        cloud.nova("live-migration", "--block-migrate", server["id"], dest)
        record = wait_migration(cloud, server["id"], ("running",))
        cloud.nova("live-migration-force-complete", server["id"], str(record["id"]))
        wait_migration(cloud, server["id"], ("completed",), timeout=DELAY)
        assert wait_task_done(cloud, server["id"])["OS-EXT-SRV-ATTR:host"] == dest
        # openstacksdk, scheduled: anywhere but where it is.
        conn = cloud.sdk()
        try:
            found = conn.compute.get_server(server["id"])
            conn.compute.live_migrate_server(found, host=None, block_migration="auto")
            running = wait_for(lambda: [m for m in conn.compute.server_migrations(found) if m.status == "running"])
            conn.compute.force_complete_server_migration(running[0], found)
            conn.compute.wait_for_server(found, status="ACTIVE", wait=60, interval=0.5)
            wait_migration(cloud, server["id"], ("completed",), timeout=DELAY)
            final = wait_task_done(cloud, server["id"])
        finally:
            conn.close()
        assert final["OS-EXT-SRV-ATTR:host"] != dest
        assert set(allocations(cloud, server["id"])) == {final["OS-EXT-SRV-ATTR:host"]}
        cloud.audit()


# ------------------------------------------------------------------------------------------------ refusals

@pytest.fixture(scope="module")
def idle(lm_cloud):
    with booted(lm_cloud, "lm-idle") as server:
        yield server


def test_body_per_microversion(lm_cloud, idle):
    cloud, uuid = lm_cloud, idle["id"]
    cases = [
        ("2.1", {"host": None, "block_migration": False}, "'disk_over_commit' is a required property"),
        ("2.24", {"host": None, "block_migration": "auto", "disk_over_commit": False}, "'auto' is not one of"),
        ("2.25", {"host": None, "block_migration": "auto", "disk_over_commit": False},
         "Additional properties are not allowed ('disk_over_commit' was unexpected)"),
        ("2.25", {"host": None, "block_migration": "auto", "force": True},
         "Additional properties are not allowed ('force' was unexpected)"),
        ("2.30", {"host": None, "block_migration": "auto", "force": True}, "Can't force to a non-provided destination"),
        ("2.30", {"host": None, "block_migration": "maybe"}, "'maybe' is not one of"),
        ("2.68", {"host": "compute1", "block_migration": "auto", "force": False},
         "Additional properties are not allowed ('force' was unexpected)"),
        ("2.30", {"block_migration": "auto"}, "'host' is a required property"),
        ("2.30", {"host": "bad host!", "block_migration": "auto"}, "does not match"),
    ]
    for version, body, expected in cases:
        response = action(cloud, uuid, {"os-migrateLive": body}, version)
        assert response.status_code == 400, (version, body, response.text)
        assert expected in message(response), (version, body, message(response))
    assert show(cloud, uuid)["OS-EXT-STS:task_state"] is None


def test_refusals_before_2_34_are_400s_and_leave_the_server_as_it_was(lm_cloud, idle):
    cloud, uuid = lm_cloud, idle["id"]
    source = host_of(cloud, uuid)
    before = len(migrations(cloud, uuid))  # the module's other tests move this server too
    unknown = action(cloud, uuid, {"os-migrateLive": {"host": "nosuch", "block_migration": False,
                                                      "disk_over_commit": False}}, "2.1")
    assert (unknown.status_code, message(unknown)) == (400, "Compute host nosuch could not be found.")
    to_self = action(cloud, uuid, {"os-migrateLive": {"host": source, "block_migration": False,
                                                      "disk_over_commit": False}}, "2.1")
    assert (to_self.status_code, message(to_self)) == (
        400, f"Unable to migrate instance ({uuid}) to current host ({source}).")
    scheduled_to_self = action(cloud, uuid, {"os-migrateLive": {"host": source, "block_migration": "auto"}}, "2.30")
    assert scheduled_to_self.status_code == 400 and message(scheduled_to_self).startswith("No valid host was found.")
    after = show(cloud, uuid)
    assert after["status"] == "ACTIVE" and after["OS-EXT-SRV-ATTR:host"] == source
    assert [m["status"] for m in migrations(cloud, uuid)[before:]] == ["error", "error"]
    assert allocations(cloud, uuid) == {source: {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}}


def test_from_2_34_a_refusal_ends_the_migration_in_error_after_the_202(lm_cloud, idle):
    cloud, uuid = lm_cloud, idle["id"]
    source = host_of(cloud, uuid)
    before = len(migrations(cloud, uuid))
    response = action(cloud, uuid, {"os-migrateLive": {"host": source, "block_migration": "auto", "force": True}},
                      "2.34")
    assert response.status_code == 202, response.text
    record = wait_for(lambda: (lambda m: m[-1] if len(m) > before and m[-1]["status"] == "error" else None)(
        migrations(cloud, uuid)))
    assert record["source_compute"] == source
    after = wait_task_done(cloud, uuid)
    assert after["status"] == "ACTIVE" and after["OS-EXT-SRV-ATTR:host"] == source
    assert allocations(cloud, uuid) == {source: {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}}
    cloud.audit()


def test_policy_state_and_migration_routes(lm_cloud, idle):
    cloud, uuid = lm_cloud, idle["id"]
    body = {"os-migrateLive": {"host": None, "block_migration": "auto"}}
    forbidden = action(cloud, uuid, body, "2.30", cloud_name="kilonova-demo")
    # The demo user's project does not own the admin's server: 404 before any policy.
    assert forbidden.status_code == 404
    with cloud.http("compute") as http:
        def call(method, path, version, json=None):
            return http.request(method, f"/servers/{uuid}/migrations/{path}", json=json,
                                headers={"OpenStack-API-Version": f"compute {version}"})
        assert call("POST", "1/action", "2.21", {"force_complete": None}).status_code == 404
        assert call("DELETE", "1", "2.23").status_code == 404
        bad = call("POST", "1/action", "2.22", {"force_complete": {}})
        assert bad.status_code == 400
        not_migrating = call("POST", "1/action", "2.22", {"force_complete": None})
        assert (not_migrating.status_code, message(not_migrating)) == (
            409, f"Cannot 'force_complete' instance {uuid} while it is in task_state None")
        not_migrating = call("DELETE", "1", "2.24")
        assert (not_migrating.status_code, message(not_migrating)) == (
            409, f"Cannot 'abort live migration' instance {uuid} while it is in task_state None")
    cloud.openstack("server", "stop", uuid)
    cloud.wait_status(uuid, "SHUTOFF")
    try:
        stopped = action(cloud, uuid, body, "2.30")
        assert (stopped.status_code, message(stopped)) == (
            409, f"Cannot 'os-migrateLive' instance {uuid} while it is in vm_state stopped")
    finally:
        cloud.openstack("server", "start", uuid)
        cloud.wait_status(uuid, "ACTIVE")


def test_non_admin_is_refused_with_upstreams_policy_message(lm_cloud):
    cloud = lm_cloud
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                              "private", "--wait", "lm-demo", fmt_json=True, cloud="kilonova-demo")
    try:
        response = action(cloud, created["id"], {"os-migrateLive": {"host": None, "block_migration": "auto"}}, "2.30",
                          cloud_name="kilonova-demo")
        assert (response.status_code, message(response)) == (
            403, "Policy doesn't allow os_compute_api:os-migrate-server:migrate_live to be performed.")
        with cloud.http("compute", "kilonova-demo") as http:
            abort = http.delete(f"/servers/{created['id']}/migrations/1",
                                headers={"OpenStack-API-Version": "compute 2.24"})
            assert (abort.status_code, message(abort)) == (
                403, "Policy doesn't allow os_compute_api:servers:migrations:delete to be performed.")
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], cloud="kilonova-demo", check=False)


# ------------------------------------------------------------------------------------------------ never stuck

def test_a_migration_cut_short_by_a_kill_is_rolled_back_by_the_reconcile_pass():
    """kill -9 of the whole cloud (source agent, destination agent and conductor) while the guest is being copied:
    after the restart the record has stopped moving; the conductor asks the hosts where the guest runs (the source,
    where its agent restored it), rolls the rest back, and the audit is clean."""
    cloud = new_cloud(hosts=2, config={"fake_driver": {"live_migration_delay": "60"},
                                       "conductor": {"reconcile_interval": "1", "live_migration_stall_timeout": "3"}})
    cloud.start()
    try:
        server = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                                 "private", "--wait", "lm-kill", fmt_json=True)
        source = host_of(cloud, server["id"])
        cloud.openstack("server", "migrate", "--live-migration", server["id"])
        running = wait_migration(cloud, server["id"], ("running",))
        cloud.proc.kill()
        cloud.proc.wait()
        cloud.proc = None
        cloud.start()
        ended = wait_migration(cloud, server["id"], ("error",), timeout=30)
        assert ended["id"] == running["id"]
        after = wait_task_done(cloud, server["id"])
        assert after["status"] == "ACTIVE" and after["OS-EXT-SRV-ATTR:host"] == source
        assert allocations(cloud, server["id"]) == {source: {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}}
        assert allocations(cloud, running["uuid"]) == {}
        cloud.audit()
        cloud.openstack("server", "delete", "--wait", server["id"])
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)
