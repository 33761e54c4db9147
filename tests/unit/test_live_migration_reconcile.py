"""The live-migration reconcile pass (kilonova/compute/conductor/tasks/live_migrate.py) on a migration whose server
was deleted without its source (the source's host was down): the record ends error, the migration's claim goes, and
the destination is told to undo what it prepared or got. Real SQLite cell database and Placement app, the real
conductor; compute hosts recorded, not run."""
from __future__ import annotations

from datetime import datetime

import pytest

from kilonova.compute.conductor.tasks import live_migrate
from kilonova.compute.db import instances, migrations
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_recovery import (HOST, LONG_AGO, Recorder, claims, conductor, network,  # noqa: F401
                                      provider, server)
from tests.unit.test_scheduler import placement  # noqa: F401 - fixture


@pytest.fixture
def hosts():
    return Recorder()


async def test_a_stalled_migration_of_a_deleted_server_is_undone_on_its_destination(  # noqa: F811
        stub, placement, provider, network, hosts):
    stub.conf.set("conductor", "live_migration_stall_timeout", "5")
    manager = conductor(stub, placement, network, hosts)
    instance = await server(stub, placement, provider, vm_state="active", task_state="migrating")
    cell = stub.cells.default
    migration = cell.db.run_sync(migrations.create, {
        "instance_uuid": instance["uuid"], "migration_type": "live-migration", "status": "running",
        "source_compute": HOST, "dest_compute": "host2", "created_at": datetime.fromisoformat(LONG_AGO),
        "updated_at": datetime.fromisoformat(LONG_AGO)})
    # The source's claim was the migration's; the API's local delete released the instance's.
    held = await placement.http.get(f"/allocations/{instance['uuid']}")
    moved = await placement.http.put(f"/allocations/{migration['uuid']}", json={
        "allocations": held.json()["allocations"], "project_id": "demo", "user_id": "demo",
        "consumer_generation": None})
    assert moved.status_code == 204, moved.text
    await placement.http.delete(f"/allocations/{instance['uuid']}")
    cell.db.run_sync(instances.soft_delete, instance["uuid"])

    assert await live_migrate.reconcile_live_migrations(manager) == 1
    assert cell.db.run_sync(migrations.get, migration["uuid"], write=False)["status"] == "error"
    assert await claims(placement, migration["uuid"]) == {}
    assert [(host, method, kwargs["instance"]["uuid"]) for host, method, kwargs in hosts.casts] == [
        ("host2", "rollback_live_migration_at_destination", instance["uuid"])]
