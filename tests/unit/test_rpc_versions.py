"""RPC versions on the in-process transport: stamps, caps and backports, refusals, and hosts written for at the
version their service record announces (a rolling upgrade: new controllers, older compute hosts)."""
import asyncio
import time

import pytest

from kilonova.common.rpc import (InProcessTransport, RemoteError, RPCClient, TransportPool, UnsupportedVersion)
from kilonova.common.rpc_versions import Change, Interface
from kilonova.compute import versions
from kilonova.compute.agent.manager import ComputeManager
from kilonova.compute.cell_rpc import CellRouter
from kilonova.compute.conductor.manager import ConductorManager
from kilonova.compute.db import services
from kilonova.config import Config
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_rpc import Endpoint, _eventually

BUILD = {"instance": {"uuid": "u1"}, "request_spec": {}, "alternates": [], "attempt": 1}

TOY = Interface("toy", [
    Change("1.0", "add."),
    Change("1.1", "add takes c.", arguments={"add": ("c",)}),
    Change("1.2", "sub.", methods=("sub",)),
])


class Spy(InProcessTransport):
    """The in-process transport, remembering what was sent: (target, method, version, argument names)."""

    def __init__(self):
        super().__init__()
        self.sent = []

    async def call(self, target, method, kwargs, timeout, *, version=None):
        self.sent.append((target, method, version, sorted(kwargs)))
        return await super().call(target, method, kwargs, timeout, version=version)

    async def cast(self, target, method, kwargs, *, version=None):
        self.sent.append((target, method, version, sorted(kwargs)))
        await super().cast(target, method, kwargs, version=version)


class Agent:
    """A compute host's endpoint that records the builds it received."""

    def __init__(self):
        self.builds = []

    async def build_and_run_instance(self, instance, request_spec, alternates, attempt=1, deadline=None):
        self.builds.append(deadline)


def test_messages_are_stamped_with_the_oldest_version_that_carries_them_and_backported_under_a_cap():
    assert TOY.prepare("add", {"a": 1, "c": 2}) == ("1.1", {"a": 1, "c": 2})
    assert TOY.prepare("add", {"a": 1, "c": 2}, "1.0") == ("1.0", {"a": 1})
    assert TOY.prepare("sub", {"a": 1}) == ("1.2", {"a": 1})
    with pytest.raises(UnsupportedVersion, match="sub came with toy RPC 1.2"):
        TOY.prepare("sub", {}, "1.1")
    assert TOY.cap("1.9") == (1, 2)  # a pin newer than this release: this release's
    for bad in ("2.0", "0.9", "one"):
        with pytest.raises(UnsupportedVersion):
            TOY.cap(bad)
    # The real thing: compute RPC 1.1 added the build deadline; a 1.0 host gets the build without it.
    version, args = versions.COMPUTE.prepare("build_and_run_instance", {**BUILD, "deadline": 1.0}, "1.0")
    assert (version, sorted(args)) == ("1.0", sorted(BUILD))
    assert versions.COMPUTE.prepare("build_and_run_instance", {**BUILD, "deadline": 1.0})[0] == "1.1"
    assert versions.COMPUTE.prepare("terminate_instance", {"instance": {}}) == ("1.0", {"instance": {}})


async def test_a_server_refuses_a_newer_minor_and_another_major_with_a_clear_error():
    transport = InProcessTransport()
    try:
        await transport.serve("compute.old", Endpoint(), version="1.0")
        assert await transport.call("compute.old", "add", {"a": 1, "b": 2}, 5) == 3  # unversioned: 1.0
        assert await transport.call("compute.old", "add", {"a": 1, "b": 2}, 5, version="1.0") == 3
        with pytest.raises(RemoteError) as newer:
            await transport.call("compute.old", "add", {"a": 1, "b": 2}, 5, version="1.1")
        assert newer.value.exc_type == "UnsupportedVersion"
        assert "compute.old speaks RPC version 1.0: add at version 1.1 is newer" in newer.value.message
        assert "[upgrade_levels]" in newer.value.message
        with pytest.raises(RemoteError, match="another major version"):
            await transport.call("compute.old", "add", {"a": 1, "b": 2}, 5, version="2.0")
        # A client capped at what the server speaks gets through.
        capped = RPCClient(transport, "compute.old", timeout=5, interface=TOY, version_cap="1.0")
        assert await capped.call("add", a=1, b=2, c=3) == 3
    finally:
        await transport.close()


