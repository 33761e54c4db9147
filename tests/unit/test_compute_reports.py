"""Batched periodic reports: a compute process's hosts reach the conductor in one call, each gets its own answer."""
import asyncio
import json

import pytest

from kilonova.common.rpc import RemoteError, RPCTimeout
from kilonova.compute.agent.reports import ReportBatcher
from kilonova.compute.conductor.manager import ConductorManager
from kilonova.compute.db import compute_nodes, mappings, services
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture


class RecordingConductor:
    """Answers report_many (or pretends to be an older conductor without it) and records every call."""

    def __init__(self, knows_report_many=True):
        self.knows_report_many = knows_report_many
        self.calls = []
        self.timeout = 30.0

    async def call(self, method, **kwargs):
        self.calls.append((method, kwargs))
        if method == "report_many":
            if not self.knows_report_many:
                raise RemoteError("NoSuchMethod", "ConductorManager has no remote method report_many")
            return [{"error": {"type": "NotFound", "message": "no such host"}} if r["args"]["host"] == "bad"
                    else {"result": {"host": r["args"]["host"]}} for r in reports_of(kwargs)]
        return {"host": kwargs.get("host"), "single": True}

    async def cast(self, method, **kwargs):
        self.calls.append((method, kwargs))


def reports_of(kwargs):
    return kwargs["reports"]


async def test_many_hosts_reports_go_as_one_call_and_each_caller_gets_its_answer():
    conductor = RecordingConductor()
    batcher = ReportBatcher(conductor, window=0.05)
    hosts = [f"h{i}" for i in range(40)] + ["bad"]
    results = await asyncio.gather(*(batcher.call("service_report", host=h, binary="nova-compute", topic="compute")
                                     for h in hosts), return_exceptions=True)
    assert [c[0] for c in conductor.calls] == ["report_many"]
    assert len(reports_of(conductor.calls[0][1])) == 41
    assert results[:40] == [{"host": h} for h in hosts[:40]]
    assert isinstance(results[40], RemoteError) and results[40].exc_type == "NotFound"


async def test_other_methods_pass_straight_through():
    conductor = RecordingConductor()
    batcher = ReportBatcher(conductor, window=0.05)
    assert await batcher.call("instance_update", instance_uuid="u", values={}) == {"host": None, "single": True}
    await batcher.cast("build_failed", instance_uuid="u")
    assert [c[0] for c in conductor.calls] == ["instance_update", "build_failed"]
    assert batcher.timeout == 30.0


async def test_a_conductor_without_report_many_gets_the_reports_one_by_one():
    conductor = RecordingConductor(knows_report_many=False)
    batcher = ReportBatcher(conductor, window=0.05)
    results = await asyncio.gather(*(batcher.call("compute_node_update", host=h, nodename=h, values={},
                                                  service_id=None) for h in ("a", "b")))
    assert results == [{"host": "a", "single": True}, {"host": "b", "single": True}]
    await batcher.call("service_report", host="c", binary="nova-compute")
    assert [c[0] for c in conductor.calls] == ["report_many", "compute_node_update", "compute_node_update",
                                               "service_report"]


async def test_a_failed_batch_fails_every_caller_and_the_next_batch_goes_again():
    conductor = RecordingConductor()
    batcher = ReportBatcher(conductor, window=0.05)
    original = conductor.call

    async def timing_out(method, **kwargs):
        raise RPCTimeout("no reply from conductor.report_many within 30s")

    conductor.call = timing_out
    results = await asyncio.gather(*(batcher.call("service_report", host=h, binary="nova-compute")
                                     for h in ("a", "b")), return_exceptions=True)
    assert all(isinstance(r, RPCTimeout) for r in results)
    conductor.call = original
    assert await batcher.call("service_report", host="a", binary="nova-compute") == {"host": "a"}


