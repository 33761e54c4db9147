"""The hint and aggregate filters through the real scheduler manager over the compute harness's databases:
same_host/different_host read the named servers' hosts from the cell, and the aggregate filters read the
metadata set through os-aggregates."""
from types import SimpleNamespace

import pytest

from kilonova.compute.conductor.tasks import rebuild
from kilonova.compute.db import compute_nodes, services
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_compute_aggregates import CandidatePlacement, _action, _create, hosts  # noqa: F401
from tests.unit.test_compute_microversions import add_server

SPEC = {"flavor": {"vcpus": 1, "memory_mb": 0, "root_gb": 0}, "project_id": "demo-project", "user_id": "u"}


def scheduler_of(stub, filters=None):
    if filters:
        stub.conf.set("filter_scheduler", "enabled_filters", filters)
    nodes = stub.cells.default.db.run_sync(lambda s: [n.uuid for n, _ in compute_nodes.list_with_services(s)])
    return SchedulerManager(stub.conf, CandidatePlacement(nodes), stub.cells)


async def test_same_host_and_different_host_read_the_servers_hosts(stub, hosts):
    scheduler = scheduler_of(stub)
    one, two = add_server(stub, "one", host="compute2"), add_server(stub, "two", host="compute3")
    [beside] = await scheduler.select_destinations(dict(SPEC, scheduler_hints={"same_host": one["uuid"]}), ["x1"])
    assert beside[0]["host"] == "compute2"
    [away] = await scheduler.select_destinations(
        dict(SPEC, scheduler_hints={"different_host": [one["uuid"], two["uuid"]]}), ["x2"])
    assert [s["host"] for s in away] == ["compute1"]   # no alternate: the other hosts hold the servers
    with pytest.raises(NoValidHost) as info:
        await scheduler.select_destinations(
            dict(SPEC, scheduler_hints={"same_host": [one["uuid"]], "different_host": [one["uuid"]]}), ["x3"])
    assert f"DifferentHostFilter removed 1 of 1 hosts (holds one of the servers {one['uuid']}" in str(info.value)


async def test_aggregate_filters_read_the_metadata_of_the_hosts_aggregates(api, stub, hosts):
    scheduler = scheduler_of(stub, "ComputeFilter,AggregateMultiTenancyIsolation,AggregateInstanceExtraSpecsFilter")
    kept = await _create(api, "kept")
    await _action(api, kept["id"], "add_host", {"host": "compute1"})
    await _action(api, kept["id"], "set_metadata", {"metadata": {"filter_tenant_id": "other,demo-project",
                                                                          "ssd": "true"}})
    theirs = await scheduler.select_destinations(dict(SPEC, project_id="someone-else"), ["y1"])
    assert "compute1" not in [s["host"] for s in theirs[0]]
    ssd = {**SPEC, "flavor": {**SPEC["flavor"], "extra_specs": {"aggregate_instance_extra_specs:ssd": "true"}}}
    [ours] = await scheduler.select_destinations(ssd, ["y2"])
    assert [s["host"] for s in ours] == ["compute1"]
    with pytest.raises(NoValidHost) as info:
        await scheduler.select_destinations(dict(ssd, project_id="someone-else"), ["y3"])
    assert "AggregateMultiTenancyIsolation removed 1 of 3 hosts" in str(info.value)
    assert "AggregateInstanceExtraSpecsFilter removed 2 of 2 hosts" in str(info.value)


async def test_a_rebuild_checks_the_new_image_against_its_hosts_aggregates(api, stub, hosts):
    """AggregateImagePropertiesIsolation runs on rebuild as upstream's RUN_ON_REBUILD filters do."""
    stub.conf.set("filter_scheduler", "enabled_filters", "ComputeFilter,AggregateImagePropertiesIsolation")
    windows = await _create(api, "windows")
    await _action(api, windows["id"], "add_host", {"host": "compute1"})
    await _action(api, windows["id"], "set_metadata", {"metadata": {"os_distro": "windows"}})
    conductor = SimpleNamespace(conf=stub.conf, cells=stub.cells, placement=None)
    server = {"uuid": "r1", "host": "compute1", "node": "compute1", "flavor": SPEC["flavor"]}
    await rebuild._check_image_on_host(conductor, stub.cells.default, server,
                                       {"id": "img", "properties": {"os_distro": "windows"}})
    with pytest.raises(rebuild.Refused) as info:
        await rebuild._check_image_on_host(conductor, stub.cells.default, server,
                                           {"id": "img", "properties": {"os_distro": "ubuntu"}})
    assert str(info.value) == ("No valid host was found. AggregateImagePropertiesIsolation removed host compute1 "
                               "(its aggregates' metadata differ from the image's properties).")


async def test_compute_capabilities_read_the_compute_nodes_report(stub, hosts):
    db = stub.cells.default.db
    service = db.run_sync(services.report, "compute2", "nova-compute", "compute")
    db.run_sync(compute_nodes.upsert, "compute2", "compute2", {"hypervisor_version": 9000000}, service["id"])
    scheduler = scheduler_of(stub)   # ComputeCapabilitiesFilter is on by default
    newer = {**SPEC, "flavor": {**SPEC["flavor"], "extra_specs": {"capabilities:hypervisor_version": ">= 9000000",
                                                                  "capabilities:hypervisor_type": "s== fake"}}}
    [chosen] = await scheduler.select_destinations(newer, ["z1"])
    assert [s["host"] for s in chosen] == ["compute2"]
    many_cpus = {**SPEC, "flavor": {**SPEC["flavor"], "extra_specs": {"capabilities:vcpus": ">= 16"}}}
    with pytest.raises(NoValidHost) as info:
        await scheduler.select_destinations(many_cpus, ["z2"])
    assert "ComputeCapabilitiesFilter removed 3 of 3 hosts (its capabilities do not satisfy the flavor's extra " \
           "specs (capabilities:vcpus=>= 16))" in str(info.value)