def test_a_pinned_compute_speaks_and_announces_the_older_version(tmp_path):
    pinned = Config.load(state_dir=tmp_path, overrides={"upgrade_levels": {"compute": "1.0"}})
    assert (versions.compute_speaks(pinned), versions.compute_service_version(pinned)) == ("1.0", 1)
    default = Config.load(state_dir=tmp_path)
    assert versions.compute_pin(default) is None
    assert (versions.compute_speaks(default), versions.compute_service_version(default)) == (
        versions.COMPUTE.latest, versions.SERVICE_VERSION)
    with pytest.raises(UnsupportedVersion):
        versions.compute_pin(Config.load(state_dir=tmp_path, overrides={"upgrade_levels": {"compute": "2.0"}}))


async def test_hosts_are_written_for_at_the_version_their_service_record_announces(stub):  # noqa: F811
    conductor = ConductorManager(stub.conf, stub.cells, scheduler=None, compute_rpc=None, placement=None)
    await conductor.service_report(host="old", binary="nova-compute", topic="compute")  # says no version: 1
    await conductor.service_report(host="new", binary="nova-compute", topic="compute",
                                   version=versions.SERVICE_VERSION)
    # A host pinned back after an upgrade says so in its (batched) heartbeat.
    await conductor.service_report(host="rolled-back", binary="nova-compute", topic="compute",
                                   version=versions.SERVICE_VERSION)
    await conductor.report_many(reports=[{"method": "service_report", "args": {
        "host": "rolled-back", "binary": "nova-compute", "topic": "compute", "version": 1}}])
    cell_db = stub.cells.default.db
    assert [cell_db.run_sync(services.version_of, host, "nova-compute", write=False)
            for host in ("old", "new", "rolled-back", "unknown")] == [1, versions.SERVICE_VERSION, 1, None]

    spy = Spy()
    agents = {host: Agent() for host in ("old", "new", "rolled-back")}
    try:
        for host, agent in agents.items():
            await spy.serve(f"compute.{host}", agent, version="1.0" if host != "new" else versions.COMPUTE.latest)
        router = CellRouter(stub.cells, TransportPool(spy, "inproc://"), timeout=5)
        for host in agents:
            await router.client(host).cast("build_and_run_instance", **BUILD, deadline=123.0)
        pinned = CellRouter(stub.cells, TransportPool(spy, "inproc://"), timeout=5, compute_pin="1.0")
        await pinned.client("new").cast("build_and_run_instance", **BUILD, deadline=456.0)
        await _eventually(lambda: sum(len(a.builds) for a in agents.values()) == 4)
    finally:
        await spy.close()
    assert spy.sent == [
        ("compute.old", "build_and_run_instance", "1.0", sorted(BUILD)),
        ("compute.new", "build_and_run_instance", "1.1", sorted([*BUILD, "deadline"])),
        ("compute.rolled-back", "build_and_run_instance", "1.0", sorted(BUILD)),
        ("compute.new", "build_and_run_instance", "1.0", sorted(BUILD)),
    ]
    assert agents["old"].builds == [None] and agents["rolled-back"].builds == [None]
    assert agents["new"].builds == [123.0, None]


async def test_a_build_delivered_after_its_deadline_is_left_to_the_conductor(tmp_path):
    class Conductor:
        calls = []

        async def call(self, method, **kwargs):
            self.calls.append(method)

        async def cast(self, method, **kwargs):
            self.calls.append(method)

    conductor = Conductor()
    manager = ComputeManager("h1", driver=None, conductor=conductor, placement=None, network=None,
                             conf=Config.load(state_dir=tmp_path))
    await manager.build_and_run_instance(**BUILD, deadline=time.time() - 1)
    assert conductor.calls == []  # not even the "spawning" task state: the reconciler owns it now



class ConductorOfTheFirstRelease:
    """A conductor endpoint of conductor RPC 1.0: report_many, and a service_report without ``version``."""

    def __init__(self):
        self.reports = []

    async def service_report(self, host, binary, topic=None, cell=None):
        self.reports.append(("service_report", host))
        return {"host": host}

    async def compute_node_update(self, host, nodename, values, service_id):
        self.reports.append(("compute_node_update", host))
        return nodename

    async def report_many(self, reports):
        replies = []
        for report in reports:
            try:
                replies.append({"result": await getattr(self, report["method"])(**report["args"])})
            except Exception as exc:  # noqa: BLE001 - each report answers on its own, as the conductor does
                replies.append({"error": {"type": type(exc).__name__, "message": str(exc)}})
        return replies


