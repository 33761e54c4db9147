"""Deadlines of builds and deletes, and late or repeated build messages.

Real SQLite API and cell databases, the real Placement and network apps (in-process ASGI), the
real conductor and compute agent (fake hypervisor) over the in-process RPC transport.
"""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from kilonova.common.clients import Endpoints
from kilonova.common.db import Database, migrate
from kilonova.common.rpc import InProcessTransport
from kilonova.common.service import ServiceEnv
from kilonova.common.testing import FakeValidator
from kilonova.compute import cells as cells_mod
from kilonova.compute import versions
from kilonova.compute.agent.manager import ComputeManager
from kilonova.compute.conductor.build import _create_with_action
from kilonova.compute.conductor.manager import ConductorManager
from kilonova.compute.db import build_requests, instances, mappings, services
from kilonova.compute.db.cell_models import CellBase, InstanceFault, Service
from kilonova.compute.db.instances import UnexpectedTaskState
from kilonova.compute.virt.fake import FakeDriver
from kilonova.config import Config
from kilonova.manage import audit
from kilonova.network import bootstrap
from tests.distributed.infra import Databases
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_scheduler import FLAVOR, placement  # noqa: F401 - fixture

HOST = "host1"
LONG_AGO = (datetime.utcnow() - timedelta(hours=2)).isoformat()


@pytest.fixture
async def network(tmp_path):
    """The network service's app with its default network, as the service user sees it."""
    from kilonova.network.service import NetworkService

    svc = NetworkService(ServiceEnv(conf=Config.load(state_dir=tmp_path / "network"), endpoints=Endpoints(),
                                    transport=None),
                         validator=FakeValidator({"svc": ("nova", "service", ["admin", "member", "reader"])}))
    svc.prepare()
    await svc.ensure_default_network("service")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://network",
                                 headers={"X-Auth-Token": "svc"}) as http:
        yield http
    svc.db.close()


class Recorder:
    """compute_rpc: the casts a conductor sends to compute hosts."""

    def __init__(self):
        self.casts: list[tuple[str, str, dict]] = []

    def __call__(self, host):
        recorder = self

        class Host:
            async def cast(self, method, **kwargs):
                recorder.casts.append((host, method, kwargs))
        return Host()


@pytest.fixture
def hosts():
    return Recorder()


@pytest.fixture
async def provider(placement):  # noqa: F811
    created = await placement.http.post("/resource_providers", json={"name": HOST})
    assert created.status_code == 200, created.text
    response = await placement.http.put(f"/resource_providers/{created.json()['uuid']}/inventories", json={
        "resource_provider_generation": created.json()["generation"],
        "inventories": {"MEMORY_MB": {"total": 4096}, "VCPU": {"total": 8}, "DISK_GB": {"total": 100}}})
    assert response.status_code == 200, response.text
    return created.json()["uuid"]


def conductor(stub, placement, network, hosts) -> ConductorManager:  # noqa: F811
    stub.conf.set("DEFAULT", "instance_build_timeout", "60")
    stub.conf.set("compute", "delete_timeout", "60")
    stub.conf.set("DEFAULT", "service_down_time", "30")
    return ConductorManager(stub.conf, stub.cells, scheduler=None, compute_rpc=hosts, placement=placement.http,
                            network=network)


async def server(stub, placement, provider, *, vm_state="building", task_state=None,  # noqa: F811
                 updated_at=None, system_metadata=None) -> dict:
    """A server placed on HOST in cell1, claimed there."""
    uuid = str(uuidlib.uuid4())
    cell = stub.cells.default
    values = {"uuid": uuid, "display_name": "vm", "project_id": "demo", "user_id": "demo", "flavor": FLAVOR,
              "image_ref": "image", "vm_state": vm_state, "task_state": task_state, "power_state": 0,
              "host": HOST, "node": HOST, "created_at": LONG_AGO, "updated_at": updated_at or LONG_AGO,
              "system_metadata": system_metadata or {}}
    stub.api_db.run_sync(mappings.create_instance_mapping, uuid, "demo", "demo")
    stub.api_db.run_sync(mappings.set_instance_cell, uuid, cell.uuid)
    instance = cell.db.run_sync(_create_with_action, values, {})
    claimed = await placement.http.put(f"/allocations/{uuid}", json={
        "allocations": {provider: {"resources": audit.resources_of(FLAVOR)}}, "project_id": "demo",
        "user_id": "demo", "consumer_generation": None})
    assert claimed.status_code == 204, claimed.text
    return instance


