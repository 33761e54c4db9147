"""os-instance-actions on a compute API app over real SQLite cell databases: records written through the
data layer (kilonova/compute/db/instance_actions.py), read through the API at every microversion boundary."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest

from kilonova.compute.db import instance_actions, instances, mappings
from kilonova.compute.db.cell_models import InstanceAction
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures

SERVER = "5b2c5a3e-4f0e-4a57-9d6f-0a1b2c3d4e5f"
OTHER = "6c3d6b4f-5a1f-4b68-8e7a-1b2c3d4e5f60"


def _server(stub, uuid: str, project: str = "demo-project") -> None:
    cell = stub.cells.default

    def mapped(session):
        mappings.create_instance_mapping(session, uuid, project, "demo-user")
        mappings.set_instance_cell(session, uuid, cell.uuid)
    stub.api_db.run_sync(mapped)
    cell.db.run_sync(instances.create, {"uuid": uuid, "project_id": project, "user_id": "demo-user",
                                        "vm_state": "active", "host": "compute1", "display_name": "vm",
                                        "flavor": {"vcpus": 1, "memory_mb": 512, "root_gb": 1}})


@pytest.fixture
def server(stub):
    """A server of demo-project with four actions: create (its build event ended Error with a traceback),
    stop, start and reboot (each one with a Success event), one second apart."""
    _server(stub, SERVER)
    db = stub.cells.default.db
    base = datetime(2026, 1, 1, 12, 0, 0)
    for number, name in enumerate(("create", "stop", "start", "reboot")):
        request_id = f"req-{number}"
        db.run_sync(instance_actions.start, SERVER, name, request_id, "demo-user", "demo-project")
        event = "compute__do_build_and_run_instance" if name == "create" else f"compute_{name}_instance"
        db.run_sync(instance_actions.event_start, SERVER, request_id, event, "compute1")
        if name == "create":
            db.run_sync(instance_actions.event_finish, SERVER, request_id, event, "Error",
                        details="the disk did not appear", traceback="Traceback: boom", host="compute1")
        else:
            db.run_sync(instance_actions.event_finish, SERVER, request_id, event, "Success", host="compute1")
        db.run_sync(instance_actions.finish, SERVER, name, request_id=request_id)

        def when(session, request_id=request_id, number=number):
            row = session.query(InstanceAction).filter_by(request_id=request_id).one()
            row.start_time = base + timedelta(seconds=number)
            row.updated_at = base + timedelta(seconds=number, milliseconds=500)
        db.run_sync(when)
    return SERVER


async def test_list_before_and_from_2_58(api, server):
    listed = (await api.get(f"/servers/{server}/os-instance-actions")).json()
    assert [a["action"] for a in listed["instanceActions"]] == ["reboot", "start", "stop", "create"]
    first = listed["instanceActions"][0]
    assert set(first) == {"action", "instance_uuid", "request_id", "user_id", "project_id", "start_time", "message"}
    assert first == {"action": "reboot", "instance_uuid": server, "request_id": "req-3", "user_id": "demo-user",
                     "project_id": "demo-project", "start_time": "2026-01-01T12:00:03.000000", "message": None}
    assert listed["instanceActions"][-1]["message"] == "Error"
    assert "links" not in listed
    # Before 2.58 the query is not looked at.
    assert (await api.get(f"/servers/{server}/os-instance-actions", params={"limit": "x", "foo": "1"},
                          version="2.57")).status_code == 200
    paged = (await api.get(f"/servers/{server}/os-instance-actions", version="2.58")).json()
    assert paged["instanceActions"][0]["updated_at"] == "2026-01-01T12:00:03.500000"


async def test_pages_by_limit_and_marker(api, server):
    path = f"/servers/{server}/os-instance-actions"
    page = (await api.get(path, params={"limit": "2"}, version="2.58")).json()
    assert [a["request_id"] for a in page["instanceActions"]] == ["req-3", "req-2"]
    assert page["links"][0]["rel"] == "next"
    assert page["links"][0]["href"].endswith(f"/v2.1/servers/{server}/os-instance-actions?limit=2&marker=req-2")
    page = (await api.get(path, params={"limit": "2", "marker": "req-2"}, version="2.58")).json()
    assert [a["request_id"] for a in page["instanceActions"]] == ["req-1", "req-0"]
    last = (await api.get(path, params={"marker": "req-0"}, version="2.58")).json()
    assert last == {"instanceActions": []}
    assert (await api.get(path, params={"limit": "0"}, version="2.58")).json() == {"instanceActions": []}


async def test_changes_since_and_before(api, server):
    path = f"/servers/{server}/os-instance-actions"
    since = (await api.get(path, params={"changes-since": "2026-01-01T12:00:01.6Z"}, version="2.58")).json()
    assert [a["action"] for a in since["instanceActions"]] == ["reboot", "start"]
    # changes-before is unknown to 2.58's schema, known from 2.66.
    refused = await api.get(path, params={"changes-before": "2026-01-01T12:00:02Z"}, version="2.65")
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == \
        "Additional properties are not allowed ('changes-before' was unexpected)"
    window = (await api.get(path, params={"changes-since": "2026-01-01T12:00:00.6Z",
                                          "changes-before": "2026-01-01T12:00:02.5Z"}, version="2.66")).json()
    assert [a["action"] for a in window["instanceActions"]] == ["start", "stop"]
    backwards = await api.get(path, params={"changes-since": "2026-01-02T00:00:00Z",
                                            "changes-before": "2026-01-01T00:00:00Z"}, version="2.66")
    assert backwards.status_code == 400
    assert backwards.json()["badRequest"]["message"] == \
        "The value of changes-since must be less than or equal to changes-before."


@pytest.mark.parametrize("params, message", [
    ({"limit": "-1"}, "Invalid input for query parameters limit. Value: -1. '-1' does not match '^[0-9]*$'"),
    ({"limit": "abc"}, "Invalid input for query parameters limit. Value: abc. 'abc' does not match '^[0-9]*$'"),
    ({"limit": ""}, "Invalid input for query parameters limit. Value: . '' is too short"),
    ([("limit", "1"), ("limit", "2")],
     "Invalid input for query parameters limit. Value: ['1', '2']. ['1', '2'] is too long"),
    ({"changes-since": "yesterday"},
     "Invalid input for query parameters changes-since. Value: yesterday. 'yesterday' is not a 'date-time'"),
    ({"sort_key": "action"}, "Additional properties are not allowed ('sort_key' was unexpected)"),
    ({"marker": "req-none"}, "Marker None could not be found."),
])
async def test_bad_queries_answer_upstreams_400(api, server, params, message):
    response = await api.get(f"/servers/{server}/os-instance-actions", params=params, version="2.58")
    assert response.status_code == 400
    assert response.json() == {"badRequest": {"code": 400, "message": message}}


async def test_show_events_per_microversion_and_role(api, server):
    path = f"/servers/{server}/os-instance-actions/req-0"
    admin = (await api.get(path)).json()["instanceAction"]
    assert admin["action"] == "create" and admin["message"] == "Error" and "updated_at" not in admin
    assert admin["events"] == [{"event": "compute__do_build_and_run_instance", "result": "Error",
                                "start_time": admin["events"][0]["start_time"],
                                "finish_time": admin["events"][0]["finish_time"], "traceback": "Traceback: boom"}]
    # The owner sees no events before 2.51, then events without their traceback.
    assert "events" not in (await api.get(path, token="demo-token", version="2.50")).json()["instanceAction"]
    owner = (await api.get(path, token="demo-token", version="2.51")).json()["instanceAction"]
    assert set(owner["events"][0]) == {"event", "start_time", "finish_time", "result"}
    assert "updated_at" in (await api.get(path, version="2.58")).json()["instanceAction"]
    # 2.62: hostId for everyone, host for admins.
    host_id = hashlib.sha224(b"demo-project" + b"compute1").hexdigest()
    admin = (await api.get(path, version="2.62")).json()["instanceAction"]["events"][0]
    assert admin["host"] == "compute1" and admin["hostId"] == host_id and "details" not in admin
    owner = (await api.get(path, token="demo-token", version="2.62")).json()["instanceAction"]["events"][0]
    assert "host" not in owner and owner["hostId"] == host_id
    # 2.84: details.
    owner = (await api.get(path, token="demo-token", version="2.84")).json()["instanceAction"]["events"][0]
    assert owner["details"] == "the disk did not appear" and "traceback" not in owner
    assert (await api.get(path, version="2.83")).json()["instanceAction"]["events"][0].get("details") is None


async def test_unknown_action_server_and_other_projects(api, server):
    missing = await api.get(f"/servers/{server}/os-instance-actions/req-nope")
    assert missing.status_code == 404
    assert missing.json() == {"itemNotFound": {"code": 404, "message": "Action req-nope not found"}}
    gone = await api.get(f"/servers/{OTHER}/os-instance-actions")
    assert gone.status_code == 404 and gone.json()["itemNotFound"]["message"] == f"Instance {OTHER} could not be found."


async def test_another_projects_server_is_not_found(api, stub):
    _server(stub, OTHER, project="admin-project")
    assert (await api.get(f"/servers/{OTHER}/os-instance-actions", token="demo-token")).status_code == 404
    assert (await api.get(f"/servers/{OTHER}/os-instance-actions")).status_code == 200


async def test_deleted_servers_from_2_21(api, server, stub):
    stub.cells.default.db.run_sync(instances.soft_delete, server)
    path = f"/servers/{server}/os-instance-actions"
    assert (await api.get(path, version="2.20")).status_code == 404
    assert len((await api.get(path, version="2.21")).json()["instanceActions"]) == 4
    assert (await api.get(path, token="demo-token", version="2.21")).status_code == 200
    assert (await api.get(f"{path}/req-3", version="2.20")).status_code == 404
    assert (await api.get(f"{path}/req-3", version="2.21")).json()["instanceAction"]["action"] == "reboot"


async def test_every_response_carries_both_request_id_headers(api, server):
    for response in (await api.get(f"/servers/{server}/os-instance-actions"),
                     await api.get(f"/servers/{OTHER}/os-instance-actions"), await api.get("/flavors")):
        assert response.headers["x-openstack-request-id"].startswith("req-")
        assert response.headers["x-compute-request-id"] == response.headers["x-openstack-request-id"]
