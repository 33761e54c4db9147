"""NUMATopologyFilter and PciPassthroughFilter against the NUMA cells and PCI pools a host reports, the fake
driver's reports from [fake_driver] numa_nodes / pci_devices, and both filters through the real scheduler
manager over the compute harness's databases."""
import json

import pytest

from kilonova.compute.db import compute_nodes, services
from kilonova.compute.scheduler import topology
from kilonova.compute.scheduler.filters.numa_pci import NUMATopologyFilter, PciPassthroughFilter
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager
from kilonova.compute.virt import fake_topology
from kilonova.config import Config, ConfigError
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_compute_aggregates import CandidatePlacement, hosts  # noqa: F401 - fixtures

ALIAS = json.dumps([{"name": "nic", "vendor_id": "8086", "product_id": "154d"},
                    {"name": "gpu", "vendor_id": "10de", "product_id": "1eb8"}])


def cell(i, cpus=8, memory=8192, cpu_usage=0, memory_usage=0, pinned=0):
    return {"id": i, "cpus": cpus, "memory_mb": memory, "cpu_usage": cpu_usage, "memory_usage": memory_usage,
            "pinned_cpus": pinned}


def host(numa=None, pci=None):
    return HostState(uuid="h", host="h", nodename="h", cell_uuid="c", availability_zone="nova", service_up=True,
                     service_disabled=False, numa_topology={"cells": numa} if numa is not None else None,
                     pci_stats=pci)


def spec(vcpus=4, memory=4096, **extra):
    return {"flavor": {"vcpus": vcpus, "memory_mb": memory, "root_gb": 0, "extra_specs": extra}}


@pytest.fixture
def conf(tmp_path):
    conf = Config.load(state_dir=tmp_path)
    conf.set("pci", "alias", ALIAS)
    return conf


def test_the_guests_cells_from_flavor_and_image():
    assert topology.guest_cells(spec()) is None
    assert [(c.cpus, c.memory_mb) for c in topology.guest_cells(spec(5, 4096, **{"hw:numa_nodes": "2"}))] == \
        [(3, 2048), (2, 2048)]
    uneven = spec(4, 3072, **{"hw:numa_nodes": "2", "hw:numa_cpus.0": "0", "hw:numa_cpus.1": "1-3",
                              "hw:numa_mem.0": "1024", "hw:numa_mem.1": "2048"})
    assert [(c.cpus, c.memory_mb) for c in topology.guest_cells(uneven)] == [(1, 1024), (3, 2048)]
    assert len(topology.guest_cells(spec(**{"hw:cpu_policy": "dedicated"}))) == 1
    from_image = {**spec(), "image": {"properties": {"hw_numa_nodes": "2"}}}
    assert len(topology.guest_cells(from_image)) == 2
    with pytest.raises(topology.TopologyError):
        topology.guest_cells(spec(2, **{"hw:numa_nodes": "4"}))


def test_numa_filter(conf):
    flt = NUMATopologyFilter(conf)
    two_cells = spec(12, 4096, **{"hw:numa_nodes": "2"})
    assert not flt.applies(spec()) and flt.host_passes(host(), spec())
    assert flt.host_passes(host([cell(0), cell(1)]), two_cells)
    assert not flt.host_passes(host([cell(0, cpus=16)]), two_cells)       # one cell cannot hold two
    assert not flt.host_passes(host(), two_cells)                         # no topology reported
    pinned = spec(6, 2048, **{"hw:cpu_policy": "dedicated"})
    assert flt.host_passes(host([cell(0, pinned=4), cell(1, pinned=0)]), pinned)
    assert not flt.host_passes(host([cell(0, pinned=4), cell(1, pinned=3)]), pinned)   # pinned: no overcommit
    assert flt.host_passes(host([cell(0, cpu_usage=30)]), spec(1, 512, **{"hw:numa_nodes": "1"}))  # ratio 4.0
    assert not flt.host_passes(host([cell(0, memory_usage=8000)]), spec(1, 512, **{"hw:numa_nodes": "1"}))
    assert "2 cell(s): 6 CPUs/2048 MB + 6 CPUs/2048 MB" in flt.explain(two_cells)
    broken = spec(2, **{"hw:numa_nodes": "x"})
    assert flt.applies(broken) and not flt.host_passes(host([cell(0)]), broken)
    assert "hw:numa_nodes=x is not a number" in flt.explain(broken)