async def claims(placement, uuid):  # noqa: F811
    return (await placement.http.get(f"/allocations/{uuid}")).json()["allocations"]


async def ports_of(network, uuid):
    return (await network.get("/v2.0/ports", params={"device_id": uuid})).json()["ports"]


def faults(stub, uuid) -> int:
    return stub.cells.default.db.run_sync(lambda s: s.scalar(
        sa.select(sa.func.count()).select_from(InstanceFault).where(InstanceFault.instance_uuid == uuid)),
        write=False)


def current(stub, uuid, read_deleted=False) -> dict:
    return stub.cells.default.db.run_sync(instances.get, uuid, read_deleted, write=False)


def heartbeat(stub, host, *, seconds_ago: float) -> None:
    def beat(session):
        services.report(session, host, "nova-compute", "compute")
        seen = datetime.utcnow() - timedelta(seconds=seconds_ago)
        session.execute(sa.update(Service).where(Service.host == host).values(last_seen_up=seen, updated_at=seen))
    stub.cells.default.db.run_sync(beat)


@pytest.fixture
async def new_agent(stub, placement, network, hosts):  # noqa: F811
    """Compute agents for HOST (one per life) whose conductor (real, in-process RPC) writes the cell database."""
    transport = InProcessTransport()
    await transport.serve("conductor", conductor(stub, placement, network, hosts), concurrency=4,
                          version=versions.CONDUCTOR.latest)

    def new() -> ComputeManager:
        return ComputeManager(HOST, FakeDriver(HOST, stub.conf), versions.conductor_client(transport, stub.conf),
                              placement.http, network, stub.conf)
    yield new
    await transport.close()


@pytest.fixture
def agent(new_agent):
    return new_agent()


SPEC = {"requested_networks": [{"network_id": bootstrap.NETWORK_ID}], "image": {"id": "image"}}


# ---------------------------------------------------------------- late and repeated build messages

async def test_a_build_message_late_after_the_build_deadline_is_dropped(stub, placement, network, provider,  # noqa: F811
                                                                        hosts, agent):
    """The compute was down past build_timeout: the conductor ended the build; the message must not revive it."""
    instance = await server(stub, placement, provider)
    assert await conductor(stub, placement, network, hosts).reconcile_stuck_builds() == 1
    assert current(stub, instance["uuid"])["vm_state"] == "error"
    assert await claims(placement, instance["uuid"]) == {}

    await agent.build_and_run_instance(instance, SPEC, alternates=[])  # the message, when the host is back
    after = current(stub, instance["uuid"])
    assert (after["vm_state"], after["task_state"]) == ("error", None)
    assert await ports_of(network, instance["uuid"]) == []
    assert agent.driver.list_instance_uuids() == []
    assert await claims(placement, instance["uuid"]) == {}
    assert faults(stub, instance["uuid"]) == 1


async def test_a_repeated_build_message_of_an_active_server_changes_nothing(stub, placement, network,  # noqa: F811
                                                                            provider, agent):
    instance = await server(stub, placement, provider)
    await agent.build_and_run_instance(instance, SPEC, alternates=[])
    built = current(stub, instance["uuid"])
    assert built["vm_state"] == "active"
    [port] = await ports_of(network, instance["uuid"])
    await agent.build_and_run_instance(instance, SPEC, alternates=[])  # redelivered after a broker restart
    assert current(stub, instance["uuid"])["vm_state"] == "active"
    assert [p["id"] for p in await ports_of(network, instance["uuid"])] == [port["id"]]
    assert list(await claims(placement, instance["uuid"])) == [provider]


