"""Live migration steps held or failed by the fake driver ([fake_driver] step_gates / fail_steps): an abort while the
destination prepares (only from 2.65), a destination whose preparation fails, a delete while the conductor checks
the move, one while the destination prepares and one once the guest has moved, and the instance action with its
events, through the real `openstack` CLI against a real `kilonova up`.

The destination's check_can_live_migrate_destination, pre_live_migration and post_live_migration_at_destination
wait at gates the test opens (files in the cloud's state directory), so whatever the test does while the
destination holds happens then, however loaded the machine is."""
from __future__ import annotations

import shutil

import pytest

from tests.cloud import new_cloud, wait_for
from tests.functional.test_live_migration_cli import (allocations, message, migrations, show,
                                                      wait_migration, wait_task_done)

FLAVOR = {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}
PREPARE = "pre_live_migration"  # the gated steps
SWITCH = "post_live_migration_at_destination"
CHECK = "check_can_live_migrate_destination"  # gated too, its gate opened for each test's migration


@pytest.fixture(scope="module")
def steps_cloud():
    instance = new_cloud(hosts=3, config={"fake_driver": {
        "fail_spawn_hosts": "", "live_migration_delay": "1", "step_gates": f"{PREPARE},{SWITCH},{CHECK}",
        "fail_steps": "pre_live_migration", "fail_step_hosts": "compute3"}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


def open_gate(cloud, step: str = PREPARE) -> None:
    """Let one held (or the next) call of ``step`` through."""
    gates = cloud.state_dir / "step-gates"
    gates.mkdir(exist_ok=True)
    (gates / step).touch()


def close_gate(cloud, step: str = PREPARE) -> None:
    (cloud.state_dir / "step-gates" / step).unlink(missing_ok=True)


@pytest.fixture
def on_compute1(steps_cloud):
    for step in (PREPARE, SWITCH):
        close_gate(steps_cloud, step)  # a gate an earlier test opened without a call taking it
    open_gate(steps_cloud, CHECK)
    created = steps_cloud.openstack("--os-compute-api-version", "2.74", "server", "create", "--flavor", "m1.tiny",
                                    "--image", "kilonova-tiny", "--network", "private", "--host", "compute1", "--wait",
                                    "lm-steps", fmt_json=True)
    try:
        assert created["OS-EXT-SRV-ATTR:host"] == "compute1"
        yield created
    finally:
        under_way = {m["status"] for m in migrations(steps_cloud, created["id"])}
        for status, step in (("accepted", CHECK), ("preparing", PREPARE), ("post-migrating", SWITCH)):
            if status in under_way:
                open_gate(steps_cloud, step)  # a test that failed with the destination held
        steps_cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def abort(cloud, server: str, migration_id: int, version: str):
    with cloud.http("compute") as http:
        return http.delete(f"/servers/{server}/migrations/{migration_id}",
                           headers={"OpenStack-API-Version": f"compute {version}"})


def events(cloud, server: str, action: str) -> dict[str, str]:
    """Event name -> result of the server's newest ``action`` (`openstack server event list/show`)."""
    listed = cloud.openstack("--os-compute-api-version", "2.84", "server", "event", "list", server, fmt_json=True)
    request_id = next(row["Request ID"] for row in listed if row["Action"] == action)
    shown = cloud.openstack("--os-compute-api-version", "2.84", "server", "event", "show", server, request_id,
                            fmt_json=True)
    return {event["event"]: event["result"] for event in shown["events"]}


def test_abort_while_the_destination_prepares_needs_2_65(steps_cloud, on_compute1):
    cloud, uuid = steps_cloud, on_compute1["id"]
    cloud.openstack("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", "compute2",
                    uuid)
    record = wait_migration(cloud, uuid, ("preparing",))
    too_old = abort(cloud, uuid, record["id"], "2.64")
    assert (too_old.status_code, message(too_old)) == (
        400, f"Migration {record['id']} state of instance {uuid} is preparing. Cannot abort live migration while the "
             f"migration is in this state.")
    unknown = abort(cloud, uuid, 999999, "2.65")
    assert (unknown.status_code, message(unknown)) == (404, f"Migration 999999 not found for instance {uuid}")
    cloud.openstack("--os-compute-api-version", "2.65", "server", "migration", "abort", uuid, str(record["id"]))
    assert migrations(cloud, uuid)[-1]["status"] == "preparing"  # cancelled at its next step
    open_gate(cloud)
    ended = wait_migration(cloud, uuid, ("cancelled",))
    assert ended["id"] == record["id"]
    after = wait_task_done(cloud, uuid)
    assert after["status"] == "ACTIVE" and after["OS-EXT-SRV-ATTR:host"] == "compute1"
    assert allocations(cloud, uuid) == {"compute1": FLAVOR}
    assert allocations(cloud, ended["uuid"]) == {}
    steps = events(cloud, uuid, "live-migration")
    assert steps["conductor_live_migrate_instance"] == "Success"
    assert steps["compute_check_can_live_migrate_destination"] == "Success"
    assert steps["compute_pre_live_migration"] == "Success"
    assert steps["compute_rollback_live_migration_at_destination"] == "Success"
    assert events(cloud, uuid, "live_migration_cancel") == {"compute_live_migration_abort": "Success"}
    cloud.audit()


def test_a_failed_preparation_rolls_back_to_the_source(steps_cloud, on_compute1):
    cloud, uuid = steps_cloud, on_compute1["id"]
    cloud.openstack("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", "compute3",
                    uuid)
    record = wait_migration(cloud, uuid, ("preparing",))
    open_gate(cloud)
    ended = wait_migration(cloud, uuid, ("error",))
    assert ended["id"] == record["id"]
    after = wait_task_done(cloud, uuid)
    assert after["status"] == "ACTIVE" and after["OS-EXT-SRV-ATTR:host"] == "compute1"
    assert allocations(cloud, uuid) == {"compute1": FLAVOR}
    steps = events(cloud, uuid, "live-migration")
    assert steps["compute_pre_live_migration"] == "Error"
    assert steps["compute_live_migration"] == "Error"
    with cloud.http("compute") as http:
        actions = http.get(f"/servers/{uuid}/os-instance-actions").json()["instanceActions"]
    assert next(a for a in actions if a["action"] == "live-migration")["message"] == "Error"
    cloud.audit()


def test_a_completed_move_records_every_step_and_takes_the_destinations_zone(steps_cloud, on_compute1):
    cloud, uuid = steps_cloud, on_compute1["id"]
    assert show(cloud, uuid)["OS-EXT-AZ:availability_zone"] == "nova"
    cloud.openstack("aggregate", "create", "--zone", "zone-b", "agg-b")
    cloud.openstack("aggregate", "add", "host", "agg-b", "compute2")
    try:
        open_gate(cloud)
        open_gate(cloud, SWITCH)
        cloud.openstack("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host",
                        "compute2", "--wait", uuid, timeout=60)
        assert show(cloud, uuid)["OS-EXT-AZ:availability_zone"] == "zone-b"
    finally:
        cloud.openstack("aggregate", "remove", "host", "agg-b", "compute2", check=False)
        cloud.openstack("aggregate", "delete", "agg-b", check=False)
    done = wait_migration(cloud, uuid, ("completed",))
    assert (done["source_compute"], done["dest_compute"]) == ("compute1", "compute2")
    assert show(cloud, uuid)["OS-EXT-SRV-ATTR:host"] == "compute2"
    assert allocations(cloud, uuid) == {"compute2": FLAVOR}
    steps = events(cloud, uuid, "live-migration")
    assert {name: steps.get(name) for name in (
        "conductor_live_migrate_instance", "compute_check_can_live_migrate_destination",
        "compute_check_can_live_migrate_source", "compute_pre_live_migration", "compute_live_migration",
        "compute_post_live_migration_at_destination")} == dict.fromkeys((
            "conductor_live_migrate_instance", "compute_check_can_live_migrate_destination",
            "compute_check_can_live_migrate_source", "compute_pre_live_migration", "compute_live_migration",
            "compute_post_live_migration_at_destination"), "Success")
    assert [m["status"] for m in migrations(cloud, uuid)] == ["completed"]
    cloud.wait_status(uuid, "ACTIVE")
    cloud.audit()


def test_a_server_deleted_while_the_destination_prepares_cuts_the_move_short(steps_cloud, on_compute1):
    """As upstream's delete, which does not wait for the live migration: it stops at its next step, is rolled back
    (the destination's preparation undone, the record ends error) and the guest is deleted on the source."""
    cloud, uuid = steps_cloud, on_compute1["id"]
    sdk = cloud.sdk()
    sdk.compute.get_server(uuid)
    cloud.openstack("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", "compute2",
                    uuid)
    record = wait_migration(cloud, uuid, ("preparing",))
    sdk.compute.delete_server(uuid)
    wait_for(lambda: f"{uuid} is being deleted: cutting its live migration to compute2 short" in "".join(cloud.output))
    open_gate(cloud)
    ended = wait_migration(cloud, uuid, ("error", "completed", "cancelled"))
    assert (ended["id"], ended["status"]) == (record["id"], "error")
    wait_for(lambda: cloud.openstack("server", "show", uuid, check=False).returncode != 0, timeout=30)
    assert allocations(cloud, uuid) == {} and allocations(cloud, ended["uuid"]) == {}
    output = "".join(cloud.output)
    # Never copied: no guest reached the destination to be removed there.
    assert f"{uuid} was deleted during its live migration: removing the guest it got" not in output
    cloud.audit()


def test_a_server_deleted_once_its_guest_moved_is_removed_by_the_destination(steps_cloud, on_compute1):
    """Too late to cut the move short: the guest runs on the destination, which is about to take the server
    over. The delete goes to the source, which no longer has the guest; the destination refuses the server being
    deleted and removes the guest it got, and the migration ends in error."""
    cloud, uuid = steps_cloud, on_compute1["id"]
    sdk = cloud.sdk()
    sdk.compute.get_server(uuid)
    open_gate(cloud)
    cloud.openstack("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", "compute2",
                    uuid)
    record = wait_migration(cloud, uuid, ("post-migrating",))
    sdk.compute.delete_server(uuid)
    wait_for(lambda: f"{uuid} is being deleted: cutting its live migration to compute2 short" in "".join(cloud.output))
    open_gate(cloud, SWITCH)
    ended = wait_migration(cloud, uuid, ("error", "completed", "cancelled"))
    assert (ended["id"], ended["status"]) == (record["id"], "error")
    wait_for(lambda: cloud.openstack("server", "show", uuid, check=False).returncode != 0, timeout=30)
    assert allocations(cloud, uuid) == {} and allocations(cloud, ended["uuid"]) == {}
    assert f"{uuid} was deleted during its live migration: removing the guest it got on compute2" in \
        "".join(cloud.output)
    cloud.audit()


def test_a_server_deleted_while_the_conductor_checks_its_move_leaves_no_claim(steps_cloud, on_compute1):
    """Deleted before the source has the migration (the destination's check held at its gate): the source deletes
    it at once; the conductor's checks then fail and its undo gives nothing back to a server that is gone."""
    cloud, uuid = steps_cloud, on_compute1["id"]
    sdk = cloud.sdk()
    sdk.compute.get_server(uuid)
    close_gate(cloud, CHECK)
    # From 2.34 the API does not wait for the checks.
    with cloud.http("compute") as http:
        started = http.post(f"/servers/{uuid}/action", json={"os-migrateLive": {
            "host": "compute2", "block_migration": "auto"}}, headers={"OpenStack-API-Version": "compute 2.34"})
    assert started.status_code == 202, started.text
    record = wait_migration(cloud, uuid, ("accepted",))
    sdk.compute.delete_server(uuid)
    wait_for(lambda: cloud.openstack("server", "show", uuid, check=False).returncode != 0, timeout=30)
    open_gate(cloud, CHECK)
    ended = wait_migration(cloud, uuid, ("error", "completed", "cancelled"))
    assert (ended["id"], ended["status"]) == (record["id"], "error")
    assert allocations(cloud, uuid) == {} and allocations(cloud, ended["uuid"]) == {}
    cloud.audit()