async def test_a_full_batch_goes_without_waiting_for_the_window():
    conductor = RecordingConductor()
    batcher = ReportBatcher(conductor, window=60, max_batch=10)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.call("service_report", host=f"h{i}",
                                                                   binary="nova-compute") for i in range(10))), 5)
    assert len(results) == 10 and batcher.calls == 1


# ---------------------------------------------------------------- the conductor's side, on real (SQLite) databases

@pytest.fixture
def conductor(stub):  # noqa: F811
    return ConductorManager(stub.conf, stub.cells, scheduler=None, compute_rpc=None, placement=None)


async def test_report_many_writes_heartbeats_and_usage_of_mapped_and_new_hosts(stub, conductor):  # noqa: F811
    cell = stub.cells.default
    first = await conductor.service_report(host="old", binary="nova-compute", topic="compute")
    node_uuid = await conductor.compute_node_update(host="old", nodename="old", values={
        "vcpus": 8, "memory_mb": 1024, "local_gb": 10, "cpu_info": json.dumps({})}, service_id=first["id"])
    replies = await conductor.report_many(reports=[
        {"method": "service_report", "args": {"host": "old", "binary": "nova-compute", "topic": "compute"}},
        {"method": "compute_node_update", "args": {"host": "old", "nodename": "old",
                                                   "values": {"vcpus_used": 3, "running_vms": 3}, "service_id": None}},
        {"method": "service_report", "args": {"host": "new", "binary": "nova-compute", "topic": "compute"}},
        {"method": "instance_destroy", "args": {"host": "old", "instance_uuid": "x"}},
    ])
    assert replies[0]["result"]["id"] == first["id"]
    assert replies[1] == {"result": node_uuid}
    assert "id" in replies[2]["result"]
    assert replies[3]["error"]["type"] == "NoSuchMethod"
    service = cell.db.run_sync(services.find, "old", "nova-compute", write=False)
    assert service.report_count == 2
    node = cell.db.run_sync(lambda s: compute_nodes.get_with_service(s, node_uuid)[0], write=False)
    assert (node.vcpus_used, node.running_vms) == (3, 3)
    # the new host was mapped to a cell, as a heartbeat of its own would have done
    assert stub.api_db.run_sync(lambda s: mappings.get_host_mapping(s, "new") is not None, write=False)


async def test_report_many_keeps_the_good_reports_when_one_fails(stub, conductor):  # noqa: F811
    await conductor.service_report(host="a", binary="nova-compute", topic="compute")
    await conductor.service_report(host="b", binary="nova-compute", topic="compute")
    replies = await conductor.report_many(reports=[
        {"method": "service_report", "args": {"host": "a", "binary": "nova-compute"}},
        {"method": "compute_node_update", "args": {"host": "b", "nodename": "b", "values": None, "service_id": None}},
    ])
    assert "result" in replies[0]
    assert "error" in replies[1]
    service = stub.cells.default.db.run_sync(services.find, "a", "nova-compute", write=False)
    assert service.report_count == 2


async def test_report_many_heartbeats_of_many_registered_hosts_each_count_once(stub, conductor):  # noqa: F811
    hosts = [f"h{i}" for i in range(30)]
    first = {h: await conductor.service_report(host=h, binary="nova-compute", topic="compute") for h in hosts}
    cell = stub.cells.default
    cell.db.run_sync(lambda s: setattr(services.find(s, "h3", "nova-compute"), "disabled", True))
    replies = await conductor.report_many(reports=[
        {"method": "service_report", "args": {"host": h, "binary": "nova-compute", "topic": "compute"}}
        for h in hosts])
    assert [r["result"]["id"] for r in replies] == [first[h]["id"] for h in hosts]
    assert [r["result"]["disabled"] for r in replies] == [h == "h3" for h in hosts]
    counts = cell.db.run_sync(lambda s: {h: services.find(s, h, "nova-compute").report_count for h in hosts},
                              write=False)
    assert set(counts.values()) == {2}