async def test_a_build_message_for_another_host_is_dropped(stub, placement, network, provider, agent):  # noqa: F811
    """Rescheduled elsewhere: the first host's repeated message must not build it there too."""
    instance = await server(stub, placement, provider)
    stub.cells.default.db.run_sync(instances.update, instance["uuid"], {"host": "host2", "node": "host2"})
    await agent.build_and_run_instance(instance, SPEC, alternates=[])
    assert current(stub, instance["uuid"])["task_state"] is None
    assert await ports_of(network, instance["uuid"]) == []


async def test_a_restarted_agent_fails_the_build_it_was_running_and_frees_its_claim(stub, placement,  # noqa: F811
                                                                                    new_agent):
    stub.conf.set("DEFAULT", "transport_url", "rabbit://guest:guest@127.0.0.1:5672/")  # queues outlive the agent
    first_life = new_agent()
    await first_life.init_host()  # registers the host and its resource provider
    await first_life.stop()
    spawning = await server(stub, placement, first_life.node_uuid, task_state="spawning")
    waiting = await server(stub, placement, first_life.node_uuid)  # its message is still queued: left to it
    agent = new_agent()
    await agent.init_host()
    try:
        failed = current(stub, spawning["uuid"])
        assert (failed["vm_state"], failed["task_state"]) == ("error", None)
        assert await claims(placement, spawning["uuid"]) == {}
        assert faults(stub, spawning["uuid"]) == 1
        assert current(stub, waiting["uuid"])["vm_state"] == "building"
        await agent.build_and_run_instance(spawning, SPEC, alternates=[])  # its unacknowledged message
        await agent.build_and_run_instance(waiting, SPEC, alternates=[])
        assert current(stub, spawning["uuid"])["vm_state"] == "error"
        assert current(stub, waiting["uuid"])["vm_state"] == "active"
    finally:
        await agent.stop()