@pytest.mark.parametrize("pin", ["1.0", ""])
async def test_batched_heartbeats_are_written_for_the_conductor_version_the_compute_is_pinned_to(tmp_path, pin):
    """A compute host upgraded before the conductors (``[upgrade_levels] conductor = 1.0``): its hosts'
    heartbeats still go as one report_many, each written for 1.0 (no service version), and the old conductor
    takes them all. Unpinned, the same heartbeats carry the version (a 1.0 conductor would refuse them)."""
    from kilonova.compute.agent.reports import ReportBatcher

    conf = Config.load(state_dir=tmp_path, overrides={"upgrade_levels": {"conductor": pin}})
    spy, old = Spy(), ConductorOfTheFirstRelease()
    try:
        await spy.serve("conductor", old, version="1.0")
        batcher = ReportBatcher(versions.conductor_client(spy, conf), window=0.05)
        results = await asyncio.gather(
            *(batcher.call("service_report", host=f"h{i}", binary="nova-compute", topic="compute",
                           version=versions.SERVICE_VERSION) for i in range(3)),
            batcher.call("compute_node_update", host="h0", nodename="h0", values={"vcpus": 4}, service_id=1),
            return_exceptions=True)
    finally:
        await spy.close()
    assert [(target, method) for target, method, _v, _a in spy.sent] == [("conductor", "report_many")]
    if pin:
        assert results == [{"host": "h0"}, {"host": "h1"}, {"host": "h2"}, "h0"]
        assert sorted(old.reports) == [("compute_node_update", "h0"), ("service_report", "h0"),
                                       ("service_report", "h1"), ("service_report", "h2")]
    else:
        assert [type(r).__name__ for r in results[:3]] == ["RemoteError"] * 3 and results[3] == "h0"
        assert all("version" in r.message for r in results[:3])


class ActionRecords:
    """A conductor endpoint's instance action records, as conductor RPC 1.4 (``newer``: 1.5) takes them."""

    def __init__(self, newer: bool):
        self.writes = []
        if newer:
            self.action_event = self._action_event_1_4

    async def action_event(self, phase, instance_uuid, request_id, event, host=None, result=None, details=None,
                           traceback=None):
        self.writes.append(("event", phase, result))
        return True

    async def _action_event_1_4(self, phase, instance_uuid, request_id, event, host=None, result=None,
                                details=None, traceback=None, finish_action=None):
        self.writes.append(("event", phase, result) + ((("finishes", finish_action),) if finish_action else ()))
        return True

    async def action_finish(self, instance_uuid, request_id, action, message=None):
        self.writes.append(("finish", action, message))


@pytest.mark.parametrize("pin, conductor", [("1.4", "1.4"), ("", "1.4"), ("", "1.5")])
async def test_the_last_step_of_an_operation_finishes_its_action_in_the_call_the_conductor_takes(tmp_path, pin,
                                                                                               conductor):
    """A 1.5 conductor gets the end of an operation's last step and the end of its action in one call; a
    compute host pinned to a 1.4 conductor sends them as two, as before, and so does one that is not pinned
    once the 1.4 conductor refused the single call."""
    conf = Config.load(state_dir=tmp_path, overrides={"upgrade_levels": {"conductor": pin}})
    spy, records = Spy(), ActionRecords(newer=conductor == "1.5")
    try:
        await spy.serve("conductor", records, version=conductor)
        manager = ComputeManager("h1", driver=None, conductor=versions.conductor_client(spy, conf), placement=None,
                                 network=None, conf=conf)
        async with manager.event("u1", "req-1", "compute_rebuild_instance", finishes="rebuild"):
            pass
        with pytest.raises(RuntimeError):
            async with manager.event("u1", "req-2", "compute_rebuild_instance", finishes="rebuild"):
                raise RuntimeError("the step failed")
    finally:
        await spy.close()
    sent = [(method, version) for _t, method, version, _a in spy.sent]
    if conductor == "1.4":
        refused = [] if pin else [("action_event", "1.5")]
        assert sent == ([("action_event", "1.3")] + refused + [("action_event", "1.3"), ("action_finish", "1.3")]) * 2
        assert records.writes == [("event", "start", None), ("event", "finish", "Success"), ("finish", "rebuild", None),
                                  ("event", "start", None), ("event", "finish", "Error"),
                                  ("finish", "rebuild", "Error")]
    else:
        assert sent == [("action_event", "1.3"), ("action_event", "1.5")] * 2
        assert records.writes == [("event", "start", None), ("event", "finish", "Success", ("finishes", "rebuild")),
                                  ("event", "start", None), ("event", "finish", "Error", ("finishes", "rebuild"))]
