"""Instance actions and migration records through the real `openstack` and `nova` CLIs and openstacksdk
against `kilonova up`: every action records itself with the request id its response carried, its steps are
events, and os-migrations lists the records of every cell."""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timedelta

import pytest

from kilonova.common.db import Database
from kilonova.compute.db import migrations
from tests.cloud import wait_for

# What test_every_action_records_its_steps does, newest first.
ADMIN_DONE = ("createImage", "unlock", "lock", "reboot", "resume", "suspend", "unpause", "pause")


def events_of(cloud, server_id: str, request_id: str, version: str = "2.84") -> dict:
    return cloud.openstack("--os-compute-api-version", version, "server", "event", "show", server_id, request_id,
                           fmt_json=True)


@pytest.fixture(scope="module")
def server(cloud):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-events", fmt_json=True)
    yield created
    cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_response_request_ids_are_the_recorded_ones(cloud, server):
    with cloud.http("compute") as http:
        shown = http.get(f"/servers/{server['id']}")
        assert shown.headers["x-compute-request-id"] == shown.headers["x-openstack-request-id"]
        stopped = http.post(f"/servers/{server['id']}/action", json={"os-stop": None})
        assert stopped.status_code == 202
        request_id = stopped.headers["x-openstack-request-id"]
        assert stopped.headers["x-compute-request-id"] == request_id and request_id.startswith("req-")
        refused = http.post(f"/servers/{server['id']}/action", json={"os-stop": None})
        assert refused.status_code == 409 and refused.headers["x-compute-request-id"].startswith("req-")
    cloud.wait_status(server["id"], "SHUTOFF")
    action = wait_for(lambda: (lambda a: a if a["events"] and a["events"][0]["finish_time"] else None)(
        events_of(cloud, server["id"], request_id)), what="the stop event to finish")
    assert action["action"] == "stop" and action["request_id"] == request_id
    assert [(e["event"], e["result"]) for e in action["events"]] == [("compute_stop_instance", "Success")]
    assert action["events"][0]["host"] == server["OS-EXT-SRV-ATTR:host"]
    cloud.openstack("server", "start", server["id"])
    cloud.wait_status(server["id"], "ACTIVE")


def test_every_action_records_its_steps(cloud, server):
    sid = server["id"]
    for verb, status in (("pause", "PAUSED"), ("unpause", "ACTIVE"), ("suspend", "SUSPENDED"),
                         ("resume", "ACTIVE"), ("reboot", "ACTIVE")):
        cloud.openstack("server", verb, sid)
        cloud.wait_status(sid, status, settled=verb == "reboot")
    cloud.openstack("server", "lock", sid)
    cloud.openstack("server", "unlock", sid)
    cloud.openstack("server", "image", "create", "--name", "vm-events-snap", "--wait", sid)
    cloud.wait_server(sid, lambda s: s["OS-EXT-STS:task_state"] is None, "the snapshot to end")
    listed = cloud.openstack("server", "event", "list", sid, fmt_json=True)
    names = [row["Action"] for row in listed]
    assert names[:len(ADMIN_DONE)] == list(ADMIN_DONE)
    assert names[-1] == "create"
    expected = {"createImage": "compute_snapshot_instance", "lock": "api_lock", "unlock": "api_unlock",
                "reboot": "compute_reboot_instance", "create": "compute__do_build_and_run_instance",
                **{name: f"compute_{name}_instance" for name in ("resume", "suspend", "unpause", "pause", "start",
                                                                  "stop")}}
    for row in listed:
        action = events_of(cloud, sid, row["Request ID"])
        assert action["action"] == row["Action"] and action["message"] is None, action
        assert [(e["event"], e["result"]) for e in action["events"]] == [(expected[row["Action"]], "Success")], action
        assert all(e["finish_time"] and e["host_id"] for e in action["events"])
    image = cloud.openstack("image", "show", "vm-events-snap", fmt_json=True)
    cloud.openstack("image", "delete", image["id"])