async def test_a_restarted_agent_does_not_wait_for_the_spawn_of_a_build_its_new_life_took(stub, placement,  # noqa: F811
                                                                                         new_agent):
    """A build message delivered to the dead agent but not yet started comes back to the new life, which serves
    RPC before its start-up looks for interrupted builds: it sets the server spawning and holds its lock for the
    whole spawn. Start-up must go on (heartbeats, periodic tasks) and leave that build alone, not wait for it."""
    stub.conf.set("DEFAULT", "transport_url", "rabbit://guest:guest@127.0.0.1:5672/")  # queues outlive the agent
    first_life = new_agent()
    await first_life.init_host()
    await first_life.stop()
    waiting = await server(stub, placement, first_life.node_uuid)  # its message is still queued
    stub.conf.set("fake_driver", "spawn_delay", "20")
    agent = new_agent()
    build = asyncio.create_task(agent.build_and_run_instance(waiting, SPEC, alternates=[]))
    while current(stub, waiting["uuid"])["task_state"] != "spawning":
        await asyncio.sleep(0.01)
    start_up = asyncio.create_task(agent.init_host())
    try:
        done, _ = await asyncio.wait({build, start_up}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {start_up}, "start-up waited for the spawn of the build this life took"
        start_up.result()
        assert (current(stub, waiting["uuid"])["vm_state"], current(stub, waiting["uuid"])["task_state"]) == \
            ("building", "spawning")
        build.cancel()
    finally:
        await asyncio.gather(build, start_up, return_exceptions=True)
        await agent.stop()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_compare_and_set_loses_to_a_change_committed_after_its_read(kind):
    """The agent reads the server building, the conductor times it out before the agent's UPDATE runs:
    the UPDATE itself must see that and refuse (an agent would otherwise spawn an ERROR server)."""
    databases = Databases(kind)
    url = databases.url("cas")
    agent_side, conductor_side = Database(url, name="agent-side"), Database(url, name="conductor-side")
    try:
        migrate(agent_side, cells_mod.CELL_MIGRATIONS, CellBase.metadata)
        uuid = str(uuidlib.uuid4())
        agent_side.run_sync(instances.create, {"uuid": uuid, "project_id": "p", "user_id": "u", "flavor": FLAVOR,
                                               "vm_state": "building", "task_state": None, "host": HOST})

        raced = []

        @sa.event.listens_for(agent_side.engine, "before_cursor_execute")
        def time_out_first(conn, cursor, statement, *args):
            if statement.startswith("UPDATE instances") and not raced:
                raced.append(statement)
                conductor_side.run_sync(instances.update, uuid, {"vm_state": "error"}, expected_vm_state=["building"])

        with pytest.raises(UnexpectedTaskState):
            agent_side.run_sync(instances.update, uuid, {"task_state": "spawning"}, expected_task_state=[None],
                                expected_vm_state=["building"], expected_host=HOST)
        assert raced  # the conductor's change really came between the agent's read and its UPDATE
        row = conductor_side.run_sync(instances.get, uuid, write=False)
        assert (row["vm_state"], row["task_state"]) == ("error", None)
    finally:
        agent_side.close()
        conductor_side.close()
        databases.drop_all()


# ---------------------------------------------------------------- sweeps, two conductors at once

async def test_two_conductors_time_out_a_stuck_build_once(stub, placement, network, provider, hosts):  # noqa: F811
    instance = await server(stub, placement, provider, task_state="spawning")
    pending = {"uuid": str(uuidlib.uuid4()), "display_name": "never-scheduled", "project_id": "demo",
               "user_id": "demo", "flavor": FLAVOR, "image_ref": "image", "vm_state": "building",
               "task_state": "scheduling", "power_state": 0, "created_at": LONG_AGO}
    stub.api_db.run_sync(build_requests.create, pending, {"project_id": "demo"})
    first, second = (conductor(stub, placement, network, hosts) for _ in range(2))
    healed = await asyncio.gather(first.reconcile_stuck_builds(), second.reconcile_stuck_builds())
    assert sum(healed) == 2  # one server each, whoever got it
    assert faults(stub, instance["uuid"]) == 1
    assert current(stub, instance["uuid"])["vm_state"] == "error"
    mapping = stub.api_db.run_sync(mappings.get_instance_mapping, pending["uuid"], write=False)
    assert stub.cells.by_id(mapping.cell_id) is stub.cells.cell0
    buried = stub.cells.cell0.db.run_sync(instances.get, pending["uuid"], write=False)
    assert buried["vm_state"] == "error"
    assert await first.reconcile_stuck_builds() == 0


async def test_a_delete_whose_host_is_down_is_finished_by_the_conductor(stub, placement, network, provider,  # noqa: F811
                                                                        hosts):
    instance = await server(stub, placement, provider, vm_state="active", task_state="deleting")
    created = await network.post("/v2.0/ports", json={"port": {
        "network_id": bootstrap.NETWORK_ID, "project_id": "demo", "device_id": instance["uuid"]}})
    assert created.status_code == 201, created.text
    heartbeat(stub, HOST, seconds_ago=120)  # down: service_down_time is 30
    first, second = (conductor(stub, placement, network, hosts) for _ in range(2))
    finished = await asyncio.gather(first.reconcile_stuck_deletes(), second.reconcile_stuck_deletes())
    assert sum(finished) == 1
    assert current(stub, instance["uuid"], read_deleted=True)["vm_state"] == "deleted"
    assert await ports_of(network, instance["uuid"]) == []
    assert await claims(placement, instance["uuid"]) == {}
    assert hosts.casts == []  # nobody to tell: the host's start-up clean-up removes the guest


async def test_a_delete_on_a_live_host_gets_until_its_deadline(stub, placement, network, provider,  # noqa: F811
                                                               hosts):
    recent = (datetime.utcnow() - timedelta(seconds=40)).isoformat()
    in_time = await server(stub, placement, provider, vm_state="active", task_state="deleting", updated_at=recent)
    overdue = await server(stub, placement, provider, vm_state="active", task_state="deleting")
    heartbeat(stub, HOST, seconds_ago=0)
    assert await conductor(stub, placement, network, hosts).reconcile_stuck_deletes() == 1
    assert current(stub, in_time["uuid"])["task_state"] == "deleting"
    assert list(await claims(placement, in_time["uuid"])) == [provider]
    assert current(stub, overdue["uuid"], read_deleted=True)["vm_state"] == "deleted"
    assert await claims(placement, overdue["uuid"]) == {}
    assert [(host, method) for host, method, _ in hosts.casts] == [(HOST, "terminate_instance")]
