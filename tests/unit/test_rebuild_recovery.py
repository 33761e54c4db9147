"""Rebuilds and evacuations that never finish, and the failed host that comes back after an evacuation.

Real SQLite API and cell databases, the real Placement and network apps (in-process ASGI), the real
conductor and compute agent (fake hypervisor) over the in-process RPC transport (see test_recovery).
"""
from __future__ import annotations

import pytest

from datetime import datetime

import sqlalchemy as sa

from kilonova.compute import evacuation_claims, move_claims
from kilonova.compute.db import instance_actions, instances, migrations
from kilonova.compute.conductor.tasks.rebuild import reconcile_stuck_rebuilds
from kilonova.compute.db.cell_models import Instance
from tests.unit.test_recovery import (HOST, LONG_AGO, claims, conductor, current, faults, hosts, network, new_agent,  # noqa: F401
                                      placement, provider, server, stub)

OTHER = "host2"


@pytest.fixture
async def other_provider(placement):  # noqa: F811
    created = await placement.http.post("/resource_providers", json={"name": OTHER})
    uuid = created.json()["uuid"]
    response = await placement.http.put(f"/resource_providers/{uuid}/inventories", json={
        "resource_provider_generation": created.json()["generation"],
        "inventories": {"MEMORY_MB": {"total": 4096}, "VCPU": {"total": 8}, "DISK_GB": {"total": 100}}})
    assert response.status_code == 200, response.text
    return uuid


def evacuation(stub, uuid: str, status: str = "accepted", dest: str | None = OTHER) -> dict:  # noqa: F811
    return stub.cells.default.db.run_sync(migrations.create, {
        "instance_uuid": uuid, "migration_type": "evacuation", "status": status, "source_compute": HOST,
        "source_node": HOST, "dest_compute": dest, "dest_node": dest})


def migration(stub, uuid: str) -> dict:  # noqa: F811
    return stub.cells.default.db.run_sync(migrations.get, uuid, write=False)


def actions(stub, uuid: str) -> list[dict]:  # noqa: F811
    return stub.cells.default.db.run_sync(instance_actions.list_for, uuid, write=False)


async def test_a_rebuild_past_its_deadline_ends_in_error_with_a_fault(stub, placement, network, provider,  # noqa: F811
                                                                      hosts):
    instance = await server(stub, placement, provider, vm_state="active", task_state="rebuild_spawning")
    assert await reconcile_stuck_rebuilds(conductor(stub, placement, network, hosts)) == 1
    after = current(stub, instance["uuid"])
    assert (after["vm_state"], after["task_state"], after["host"]) == ("error", None, HOST)
    assert faults(stub, instance["uuid"]) == 1
    assert list(await claims(placement, instance["uuid"])) == [provider], "its own claim stays"
    # A second pass (or another conductor) finds nothing more to do.
    assert await reconcile_stuck_rebuilds(conductor(stub, placement, network, hosts)) == 0


async def test_an_evacuation_cut_short_while_scheduling_gives_the_source_claim_back(  # noqa: F811
        stub, placement, network, provider, other_provider, hosts):
    """The conductor died after handing the source's claim to the migration and the destination's to the
    instance (the scheduler's claim): the instance ends holding the source's claim alone."""
    instance = await server(stub, placement, provider, vm_state="active", task_state="rebuilding")
    record = evacuation(stub, instance["uuid"])
    await move_claims.hand_to_migration(placement.http, instance["uuid"], record["uuid"], "demo", "demo")
    held, generation, _p, _u = await move_claims.held(placement.http, instance["uuid"])
    dest = await placement.http.put(f"/allocations/{instance['uuid']}", json={
        "allocations": {other_provider: {"resources": {"MEMORY_MB": 512, "VCPU": 1, "DISK_GB": 1}}},
        "project_id": "demo", "user_id": "demo", "consumer_generation": generation})
    assert dest.status_code == 204, dest.text

    assert await reconcile_stuck_rebuilds(conductor(stub, placement, network, hosts)) == 1
    after = current(stub, instance["uuid"])
    assert (after["vm_state"], after["task_state"], after["host"]) == ("error", None, HOST)
    assert list(await claims(placement, instance["uuid"])) == [provider]
    assert await claims(placement, record["uuid"]) == {}
    assert migration(stub, record["uuid"])["status"] == "error"
    assert faults(stub, instance["uuid"]) == 1


