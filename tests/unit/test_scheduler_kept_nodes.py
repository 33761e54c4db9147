"""The scheduler keeps a cell's compute nodes between decisions and reads again only what changed: every change a
host reports, its service's state, a new host and a removed one are seen by the next decision all the same."""
import uuid

import pytest

from kilonova.compute.db import compute_nodes, services
from kilonova.compute.scheduler.manager import SchedulerManager
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_compute_aggregates import RESOURCES, hosts  # noqa: F401 - fixtures
from tests.unit.test_scheduler import conf, placement  # noqa: F401 - fixtures
from tests.unit.test_scheduler_explanations import SPEC, cloud  # noqa: F401 - fixtures


def kept(scheduler, stub):
    return scheduler.host_cache._kept(stub.cells.default)


async def weighed(scheduler):
    return [entry["host"] for entry in (await scheduler.explain(SPEC))["weighed"]]


async def chosen(scheduler):
    [selection] = await scheduler.select_destinations(SPEC, [str(uuid.uuid4())])
    return selection[0]["host"]


def report(stub, host, **values):
    """What an agent's resource report writes (through the conductor)."""
    db = stub.cells.default.db
    service = db.run_sync(services.find, host, "nova-compute")
    db.run_sync(compute_nodes.upsert, host, host, dict(RESOURCES, hypervisor_hostname=host, **values), service.id)


@pytest.fixture
def by_version(cloud, stub):
    """The scheduler with the hypervisor version weigher above every other: the newest hypervisor wins."""
    stub.conf.set("filter_scheduler", "hypervisor_version_weight_multiplier", "1000")
    _, scheduler = cloud
    return SchedulerManager(stub.conf, scheduler.placement, stub.cells)


async def test_a_host_s_new_report_is_seen_by_the_next_decision_and_only_it_is_read_again(by_version, stub):
    report(stub, "compute2", hypervisor_version=2000)
    assert await chosen(by_version) == "compute2"
    nodes = kept(by_version, stub)
    assert nodes.reread == 3
    assert await chosen(by_version) == "compute2" and nodes.reread == 3  # nothing changed: nothing read again
    report(stub, "compute3", hypervisor_version=3000)
    assert await chosen(by_version) == "compute3"
    assert nodes.reread == 4


async def test_reported_build_failures_are_seen_by_the_next_decision(by_version, stub):
    report(stub, "compute2", hypervisor_version=2000)
    assert await chosen(by_version) == "compute2"
    report(stub, "compute2", hypervisor_version=2000, stats={"failed_builds": 3})
    assert (await weighed(by_version))[-1] == "compute2"


async def test_a_disabled_or_silent_service_is_seen_without_its_node_changing(by_version, stub):
    report(stub, "compute2", hypervisor_version=2000)
    assert await chosen(by_version) == "compute2"
    db = stub.cells.default.db
    service = db.run_sync(services.find, "compute2", "nova-compute")
    db.run_sync(services.update, service.id, {"disabled": True})
    assert "compute2" not in await weighed(by_version)
    db.run_sync(services.update, service.id, {"disabled": False})
    assert await chosen(by_version) == "compute2"
    # forced down: its heartbeat no longer counts
    db.run_sync(services.update, service.id, {"forced_down": True})
    assert "compute2" not in await weighed(by_version)
    db.run_sync(services.update, service.id, {"forced_down": False})
    assert await chosen(by_version) == "compute2"


async def test_a_new_host_and_a_removed_host_are_seen(by_version, stub):
    assert set(await weighed(by_version)) == {"compute1", "compute2", "compute3"}
    # a new host: its service, its node (the newest hypervisor) and its provider in Placement
    db = stub.cells.default.db
    service = db.run_sync(services.report, "compute4", "nova-compute", "compute")
    db.run_sync(compute_nodes.upsert, "compute4", "compute4",
                dict(RESOURCES, hypervisor_hostname="compute4", hypervisor_version=5000), service["id"])
    node = db.run_sync(compute_nodes.get_by_host, "compute4")[0].uuid
    placement = by_version.placement
    made = await placement.http.post("/resource_providers", json={"name": "compute4", "uuid": node})
    assert made.status_code == 200, made.text
    response = await placement.put(f"/resource_providers/{node}/inventories", json={
        "resource_provider_generation": made.json()["generation"],
        "inventories": {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 4096}, "DISK_GB": {"total": 100}}})
    assert response.status_code == 200, response.text
    assert await chosen(by_version) == "compute4"
    # removed: the service and its node deleted (its provider left behind in Placement): never a candidate again
    db.run_sync(services.delete, service["id"])
    assert set(await weighed(by_version)) == {"compute1", "compute2", "compute3"}
    assert await chosen(by_version) != "compute4"
