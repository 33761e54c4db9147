"""The resize / cold migration reconcile passes (kilonova/compute/conductor/tasks/migrate_server.py) on states a
crash leaves behind: a move cut short before its guest left (the conductor died after handing the source claim
to the migration), a move nobody finished confirming, a request whose message was lost, and a server left in
resize_finish behind a finished record. Real SQLite cell database and Placement app, the real conductor."""
from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from kilonova.compute import move_claims
from kilonova.compute.conductor.tasks import migrate_server
from kilonova.compute.db import instances, migrations
from kilonova.compute.db.cell_models import Migration
from kilonova.manage import audit
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_recovery import (HOST, LONG_AGO, Recorder, claims, conductor, faults, network,  # noqa: F401
                                      provider, server)
from tests.unit.test_scheduler import placement  # noqa: F401 - fixture


@pytest.fixture
def sweeper(stub, placement, network):  # noqa: F811
    stub.conf.set("compute", "move_timeout", "60")
    return conductor(stub, placement, network, Recorder())


def _move(stub, instance: dict, status: str, step: str, **values) -> dict:
    cell = stub.cells.default
    move = cell.db.run_sync(migrations.create, {
        "instance_uuid": instance["uuid"], "migration_type": "resize", "status": status, "step": step,
        "source_compute": HOST, "source_node": HOST, "dest_compute": HOST, "dest_node": HOST,
        "project_id": "demo", "user_id": "demo", **values})
    long_ago = datetime.fromisoformat(LONG_AGO)  # untouched since: stuck
    cell.db.run_sync(lambda s: s.execute(sa.update(Migration).where(Migration.uuid == move["uuid"])
                                         .values(updated_at=long_ago, created_at=long_ago)))
    return move


async def test_a_move_cut_short_before_its_guest_left_is_rolled_back(stub, placement, provider, sweeper):  # noqa: F811
    instance = await server(stub, placement, provider, vm_state="active", task_state="resize_prep")
    move = _move(stub, instance, "pre-migrating", "schedule")
    await move_claims.hand_to_migration(placement.http, instance["uuid"], move["uuid"], "demo", "demo")

    assert await migrate_server.reconcile_stuck_moves(sweeper) == 1
    current = stub.cells.default.db.run_sync(instances.get, instance["uuid"], write=False)
    assert (current["vm_state"], current["task_state"], current["host"]) == ("active", None, HOST)
    assert list(await claims(placement, instance["uuid"])) == [provider]
    assert await claims(placement, move["uuid"]) == {}
    assert stub.cells.default.db.run_sync(migrations.get, move["uuid"], write=False)["status"] == "error"
    assert faults(stub, instance["uuid"]) == 1
    assert await migrate_server.reconcile_stuck_moves(sweeper) == 0  # ended: nothing left to do


async def test_a_confirm_nobody_finished_is_finished(stub, placement, provider, sweeper):  # noqa: F811
    instance = await server(stub, placement, provider, vm_state="resized", task_state=None)
    move = _move(stub, instance, "confirming", "verify")
    claimed = await placement.http.put(f"/allocations/{move['uuid']}", json={
        "allocations": {provider: {"resources": audit.resources_of({"vcpus": 1, "memory_mb": 64})}},
        "project_id": "demo", "user_id": "demo", "consumer_generation": None})
    assert claimed.status_code == 204, claimed.text

    assert await migrate_server.reconcile_stuck_moves(sweeper) == 1
    current = stub.cells.default.db.run_sync(instances.get, instance["uuid"], write=False)
    assert current["vm_state"] in ("active", "stopped") and current["old_flavor"] is None
    assert await claims(placement, move["uuid"]) == {}
    assert stub.cells.default.db.run_sync(migrations.get, move["uuid"], write=False)["status"] == "confirmed"


async def test_a_lost_request_gives_the_server_back(stub, placement, provider, sweeper):  # noqa: F811
    instance = await server(stub, placement, provider, vm_state="active", task_state="resize_prep")
    assert await migrate_server.reconcile_stuck_moves(sweeper) == 1
    current = stub.cells.default.db.run_sync(instances.get, instance["uuid"], write=False)
    assert (current["vm_state"], current["task_state"]) == ("active", None)
    assert faults(stub, instance["uuid"]) == 1
    assert list(await claims(placement, instance["uuid"])) == [provider]


async def test_a_finished_move_the_server_was_not_told_of_is_completed(stub, placement, provider,  # noqa: F811
                                                                       sweeper):
    instance = await server(stub, placement, provider, vm_state="active", task_state="resize_finish")
    _move(stub, instance, "finished", "verify")
    assert await migrate_server.reconcile_stuck_moves(sweeper) == 1
    current = stub.cells.default.db.run_sync(instances.get, instance["uuid"], write=False)
    assert (current["vm_state"], current["task_state"]) == ("resized", None)


class OneHostScheduler:
    """select_destinations claiming the one provider for the instance, as the real scheduler would."""

    def __init__(self, placement, provider):
        self.placement, self.provider, self.calls = placement, provider, 0

    async def call(self, method, request_spec, instance_uuids, ignore_hosts=None):
        self.calls += 1
        body = {"allocations": {self.provider: {"resources": audit.resources_of(request_spec["flavor"])}},
                "project_id": "demo", "user_id": "demo", "consumer_generation": None}
        response = await self.placement.http.put(f"/allocations/{instance_uuids[0]}", json=body)
        assert response.status_code == 204, response.text
        return [[{"host": "host2", "nodename": "host2"}]]


async def test_a_redelivered_request_takes_over_a_move_its_dead_conductor_was_scheduling(  # noqa: F811
        stub, placement, provider, sweeper):
    from kilonova.common.rpc import _redelivered

    instance = await server(stub, placement, provider, vm_state="active", task_state="resize_prep")
    move = _move(stub, instance, "pre-migrating", "schedule", dest_compute=None, dest_node=None)
    await move_claims.hand_to_migration(placement.http, instance["uuid"], move["uuid"], "demo", "demo")
    sweeper.scheduler = OneHostScheduler(placement, provider)
    hosts = sweeper.compute_rpc = Recorder()
    token = _redelivered.set(True)
    try:
        await migrate_server.migrate_server(sweeper, instance_uuid=instance["uuid"], flavor=None)
    finally:
        _redelivered.reset(token)
    assert sweeper.scheduler.calls == 1
    assert [(host, method) for host, method, _kw in hosts.casts] == [("host2", "prep_resize")]
    record = stub.cells.default.db.run_sync(migrations.get, move["uuid"], write=False)
    assert (record["status"], record["step"], record["dest_compute"]) == ("pre-migrating", "prep_resize", "host2")
    assert list(await claims(placement, move["uuid"])) == [provider]  # the source claim stayed the migration's
    assert list(await claims(placement, instance["uuid"])) == [provider]
