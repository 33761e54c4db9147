"""os-migrations and GET /servers/{id}/migrations on a compute API app over real SQLite cell databases:
migration records written through the data layer (kilonova/compute/db/migrations.py), read through the API
at every microversion boundary, with upstream's filters, paging and errors."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from kilonova.compute.db import instances, mappings, migrations
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures

SERVER = "7d4e7c50-6b20-4c79-9f8b-2c3d4e5f6071"
BASE = datetime(2026, 2, 1, 8, 0, 0)


def _record(db, number: int, **values) -> dict:
    values = {"instance_uuid": SERVER, "migration_type": "resize", "status": "confirmed",
              "source_compute": "compute1", "source_node": "compute1", "dest_compute": "compute2",
              "dest_node": "compute2", "old_instance_type_id": 1, "new_instance_type_id": 2,
              "user_id": "demo-user", "project_id": "demo-project",
              "created_at": BASE + timedelta(minutes=number), "updated_at": BASE + timedelta(minutes=number, seconds=30),
              **values}
    return db.run_sync(migrations.create, values)


@pytest.fixture
def records(stub):
    """Five records of one server of demo-project, a minute apart (oldest first): a confirmed resize, a
    failed cold migration, a completed live migration, a running live migration with progress, and an
    evacuation from compute3 by another user."""
    cell = stub.cells.default

    def mapped(session):
        mappings.create_instance_mapping(session, SERVER, "demo-project", "demo-user")
        mappings.set_instance_cell(session, SERVER, cell.uuid)
    stub.api_db.run_sync(mapped)
    cell.db.run_sync(instances.create, {"uuid": SERVER, "project_id": "demo-project", "user_id": "demo-user",
                                        "vm_state": "active", "host": "compute2", "display_name": "vm",
                                        "flavor": {"vcpus": 1, "memory_mb": 512, "root_gb": 1}})
    return [
        _record(cell.db, 0),
        _record(cell.db, 1, migration_type="migration", status="error", old_instance_type_id=2),
        _record(cell.db, 2, migration_type="live-migration", status="completed", source_compute="compute2",
                dest_compute="compute1"),
        _record(cell.db, 3, migration_type="live-migration", status="running", dest_host="10.0.0.2",
                memory_total=1024, memory_processed=512, memory_remaining=512, disk_total=0, disk_processed=0,
                disk_remaining=0),
        _record(cell.db, 4, migration_type="evacuation", status="done", source_compute="compute3",
                user_id="admin-user", project_id="admin-project"),
    ]


async def test_fields_by_microversion(api, records):
    old = (await api.get("/os-migrations")).json()["migrations"]
    assert [m["id"] for m in old] == [r["id"] for r in records]  # the table's order before 2.59
    assert set(old[0]) == {"created_at", "updated_at", "id", "source_compute", "dest_compute", "source_node",
                           "dest_node", "dest_host", "old_instance_type_id", "new_instance_type_id",
                           "instance_uuid", "status"}
    assert old[0]["created_at"] == "2026-02-01T08:00:00.000000"
    typed = (await api.get("/os-migrations", version="2.23")).json()["migrations"]
    assert [m["migration_type"] for m in typed] == ["resize", "migration", "live-migration", "live-migration",
                                                    "evacuation"]
    # Links only for the live migration under way.
    assert [("links" in m) for m in typed] == [False, False, False, True, False]
    running = typed[3]
    assert running["links"][0]["href"].endswith(f"/v2.1/servers/{SERVER}/migrations/{records[3]['id']}")
    assert running["links"][1]["rel"] == "bookmark"
    newest_first = (await api.get("/os-migrations", version="2.59")).json()
    assert [m["uuid"] for m in newest_first["migrations"]] == [r["uuid"] for r in reversed(records)]
    assert "migrations_links" not in newest_first and "user_id" not in newest_first["migrations"][0]
    latest = (await api.get("/os-migrations", version="2.80")).json()["migrations"]
    assert (latest[0]["user_id"], latest[0]["project_id"]) == ("admin-user", "admin-project")


async def test_filters(api, records):
    async def ids(version, **params):
        response = await api.get("/os-migrations", params=params, version=version)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()["migrations"]]
    r = [rec["id"] for rec in records]
    assert await ids("2.1", status="error") == [r[1]]
    assert await ids("2.1", host="compute3") == [r[4]]
    assert await ids("2.1", host="compute1") == r[:4]
    assert await ids("2.1", source_compute="compute2") == [r[2]]
    assert await ids("2.23", migration_type="live-migration") == [r[2], r[3]]
    assert await ids("2.1", instance_uuid=SERVER) == r
    assert await ids("2.1", hidden="0") == r and await ids("2.1", hidden="1") == []
    # Before 2.59 any name is taken (and the ones upstream's database layer knows are applied).
    assert await ids("2.1", user_id="admin-user", whatever="x") == [r[4]]
    assert await ids("2.80", user_id="demo-user", project_id="demo-project") == r[3::-1]
    assert await ids("2.59", **{"changes-since": "2026-02-01T08:03:00Z"}) == [r[4], r[3]]
    assert await ids("2.58", **{"changes-since": "2026-02-01T08:03:00Z"}) == r  # ignored before 2.59
    assert await ids("2.66", **{"changes-since": "2026-02-01T08:01:00Z",
                                "changes-before": "2026-02-01T08:02:40Z"}) == [r[2], r[1]]


async def test_paging_by_uuid(api, records):
    first = (await api.get("/os-migrations", params={"limit": "2"}, version="2.59")).json()
    assert [m["uuid"] for m in first["migrations"]] == [records[4]["uuid"], records[3]["uuid"]]
    link = first["migrations_links"][0]
    assert link["rel"] == "next" and link["href"].endswith(f"/v2.1/os-migrations?limit=2&marker={records[3]['uuid']}")
    second = (await api.get("/os-migrations", params={"limit": "2", "marker": records[3]["uuid"]},
                            version="2.59")).json()
    assert [m["uuid"] for m in second["migrations"]] == [records[2]["uuid"], records[1]["uuid"]]
    rest = (await api.get("/os-migrations", params={"marker": records[1]["uuid"]}, version="2.59")).json()
    assert [m["uuid"] for m in rest["migrations"]] == [records[0]["uuid"]] and "migrations_links" not in rest
    assert (await api.get("/os-migrations", params={"limit": "0"}, version="2.59")).json() == {"migrations": []}


@pytest.mark.parametrize("version, params, message", [
    ("2.59", {"marker": "a3f1c9a4-0000-4000-8000-000000000000"},
     "Marker a3f1c9a4-0000-4000-8000-000000000000 could not be found."),
    ("2.59", {"limit": "-2"}, "Invalid input for query parameters limit. Value: -2. '-2' does not match '^[0-9]*$'"),
    ("2.59", {"changes-since": "2026-13-45"},
     "Invalid input for query parameters changes-since. Value: 2026-13-45. '2026-13-45' is not a 'date-time'"),
    ("2.59", {"changes-before": "2026-01-01T00:00:00Z"},
     "Additional properties are not allowed ('changes-before' was unexpected)"),
    ("2.79", {"user_id": "demo-user"}, "Additional properties are not allowed ('user_id' was unexpected)"),
    ("2.66", {"changes-since": "2026-02-02T00:00:00Z", "changes-before": "2026-02-01T00:00:00Z"},
     "The value of changes-since must be less than or equal to changes-before."),
    ("2.80", {"foo": "1", "bar": "2"}, "Additional properties are not allowed ('foo', 'bar' were unexpected)"),
])
async def test_bad_queries_answer_upstreams_400(api, records, version, params, message):
    response = await api.get("/os-migrations", params=params, version=version)
    assert response.status_code == 400
    assert response.json() == {"badRequest": {"code": 400, "message": message}}


async def test_admin_only(api, records):
    refused = await api.get("/os-migrations", token="demo-token")
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"] == \
        "Policy doesn't allow os_compute_api:os-migrations:index to be performed."
    refused = await api.get(f"/servers/{SERVER}/migrations", token="demo-token", version="2.23")
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"] == \
        "Policy doesn't allow os_compute_api:servers:migrations:index to be performed."


async def test_server_migrations(api, records):
    running = records[3]
    assert (await api.get(f"/servers/{SERVER}/migrations", version="2.22")).status_code == 404
    listed = (await api.get(f"/servers/{SERVER}/migrations", version="2.23")).json()["migrations"]
    assert listed == [{
        "created_at": "2026-02-01T08:03:00.000000", "dest_compute": "compute2", "dest_host": "10.0.0.2",
        "dest_node": "compute2", "disk_processed_bytes": 0, "disk_remaining_bytes": 0, "disk_total_bytes": 0,
        "id": running["id"], "memory_processed_bytes": 512, "memory_remaining_bytes": 512,
        "memory_total_bytes": 1024, "server_uuid": SERVER, "source_compute": "compute1", "source_node": "compute1",
        "status": "running", "updated_at": "2026-02-01T08:03:30.000000"}]
    shown = (await api.get(f"/servers/{SERVER}/migrations/{running['id']}", version="2.80")).json()["migration"]
    assert shown["uuid"] == running["uuid"] and shown["user_id"] == "demo-user"
    assert shown["project_id"] == "demo-project"
    assert "uuid" not in (await api.get(f"/servers/{SERVER}/migrations/{running['id']}",
                                        version="2.58")).json()["migration"]

    async def missing(migration_id):
        response = await api.get(f"/servers/{SERVER}/migrations/{migration_id}", version="2.23")
        assert response.status_code == 404
        return response.json()["itemNotFound"]["message"]
    assert await missing(9999) == f"In-progress live migration 9999 is not found for server {SERVER}."
    assert await missing("abc") == f"In-progress live migration abc is not found for server {SERVER}."
    assert await missing(records[0]["id"]) == f"Migration {records[0]['id']} for server {SERVER} is not live-migration."
    assert await missing(records[2]["id"]) == f"Live migration {records[2]['id']} for server {SERVER} is not in progress."
    gone = await api.get("/servers/8e5f8d61-7c31-4d8a-8a9c-3d4e5f607182/migrations", version="2.23")
    assert gone.status_code == 404