def test_pci_filter(conf):
    flt = PciPassthroughFilter(conf)
    pools = [{"vendor_id": "8086", "product_id": "154d", "count": 2, "numa_node": 0},
             {"vendor_id": "8086", "product_id": "154d", "count": 1, "numa_node": 1}]
    assert not flt.applies(spec())
    assert flt.host_passes(host(pci=pools), spec(**{"pci_passthrough:alias": "nic:3"}))
    assert not flt.host_passes(host(pci=pools), spec(**{"pci_passthrough:alias": "nic:4"}))
    assert not flt.host_passes(host(pci=pools), spec(**{"pci_passthrough:alias": "nic:1,gpu:1"}))
    assert not flt.host_passes(host(), spec(**{"pci_passthrough:alias": "nic:1"}))
    with pytest.raises(ConfigError):  # refused when set (typed options), else when the filter starts
        conf.set("pci", "alias", '{"vendor_id": "8086"}')
        PciPassthroughFilter(conf)
    conf.set("pci", "alias", ALIAS)
    unknown = spec(**{"pci_passthrough:alias": "fpga:1"})
    assert not flt.host_passes(host(pci=pools), unknown)
    assert flt.explain(unknown) == "PCI alias fpga is not defined ([pci] alias)"


def test_fake_hosts_report_their_configured_topology_with_their_guests_placed(conf):
    conf.set("fake_driver", "numa_nodes", "compute1=2")
    conf.set("fake_driver", "pci_devices", "8086:154d:2:0,compute2=10de:1eb8:1")
    cells, pools = fake_topology.configured(conf, "compute1", 16, 32768)
    assert [(c["cpus"], c["memory_mb"]) for c in cells] == [(8, 16384), (8, 16384)]
    assert [(p["vendor_id"], p["count"]) for p in pools] == [("8086", 2)]
    assert fake_topology.configured(conf, "compute2", 16, 32768)[0] == []
    assert [p["vendor_id"] for p in fake_topology.configured(conf, "compute2", 16, 32768)[1]] == ["8086", "10de"]
    guest = {"vcpus": 6, "memory_mb": 4096, "extra_specs": {"hw:cpu_policy": "dedicated",
                                                            "pci_passthrough:alias": "nic:1"}}
    report = fake_topology.report(conf, cells, pools, [guest, guest])
    assert [c["pinned_cpus"] for c in report["numa_topology"]["cells"]] == [6, 6]
    assert report["pci_stats"][0]["count"] == 0


async def test_the_scheduler_reads_the_nodes_reported_topology(stub, hosts):
    stub.conf.set("filter_scheduler", "enabled_filters", "ComputeFilter,NUMATopologyFilter,PciPassthroughFilter")
    stub.conf.set("pci", "alias", ALIAS)
    db = stub.cells.default.db
    service = db.run_sync(services.report, "compute2", "nova-compute", "compute")
    db.run_sync(compute_nodes.upsert, "compute2", "compute2", {
        "numa_topology": {"cells": [cell(0), cell(1)]},
        "pci_stats": [{"vendor_id": "10de", "product_id": "1eb8", "count": 1}]}, service["id"])
    nodes = db.run_sync(lambda s: [n.uuid for n, _ in compute_nodes.list_with_services(s)])
    scheduler = SchedulerManager(stub.conf, CandidatePlacement(nodes), stub.cells)
    base = {"project_id": "p", "user_id": "u"}
    [chosen] = await scheduler.select_destinations(
        {**base, **spec(4, 1024, **{"hw:numa_nodes": "2", "pci_passthrough:alias": "gpu:1"})}, ["n1"])
    assert [s["host"] for s in chosen] == ["compute2"]
    with pytest.raises(NoValidHost) as info:
        await scheduler.select_destinations({**base, **spec(4, 1024, **{"pci_passthrough:alias": "gpu:2"})}, ["n2"])
    assert "PciPassthroughFilter removed 3 of 3 hosts (has not enough free PCI devices " \
           "(pci_passthrough:alias=gpu:2))" in str(info.value)
