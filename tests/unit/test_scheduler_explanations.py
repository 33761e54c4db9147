"""Every way a request can fail to find a host, and the "No valid host" reason an admin reads for it; the
same stages in a dry run (``SchedulerManager.explain``). The scheduler runs over the compute harness's
databases and the real Placement app (resources, traits and aggregates as Placement answers them)."""
import uuid

import pytest

from kilonova.compute.db import aggregates, compute_nodes, services
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_compute_aggregates import hosts  # noqa: F401 - fixtures
from tests.unit.test_scheduler import conf, placement  # noqa: F401 - fixtures

FLAVOR = {"id": "1", "name": "small", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "extra_specs": {}}
SPEC = {"project_id": "demo", "user_id": "u", "flavor": FLAVOR, "image": {"id": "i", "disk_format": "qcow2",
                                                                          "properties": {}}}


@pytest.fixture
async def cloud(stub, hosts, placement):
    """compute1..3 as Placement providers (their compute node uuids), 8 VCPU / 4096 MB / 100 GB each."""
    db = stub.cells.default.db
    nodes = db.run_sync(lambda s: {n.host: n.uuid for n, _ in compute_nodes.list_with_services(s)})
    for name, node in nodes.items():
        made = await placement.http.post("/resource_providers", json={"name": name, "uuid": node})
        assert made.status_code == 200, made.text
        inventory = {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 4096}, "DISK_GB": {"total": 100}}
        response = await placement.put(f"/resource_providers/{node}/inventories", json={
            "resource_provider_generation": made.json()["generation"], "inventories": inventory})
        assert response.status_code == 200, response.text
    scheduler = SchedulerManager(stub.conf, placement, stub.cells)
    return nodes, scheduler


async def set_traits(placement, node, traits):
    current = (await placement.get(f"/resource_providers/{node}/traits")).json()
    for trait in traits:
        if trait.startswith("CUSTOM_"):
            await placement.put(f"/traits/{trait}")
    response = await placement.put(f"/resource_providers/{node}/traits", json={
        "resource_provider_generation": current["resource_provider_generation"], "traits": traits})
    assert response.status_code == 200, response.text


async def aggregate(stub, placement, nodes, name, hosts, metadata):
    """An aggregate in the API database, its hosts' providers members of it in Placement (as the API mirrors)."""
    made = stub.api_db.run_sync(aggregates.create, name)
    stub.api_db.run_sync(aggregates.set_metadata, made["id"], metadata)
    for host in hosts:
        stub.api_db.run_sync(aggregates.add_host, made["id"], host)
        current = (await placement.get(f"/resource_providers/{nodes[host]}/aggregates")).json()
        await placement.put(f"/resource_providers/{nodes[host]}/aggregates", json={
            "aggregates": current["aggregates"] + [made["uuid"]],
            "resource_provider_generation": current["resource_provider_generation"]})
    return made


async def failure(scheduler, spec):
    with pytest.raises(NoValidHost) as info:
        await scheduler.select_destinations(spec, [str(uuid.uuid4())])
    dry = await scheduler.explain(spec)
    assert dry["error"] == str(info.value) and dry["chosen"] is None
    return str(info.value), dry


async def test_a_resource_no_host_has(cloud):
    _, scheduler = cloud
    message, dry = await failure(scheduler, {**SPEC, "flavor": {**FLAVOR, "memory_mb": 8192}})
    assert message == ("No valid host was found. Placement has no resource provider has MEMORY_MB:8192 available "
                       "(asked for DISK_GB:1, MEMORY_MB:8192, VCPU:1).")
    assert dry["stages"][0]["stage"] == "placement"


async def test_a_required_trait_no_host_has(cloud):
    nodes, scheduler = cloud
    await set_traits(scheduler.placement, nodes["compute1"], ["CUSTOM_GOLD"])
    await set_traits(scheduler.placement, nodes["compute2"], ["CUSTOM_SILVER"])
    gold = {**SPEC, "flavor": {**FLAVOR, "extra_specs": {"trait:CUSTOM_GOLD": "required",
                                                         "trait:CUSTOM_SILVER": "required"}}}
    message, dry = await failure(scheduler, gold)
    assert message == ("No valid host was found. Placement found 3 host(s) with DISK_GB:1, MEMORY_MB:512, VCPU:1; "
                       "pre-filter transform_traits left none (the flavor's and image's trait: specs: requires "
                       "trait CUSTOM_GOLD, CUSTOM_SILVER).")
    assert [(s["stage"], s["hosts_before"], s["hosts_after"]) for s in dry["stages"]] == [
        ("placement", 3, 3), ("compute_status_filter", 3, 3), ("transform_traits", 3, 0)]
    unknown = {**SPEC, "flavor": {**FLAVOR, "extra_specs": {"trait:CUSTOM_NOWHERE": "required"}}}
    message, _ = await failure(scheduler, unknown)
    assert message == ("No valid host was found. Placement refused the query for DISK_GB:1, MEMORY_MB:512, VCPU:1: "
                       "No such trait(s): CUSTOM_NOWHERE.")