def test_pages_and_microversion_boundaries_through_the_clients(cloud, server):
    sid = server["id"]
    # Actions of its own to page through: the module's other tests may run on the other xdist worker.
    cloud.openstack("server", "stop", sid)
    cloud.wait_status(sid, "SHUTOFF")
    cloud.openstack("server", "start", sid)
    cloud.wait_status(sid, "ACTIVE")
    everything = cloud.openstack("--os-compute-api-version", "2.58", "server", "event", "list", sid, "--long",
                                 fmt_json=True)
    assert len(everything) >= 3 and everything[-1]["Action"] == "create"
    with cloud.http("compute") as http:
        path = f"/servers/{sid}/os-instance-actions"
        assert "updated_at" not in http.get(path, headers={"OpenStack-API-Version": "compute 2.57"}).json()[
            "instanceActions"][0]
        assert http.get(path, headers={"OpenStack-API-Version": "compute 2.58"}).json()[
            "instanceActions"][0]["updated_at"]
    first = cloud.openstack("--os-compute-api-version", "2.58", "server", "event", "list", sid, "--limit", "2",
                            fmt_json=True)
    assert [r["Request ID"] for r in first] == [r["Request ID"] for r in everything[:2]]
    after = cloud.openstack("--os-compute-api-version", "2.58", "server", "event", "list", sid, "--limit", "2",
                            "--marker", first[-1]["Request ID"], fmt_json=True)
    assert [r["Request ID"] for r in after] == [r["Request ID"] for r in everything[2:4]]
    bad = cloud.openstack("--os-compute-api-version", "2.58", "server", "event", "list", sid, "--marker",
                          "req-not-there", check=False)
    assert bad.returncode != 0 and "Marker None could not be found" in bad.stderr
    future = (datetime.utcnow() + timedelta(hours=1)).isoformat()
    assert cloud.openstack("--os-compute-api-version", "2.58", "server", "event", "list", sid, "--changes-since",
                           future, fmt_json=True) == []
    # The owner (demo) sees events from 2.51, without traceback or host; admins see the host from 2.62.
    request_id = everything[-1]["Request ID"]
    assert events_of(cloud, sid, request_id, version="2.61")["events"][0].get("host") is None
    assert events_of(cloud, sid, request_id, version="2.62")["events"][0]["host"].startswith("compute")
    details = events_of(cloud, sid, request_id, version="2.84")["events"][0]
    assert "details" in details and details["details"] is None
    # The nova CLI and openstacksdk read the same records.
    listed = cloud.nova("instance-action-list", sid).stdout
    assert "stop" in listed and "create" in listed and request_id in listed
    conn = cloud.sdk()
    try:
        actions = list(conn.compute.server_actions(sid))
        assert actions[-1].action == "create" and actions[-1].request_id == request_id
        fetched = conn.compute.get_server_action(request_id, sid)
        assert fetched.events[0]["event"] == "compute__do_build_and_run_instance"
    finally:
        conn.close()


def test_owner_sees_events_from_2_51_without_traceback(cloud):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-demo-events", cloud="kilonova-demo",
                              fmt_json=True)
    try:
        listed = cloud.openstack("server", "event", "list", created["id"], cloud="kilonova-demo", fmt_json=True)
        assert [row["Action"] for row in listed] == ["create"]
        request_id = listed[0]["Request ID"]
        with cloud.http("compute", "kilonova-demo") as http:
            old = http.get(f"/servers/{created['id']}/os-instance-actions/{request_id}",
                           headers={"OpenStack-API-Version": "compute 2.50"}).json()["instanceAction"]
        assert "events" not in old and old["request_id"] == request_id
        new = cloud.openstack("--os-compute-api-version", "2.62", "server", "event", "show", created["id"],
                              request_id, cloud="kilonova-demo", fmt_json=True)
        event = new["events"][0]
        assert event["event"] == "compute__do_build_and_run_instance" and event["host_id"]
        assert event.get("traceback") is None and event.get("host") is None
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], cloud="kilonova-demo", check=False)
    # From 2.21 the actions of the deleted server are still there, its delete with them.
    listed = cloud.openstack("--os-compute-api-version", "2.21", "server", "event", "list", created["id"],
                             cloud="kilonova-demo", fmt_json=True)
    assert [row["Action"] for row in listed] == ["delete", "create"]
    delete = cloud.openstack("--os-compute-api-version", "2.21", "server", "event", "show", created["id"],
                             listed[0]["Request ID"], fmt_json=True)
    assert [(e["event"], e["result"]) for e in delete["events"]] == [("compute_terminate_instance", "Success")]
    gone = cloud.openstack("--os-compute-api-version", "2.20", "server", "event", "list", created["id"],
                           check=False)
    assert gone.returncode != 0