async def test_an_evacuation_stuck_on_its_destination_goes_back_to_the_source_without_the_destination_claim(
        stub, placement, network, provider, other_provider, hosts, new_agent):  # noqa: F811
    instance = await server(stub, placement, provider, vm_state="active", task_state="rebuild_spawning")
    record = evacuation(stub, instance["uuid"], status="pre-migrating")
    stub.cells.default.db.run_sync(instances.update, instance["uuid"], {"host": OTHER, "node": OTHER})
    await evacuation_claims.add_provider(placement.http, instance["uuid"], other_provider, None, "demo", "demo")
    stub.cells.default.db.run_sync(_age, instance["uuid"])

    assert await reconcile_stuck_rebuilds(conductor(stub, placement, network, hosts)) == 1
    after = current(stub, instance["uuid"])
    assert (after["vm_state"], after["task_state"], after["host"]) == ("error", None, HOST)
    assert list(await claims(placement, instance["uuid"])) == [provider]
    assert migration(stub, record["uuid"])["status"] == "error"


def _age(session, uuid: str) -> None:
    """As if nothing had touched the server for long."""
    session.execute(sa.update(Instance).where(Instance.uuid == uuid).values(updated_at=datetime.fromisoformat(LONG_AGO)))


async def test_the_failed_host_coming_back_destroys_its_stale_guest_and_releases_its_claim(  # noqa: F811
        stub, placement, network, other_provider, new_agent):
    """The server was evacuated to host2 while HOST was down; HOST's agent starts again with the old guest."""
    first_life = new_agent()
    await first_life.init_host()  # registers the host and its resource provider
    provider = first_life.node_uuid
    instance = await server(stub, placement, provider, vm_state="active")
    await first_life.driver.spawn(instance, {"id": "image"}, [])  # the guest HOST ran before it failed
    assert instance["uuid"] in first_life.driver.list_instance_uuids()
    await evacuation_claims.add_provider(placement.http, instance["uuid"], other_provider, None, "demo", "demo")
    stub.cells.default.db.run_sync(instances.update, instance["uuid"], {"host": OTHER, "node": OTHER})
    record = evacuation(stub, instance["uuid"], status="done")

    # Same driver (the hypervisor kept the guest), a new agent life.
    second_life = new_agent()
    second_life.driver = first_life.driver
    await second_life.init_host()
    assert instance["uuid"] not in second_life.driver.list_instance_uuids()
    assert list(await claims(placement, instance["uuid"])) == [other_provider]
    assert migration(stub, record["uuid"])["status"] == "completed"
    after = current(stub, instance["uuid"])
    assert (after["vm_state"], after["host"]) == ("active", OTHER)
    await second_life.stop()
    await first_life.stop()


class KeepingScheduler:
    """The scheduler's answer when the instance already holds a claim on a host that fits: that host (its
    claim kept, as SchedulerManager._claim_first does)."""

    def __init__(self, placement, provider: str):
        self.placement, self.provider, self.asked = placement, provider, []

    async def call(self, method: str, **kwargs):
        self.asked.append((method, kwargs))
        return [[{"host": OTHER, "nodename": OTHER, "compute_node_uuid": self.provider}]]


async def test_a_redelivered_evacuation_leaves_the_source_claim_with_the_migration(  # noqa: F811
        stub, placement, network, provider, other_provider, hosts):
    """The first conductor died after the scheduler claimed the destination: the redelivered request must not
    hand the destination's claim to the migration (losing the source's)."""
    instance = await server(stub, placement, provider, vm_state="active", task_state="rebuilding")
    record = evacuation(stub, instance["uuid"], dest=None)
    await move_claims.hand_to_migration(placement.http, instance["uuid"], record["uuid"], "demo", "demo")
    _held, generation, _p, _u = await move_claims.held(placement.http, instance["uuid"])
    first = await placement.http.put(f"/allocations/{instance['uuid']}", json={
        "allocations": {other_provider: {"resources": {"MEMORY_MB": 512, "VCPU": 1, "DISK_GB": 1}}},
        "project_id": "demo", "user_id": "demo", "consumer_generation": generation})
    assert first.status_code == 204, first.text

    manager = conductor(stub, placement, network, hosts)
    manager.scheduler = KeepingScheduler(placement.http, other_provider)
    await manager.rebuild_instance(instance_uuid=instance["uuid"], evacuate=True, migration_uuid=record["uuid"])
    assert sorted(await claims(placement, instance["uuid"])) == sorted([provider, other_provider])
    assert await claims(placement, record["uuid"]) == {}
    assert [(host, method) for host, method, _kw in hosts.casts] == [(OTHER, "rebuild_instance")]
    assert manager.scheduler.asked[0][1]["ignore_hosts"] == [HOST]
    assert migration(stub, record["uuid"])["dest_compute"] == OTHER
