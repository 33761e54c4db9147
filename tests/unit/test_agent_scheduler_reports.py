"""What the compute agent reports for the scheduler: consecutive failed builds (BuildFailureWeigher), the NUMA
cells and PCI devices of a fake host with its guests placed (NUMATopologyFilter, PciPassthroughFilter), and
COMPUTE_STATUS_DISABLED on its provider while its service is disabled (the compute_status_filter pre-filter)."""
from __future__ import annotations

import json

from kilonova.compute.db import compute_nodes
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_recovery import (HOST, SPEC, agent, current, hosts, network, new_agent,  # noqa: F401
                                      provider, server)
from tests.unit.test_scheduler import placement  # noqa: F401 - fixture


def node(stub):
    return stub.cells.default.db.run_sync(lambda s: compute_nodes.get_by_host(s, HOST)[0], write=False)


async def test_failed_builds_are_counted_until_one_succeeds(stub, placement, network, provider, new_agent):  # noqa: F811
    stub.conf.set("fake_driver", "fail_spawn_hosts", HOST)
    stub.conf.set("fake_driver", "numa_nodes", "2")
    failing = new_agent()
    failing.node_uuid = provider
    stub.cells.default.db.run_sync(compute_nodes.upsert, HOST, HOST, {"hypervisor_type": "fake"}, None)
    for _ in range(2):
        instance = await server(stub, placement, provider)
        await failing.build_and_run_instance(instance, SPEC, alternates=[])
    assert failing.failed_builds == 2
    await failing._report_usage()
    reported = node(stub)
    assert json.loads(reported.stats) == {"failed_builds": 2}
    assert [c["id"] for c in json.loads(reported.numa_topology)["cells"]] == [0, 1]

    stub.conf.set("fake_driver", "fail_spawn_hosts", "")
    healthy = new_agent()
    healthy.node_uuid, healthy.failed_builds = provider, 2
    instance = await server(stub, placement, provider)
    await healthy.build_and_run_instance(instance, SPEC, alternates=[])
    assert current(stub, instance["uuid"])["vm_state"] == "active"
    await healthy._report_usage()
    assert json.loads(node(stub).stats) == {"failed_builds": 0}


async def test_a_disabled_service_puts_compute_status_disabled_on_its_provider(stub, placement, provider,  # noqa: F811
                                                                              agent):
    agent.node_uuid = provider

    async def traits():
        return set((await placement.http.get(f"/resource_providers/{provider}/traits")).json()["traits"])

    await placement.http.put(f"/resource_providers/{provider}/traits", json={
        "resource_provider_generation": (await placement.http.get(f"/resource_providers/{provider}")).json()[
            "generation"], "traits": ["HW_CPU_X86_SSE2"]})
    await agent._sync_status_trait(True)
    assert await traits() == {"HW_CPU_X86_SSE2", "COMPUTE_STATUS_DISABLED"} and agent._status_disabled
    await agent._sync_status_trait(False)
    assert await traits() == {"HW_CPU_X86_SSE2"} and not agent._status_disabled