def test_build_that_cannot_be_scheduled_records_the_conductor_step(cloud):
    flavor = "events-huge"
    cloud.openstack("flavor", "create", "--ram", "64", "--vcpus", "1", "--disk", "900000", flavor)
    try:
        created = cloud.openstack("server", "create", "--flavor", flavor, "--image", "kilonova-tiny",
                                  "--network", "private", "vm-no-host", fmt_json=True)
        cloud.wait_status(created["id"], "ERROR")
        listed = cloud.openstack("server", "event", "list", created["id"], fmt_json=True)
        assert [row["Action"] for row in listed] == ["create"]
        action = events_of(cloud, created["id"], listed[0]["Request ID"])
        assert action["message"] == "Error"
        assert [(e["event"], e["result"]) for e in action["events"]] == [
            ("conductor_schedule_and_build_instances", "Error")]
        assert action["events"][0]["details"]
        cloud.openstack("server", "delete", "--wait", created["id"])
    finally:
        cloud.openstack("flavor", "delete", flavor, check=False)


@pytest.fixture
def migration_records(cloud, server):
    """Records of ``server`` written into the cloud's cell database through the real data layer (no operation
    here makes them yet): a confirmed resize and a live migration under way with its progress."""
    db = Database(f"sqlite:///{cloud.state_dir}/cell1.sqlite", name="test-cell1")
    host = server["OS-EXT-SRV-ATTR:host"]
    now = datetime.utcnow()
    common = {"instance_uuid": server["id"], "source_compute": host, "source_node": host, "dest_compute": "compute9",
              "dest_node": "compute9", "old_instance_type_id": 1, "new_instance_type_id": 1,
              "user_id": "someone", "project_id": server.get("project_id") or "p"}
    made = [db.run_sync(migrations.create, {**common, "uuid": str(uuidlib.uuid4()), "migration_type": "resize",
                                             "status": "confirmed", "created_at": now - timedelta(seconds=2),
                                             "updated_at": now - timedelta(seconds=2)}),
            db.run_sync(migrations.create, {**common, "uuid": str(uuidlib.uuid4()), "migration_type": "live-migration",
                                             "status": "running", "dest_host": "127.0.0.9", "memory_total": 2048,
                                             "memory_processed": 1024, "memory_remaining": 1024,
                                             "created_at": now, "updated_at": now})]
    yield made

    def drop(session):
        for record in made:
            session.execute(migrations.Migration.__table__.delete().where(
                migrations.Migration.uuid == record["uuid"]))
    db.run_sync(drop)
    db.close()