async def test_disabled_computes_are_left_out_by_placement(cloud):
    nodes, scheduler = cloud
    for node in nodes.values():
        await set_traits(scheduler.placement, node, ["COMPUTE_STATUS_DISABLED"])
    message, _ = await failure(scheduler, SPEC)
    assert "pre-filter compute_status_filter left none (compute service disabled: forbids trait " \
           "COMPUTE_STATUS_DISABLED)" in message


async def test_image_type_support(cloud, stub):
    nodes, scheduler = cloud
    stub.conf.set("scheduler", "query_placement_for_image_type_support", "true")
    scheduler = SchedulerManager(stub.conf, scheduler.placement, stub.cells)
    await set_traits(scheduler.placement, nodes["compute2"], ["COMPUTE_IMAGE_TYPE_QCOW2"])
    [chosen] = await scheduler.select_destinations(SPEC, [str(uuid.uuid4())])
    assert [s["host"] for s in chosen] == ["compute2"]
    message, _ = await failure(scheduler, {**SPEC, "image": {**SPEC["image"], "disk_format": "vmdk"}})
    assert "pre-filter require_image_type_support left none (image disk format vmdk: requires trait " \
           "COMPUTE_IMAGE_TYPE_VMDK)" in message
    # A server booted from a volume has no image to write to the host's disk: no such trait is asked.
    await scheduler.select_destinations({**SPEC, "is_bfv": True, "image": {"disk_format": "vmdk"}},
                                        [str(uuid.uuid4())])


async def test_tenant_isolation_through_aggregates(cloud, stub):
    nodes, scheduler = cloud
    stub.conf.set("scheduler", "limit_tenants_to_placement_aggregate", "true")
    scheduler = SchedulerManager(stub.conf, scheduler.placement, stub.cells)
    await aggregate(stub, scheduler.placement, nodes, "demo-only", ["compute3"], {"filter_tenant_id": "demo"})
    await aggregate(stub, scheduler.placement, nodes, "empty", [], {"filter_tenant_id2": "lonely"})
    [chosen] = await scheduler.select_destinations(SPEC, [str(uuid.uuid4())])
    assert [s["host"] for s in chosen] == ["compute3"]
    message, _ = await failure(scheduler, {**SPEC, "project_id": "lonely"})
    assert "pre-filter require_tenant_aggregate left none (project lonely is kept to aggregates empty " \
           "(filter_tenant_id): in aggregates " in message
    # A project named nowhere goes anywhere, unless an aggregate is required.
    await scheduler.select_destinations({**SPEC, "project_id": "other"}, [str(uuid.uuid4())])
    stub.conf.set("scheduler", "placement_aggregate_required_for_tenants", "true")
    scheduler = SchedulerManager(stub.conf, scheduler.placement, stub.cells)
    message, dry = await failure(scheduler, {**SPEC, "project_id": "other"})
    assert message == ("No valid host was found. Pre-filter require_tenant_aggregate: project other is in no "
                       "aggregate's filter_tenant_id and [scheduler] placement_aggregate_required_for_tenants "
                       "is set.")


async def test_availability_zone_through_aggregates(cloud, stub):
    nodes, scheduler = cloud
    made = await aggregate(stub, scheduler.placement, nodes, "az1-hosts", ["compute1"], {"availability_zone": "az1"})
    [chosen] = await scheduler.select_destinations({**SPEC, "availability_zone": "az1"}, [str(uuid.uuid4())])
    assert [s["host"] for s in chosen] == ["compute1"]
    message, _ = await failure(scheduler, {**SPEC, "availability_zone": "az1",
                                           "flavor": {**FLAVOR, "vcpus": 9, "resources:VCPU": "9"}})
    assert "no resource provider has VCPU:9 available" in message
    await set_traits(scheduler.placement, nodes["compute1"], ["COMPUTE_STATUS_DISABLED"])
    message, _ = await failure(scheduler, {**SPEC, "availability_zone": "az1"})
    assert "pre-filter compute_status_filter left none" in message and made["uuid"] not in message