def test_migration_lists_through_the_clients(cloud, server, migration_records):
    resize, live = migration_records
    rows = cloud.openstack("--os-compute-api-version", "2.80", "server", "migration", "list", "--server",
                           server["id"], fmt_json=True)
    assert [r["UUID"] for r in rows] == [live["uuid"], resize["uuid"]]
    assert rows[0]["Type"] == "live-migration" and rows[0]["Status"] == "running"
    with cloud.http("compute") as http:
        listed = http.get("/os-migrations", params={"instance_uuid": server["id"]},
                          headers={"OpenStack-API-Version": "compute 2.80"}).json()["migrations"]
        assert [(m["user_id"], m["project_id"]) for m in listed] == [("someone", live["project_id"])] * 2
        assert "user_id" not in http.get("/os-migrations", headers={"OpenStack-API-Version": "compute 2.79"}).json()[
            "migrations"][0]
    page = cloud.openstack("--os-compute-api-version", "2.59", "server", "migration", "list", "--limit", "1",
                           "--server", server["id"], fmt_json=True)
    assert [r["UUID"] for r in page] == [live["uuid"]]
    rest = cloud.openstack("--os-compute-api-version", "2.59", "server", "migration", "list", "--limit", "1",
                           "--marker", live["uuid"], "--server", server["id"], fmt_json=True)
    assert [r["UUID"] for r in rest] == [resize["uuid"]]
    bad = cloud.openstack("--os-compute-api-version", "2.59", "server", "migration", "list", "--marker",
                          str(uuidlib.uuid4()), check=False)
    assert bad.returncode != 0 and "could not be found" in bad.stderr
    typed = cloud.openstack("--os-compute-api-version", "2.23", "server", "migration", "list", "--type",
                            "live-migration", "--server", server["id"], fmt_json=True)
    assert [r["Id"] for r in typed] == [live["id"]]
    listed = cloud.nova("migration-list", "--instance-uuid", server["id"]).stdout
    assert "live-migration" in listed and "compute9" in listed
    # GET /servers/{id}/migrations: the live migration under way, with its progress.
    # (by uuid the CLI lists the server's migrations; by id this client release calls the SDK with its
    # arguments swapped, so the SDK is asked directly below)
    shown = cloud.openstack("--os-compute-api-version", "2.59", "server", "migration", "show", server["id"],
                            live["uuid"], fmt_json=True)
    assert shown["Status"] == "running" and shown["Memory Total Bytes"] == 2048 and shown["ID"] == live["id"]
    assert "running" in cloud.nova("--os-compute-api-version", "2.23", "server-migration-show", server["id"],
                                   str(live["id"])).stdout
    conn = cloud.sdk()
    try:
        found = list(conn.compute.migrations(instance_uuid=server["id"]))
        assert {m.id for m in found} == {resize["id"], live["id"]}
        one = conn.compute.get_server_migration(live["id"], server["id"], ignore_missing=False)
        assert one.status == "running" and one.memory_processed_bytes == 1024
    finally:
        conn.close()
    refused = cloud.openstack("server", "migration", "list", cloud="kilonova-demo", check=False)
    assert refused.returncode != 0 and "403" in refused.stderr


def test_a_real_resize_as_os_migrations_and_os_instance_actions_show_it(cloud):
    """A resize and its confirm made by the real operation (not inserted): the record's fields per microversion,
    its filters, and the two actions with their request ids."""
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-moved", fmt_json=True)
    sid = created["id"]
    try:
        with cloud.http("compute") as http:
            resized = http.post(f"/servers/{sid}/action", json={"resize": {"flavorRef": "2"}})
            assert resized.status_code == 202, resized.text
            resize_request = resized.headers["x-compute-request-id"]
            cloud.wait_status(sid, "VERIFY_RESIZE", 60)
            confirmed = http.post(f"/servers/{sid}/action", json={"confirmResize": None})
            assert confirmed.status_code == 204, confirmed.text
            cloud.wait_status(sid, "ACTIVE", 60)

            def listed(version, **params):
                response = http.get("/os-migrations", params={"instance_uuid": sid, **params},
                                    headers={"OpenStack-API-Version": f"compute {version}"})
                assert response.status_code == 200, response.text
                return response.json()["migrations"]
            [old] = listed("2.1")
            assert "migration_type" not in old and "uuid" not in old and "user_id" not in old
            assert (old["source_compute"], old["status"]) == (created["OS-EXT-SRV-ATTR:host"], "confirmed")
            [latest] = listed("2.80")
            assert latest["migration_type"] == "resize" and "links" not in latest and latest["uuid"]
            assert latest["user_id"] and latest["project_id"]
            assert listed("2.80", user_id=latest["user_id"], project_id=latest["project_id"]) == [latest]
            assert listed("2.59", **{"changes-since": (datetime.utcnow() + timedelta(hours=1)).isoformat()}) == []
            assert listed("2.23", migration_type="live-migration") == []
            # Not a live migration: nothing under way for GET /servers/{id}/migrations.
            assert http.get(f"/servers/{sid}/migrations",
                            headers={"OpenStack-API-Version": "compute 2.80"}).json() == {"migrations": []}
        assert latest["uuid"] in cloud.nova("--os-compute-api-version", "2.59", "migration-list", "--instance-uuid",
                                            sid).stdout
        actions = cloud.openstack("server", "event", "list", sid, fmt_json=True)
        assert [a["Action"] for a in actions] == ["confirmResize", "resize", "create"]
        assert actions[1]["Request ID"] == resize_request
        steps = events_of(cloud, sid, resize_request)["events"]
        assert steps and all(e["result"] == "Success" and e["finish_time"] for e in steps)
    finally:
        cloud.openstack("server", "delete", "--wait", sid, check=False)