async def test_isolated_aggregates(cloud, stub):
    nodes, scheduler = cloud
    stub.conf.set("scheduler", "enable_isolated_aggregate_filtering", "true")
    scheduler = SchedulerManager(stub.conf, scheduler.placement, stub.cells)
    for node in nodes.values():
        await set_traits(scheduler.placement, node, ["CUSTOM_LICENSED"])
    await aggregate(stub, scheduler.placement, nodes, "licensed", list(nodes), {"trait:CUSTOM_LICENSED": "required"})
    message, _ = await failure(scheduler, SPEC)
    assert "pre-filter isolate_aggregates left none (aggregates licensed require traits the request does not: " \
           "not in aggregates " in message
    licensed = {**SPEC, "flavor": {**FLAVOR, "extra_specs": {"trait:CUSTOM_LICENSED": "required"}}}
    await scheduler.select_destinations(licensed, [str(uuid.uuid4())])


async def test_a_filter_stage_and_the_dry_run_of_a_success(cloud, stub):
    nodes, scheduler = cloud
    message, dry = await failure(scheduler, {**SPEC, "availability_zone": "nowhere"})
    assert "AvailabilityZoneFilter removed 3 of 3 hosts (not in the requested availability zone)" in message
    zone = next(s for s in dry["stages"] if s["stage"] == "AvailabilityZoneFilter")
    assert zone["removed"] == ["compute1", "compute2", "compute3"] and zone["hosts_after"] == 0
    ok = await scheduler.explain({**SPEC, "scheduler_hints": {"query": '["not", ["=", "$host", "compute1"]]'}},
                                 ignore_hosts=["compute2"])
    assert ok["error"] is None and ok["chosen"] == "compute3"
    stages = {s["stage"]: s for s in ok["stages"]}
    assert stages["ignore_hosts"]["removed"] == ["compute2"]
    assert stages["JsonFilter"]["hosts_before"] == 2 and stages["JsonFilter"]["hosts_after"] == 1
    assert ok["weighed"][0]["host"] == "compute3" and "RAMWeigher" in ok["weighed"][0]["by_weigher"]
    # Nothing was claimed by the dry runs.
    for node in nodes.values():
        usages = (await scheduler.placement.get(f"/resource_providers/{node}/usages")).json()["usages"]
        assert not any(usages.values())


async def test_an_unknown_destination_and_a_destination_without_room(cloud):
    nodes, scheduler = cloud
    message, _ = await failure(scheduler, {**SPEC, "requested_destination": {"host": "compute9"}})
    assert message == "No valid host was found. The requested destination (host compute9) is not a known " \
                      "compute node."
    message, _ = await failure(scheduler, {**SPEC, "requested_destination": {"host": "compute1"},
                                           "flavor": {**FLAVOR, "memory_mb": 5000}})
    assert "Placement has no resource provider in the requested destination's tree has MEMORY_MB:5000" in message


async def test_a_forced_host_skips_the_filters_and_a_2_74_destination_does_not(cloud, stub):
    nodes, scheduler = cloud
    db = stub.cells.default.db
    db.run_sync(lambda s: services.update(s, services.find(s, "compute2", "nova-compute").id, {"disabled": True}))
    forced = {**SPEC, "requested_destination": {"host": "compute2", "force": True}}
    [chosen] = await scheduler.select_destinations(forced, [str(uuid.uuid4())])
    assert [s["host"] for s in chosen] == ["compute2"]
    dry = await scheduler.explain(forced)
    assert "forced_destination" in [s["stage"] for s in dry["stages"]]
    message, _ = await failure(scheduler, {**SPEC, "requested_destination": {"host": "compute2"}})
    assert "ComputeFilter removed 1 of 1 hosts (compute service disabled or down)" in message


async def test_a_cell_much_larger_than_the_candidates_is_read_for_its_candidates_alone(cloud, stub):
    nodes, scheduler = cloud
    stub.conf.set("filter_scheduler", "max_placement_results", "1")
    scheduler = SchedulerManager(stub.conf, scheduler.placement, stub.cells)
    [first] = await scheduler.select_destinations(SPEC, [str(uuid.uuid4())])   # the whole cell read: 3 hosts
    assert scheduler.host_cache.sizes[stub.cells.default.uuid] == 3
    reads = []
    original = scheduler.host_cache.some_hosts

    async def some_hosts(cell, uuids, counts):
        reads.append(uuids)
        return await original(cell, uuids, counts)
    scheduler.host_cache.some_hosts = some_hosts
    [second] = await scheduler.select_destinations(SPEC, [str(uuid.uuid4())])
    assert len(reads) == 1 and len(reads[0]) == 1 and nodes[second[0]["host"]] == reads[0][0]
