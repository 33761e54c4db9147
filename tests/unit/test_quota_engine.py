"""The compute quota engine: the driver names, the atomic record of a create (a create whose room another
took since its check is refused, also when the other create was recorded by another API process), counting
each server once, and the unified limits driver's enforcement rules and conversion to quota-sets names."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from kilonova.common.http import HTTPError
from kilonova.compute import quota
from kilonova.compute.db import build_requests, instances, quota_counts, quotas
from kilonova.compute.db.api_models import BuildRequest
from kilonova.compute.quota import claims, counting
from kilonova.compute.quota.unified import Limits, OverLimit, UnifiedLimitsDriver
from kilonova.config import Config, ConfigError
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture

SMALL = {"vcpus": 1, "memory_mb": 512, "root_gb": 1}


def _instance(project: str = "p1") -> dict:
    return {"uuid": str(uuid.uuid4()), "project_id": project, "user_id": "u", "vm_state": "active",
            "flavor": SMALL, "created_at": "2026-12-07T01:00:00"}


def _pending(stub) -> int:  # noqa: F811
    return stub.api_db.run_sync(lambda s: s.scalar(sa.select(sa.func.count(BuildRequest.id))), write=False)


@pytest.mark.parametrize("value, name", [
    ("nova.quota.DbQuotaDriver", "db"), ("db", "db"), ("nova.quota.UnifiedLimitsDriver", "unified_limits"),
    ("unified_limits", "unified_limits"), ("nova.quota.NoopQuotaDriver", "noop")])
def test_driver_names(tmp_path, value, name):
    assert quota.driver_name(Config.load(state_dir=tmp_path, overrides={"quota": {"driver": value}})) == name


def test_an_unknown_driver_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="nova.quota.UnifiedLimitsDriver"):
        quota.driver_name(Config.load(state_dir=tmp_path, overrides={"quota": {"driver": "nova.quota.Other"}}))


async def test_a_create_whose_room_was_taken_since_its_check_is_refused(stub):  # noqa: F811
    stub.api_db.run_sync(quotas.set_limits, "p1", {"instances": 1})
    first, second = _instance(), _instance()
    # both pass the check before anything is prepared...
    assert await claims.allowed(stub, "p1", SMALL, False, 1, 1) == 1
    assert await claims.allowed(stub, "p1", SMALL, False, 1, 1) == 1
    await claims.record(stub, "p1", SMALL, False, 1, build_requests.create, first, {})
    # ... only one is recorded
    with pytest.raises(HTTPError) as refused:
        await claims.record(stub, "p1", SMALL, False, 1, build_requests.create, second, {})
    assert refused.value.status == 403
    assert str(refused.value) == "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"
    assert _pending(stub) == 1


async def test_a_create_recorded_by_another_process_in_between_is_counted(stub, monkeypatch):  # noqa: F811
    """The generation read with the count must still be the project's when the build requests are written:
    another API process's create recorded in between makes the count be done again."""
    stub.api_db.run_sync(quotas.set_limits, "p1", {"instances": 1})
    real_snapshot = counting.snapshot
    calls = []

    async def snapshot_then_another_process_records(svc, project_id):
        taken = await real_snapshot(svc, project_id)
        if not calls:   # the other process: its build request and its generation step, after our count
            other = _instance()
            svc.api_db.run_sync(lambda s: (build_requests.create(s, other, {}),
                                           quota_counts.advance(s, project_id, taken.generation)))
        calls.append(taken.generation)
        return taken

    monkeypatch.setattr(counting, "snapshot", snapshot_then_another_process_records)
    with pytest.raises(HTTPError) as refused:
        await claims.record(stub, "p1", SMALL, False, 1, build_requests.create, _instance(), {})
    assert refused.value.status == 403 and calls == [0, 1]
    assert _pending(stub) == 1


async def test_servers_no_limit_bounds_are_not_counted(stub, monkeypatch):  # noqa: F811
    """Unlimited instances, cores and ram: nothing is counted (nothing could refuse), the build requests are
    written all the same; one bounded resource and the count is back."""
    stub.api_db.run_sync(quotas.set_limits, "p1", {"instances": -1, "cores": -1, "ram": -1})
    counted = []
    real_snapshot = counting.snapshot

    async def counting_snapshot(svc, project_id):
        counted.append(project_id)
        return await real_snapshot(svc, project_id)

    monkeypatch.setattr(counting, "snapshot", counting_snapshot)
    assert await claims.allowed(stub, "p1", SMALL, False, 1, 5) == 5
    await claims.record(stub, "p1", SMALL, False, 1, build_requests.create, _instance(), {})
    assert counted == [] and _pending(stub) == 1
    stub.api_db.run_sync(quotas.set_limits, "p1", {"ram": 100_000})
    assert await claims.allowed(stub, "p1", SMALL, False, 1, 5) == 5
    assert counted == ["p1"]


def test_a_stale_generation_does_not_advance(stub):  # noqa: F811
    taken = stub.api_db.run_sync(quota_counts.snapshot, "p1", write=False)
    stub.api_db.run_sync(quota_counts.advance, "p1", taken.generation)
    with pytest.raises(quota_counts.GenerationMoved):
        stub.api_db.run_sync(quota_counts.advance, "p1", taken.generation)
    assert stub.api_db.run_sync(quota_counts.snapshot, "p1", write=False).generation == 1


async def test_a_server_moving_to_its_cell_counts_once(stub):  # noqa: F811
    """Written to its cell before its build request goes: while both exist it is counted as a build request."""
    moving = _instance()
    stub.api_db.run_sync(build_requests.create, moving, {})
    stub.cells.default.db.run_sync(instances.create, moving)
    stub.cells.default.db.run_sync(instances.create, _instance())
    snap = await counting.snapshot(stub, "p1")
    assert snap.servers == 1   # instance mappings: the build request's only (this stub made no other)
    assert await counting.from_cells(stub, "p1", snap) == {"instances": 2, "cores": 2, "ram": 1024}


def _unified(tmp_path, **options) -> UnifiedLimitsDriver:
    conf = Config.load(state_dir=tmp_path, overrides={"quota": {"driver": "unified_limits", **options}})
    return UnifiedLimitsDriver(SimpleNamespace(conf=conf, identity=None, placement=SimpleNamespace(auth=None)))


def test_unified_enforcement_rules(tmp_path):
    """Nova's should_enforce: an explicit positive or zero limit always refuses; a resource with no limit
    at all refuses only as the strategy and list say."""
    driver = _unified(tmp_path)   # require, [servers]
    none = Limits(registered={}, project={})
    assert driver.enforced([OverLimit("servers", 0, 0, 1)], none)
    assert not driver.enforced([OverLimit("class:VCPU", 0, 0, 1)], none)
    assert driver.enforced([OverLimit("class:VCPU", 0, 0, 1)], Limits({"class:VCPU": 0}, {}))
    assert driver.enforced([OverLimit("class:VCPU", 4, 4, 1)], none)
    assert not driver.enforced([OverLimit("class:VCPU", -1, 4, 1)], none)
    ignoring = _unified(tmp_path, unified_limits_resource_strategy="ignore",
                        unified_limits_resource_list="class:DISK_GB")
    assert ignoring.enforced([OverLimit("class:VCPU", 0, 0, 1)], none)
    assert not ignoring.enforced([OverLimit("class:DISK_GB", 0, 0, 1)], none)


def test_unified_limits_in_quota_sets_names(tmp_path):
    limits = Limits(registered={"servers": 20, "class:VCPU": 40, "server_key_pairs": 5},
                    project={"servers": 10})
    shown = UnifiedLimitsDriver._legacy(limits)
    assert shown["instances"] == 10 and shown["cores"] == 40 and shown["key_pairs"] == 5
    assert shown["ram"] == 0 and shown["metadata_items"] == 0      # no limit: 0, as upstream shows it
    assert shown["floating_ips"] == -1 and shown["security_group_rules"] == -1
    assert str(OverLimit("servers", 10, 10, 1)) == \
        "Resource servers is over limit of 10 due to current usage 10 and delta 1"


def _placement(usages: dict, allocated: set[str]):
    import httpx

    def answer(request):
        if request.url.path == "/usages":
            return httpx.Response(200, json={"usages": usages})
        consumer = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"allocations": {"rp": {"resources": {"VCPU": 1}}}
                                         if consumer in allocated else {}})
    return httpx.AsyncClient(base_url="http://placement", transport=httpx.MockTransport(answer))


async def test_counting_from_placement_adds_unclaimed_build_requests_once(tmp_path, monkeypatch):
    """[quota] count_usage_from_placement: cores from Placement's usages plus the build requests that hold no
    allocation yet; one that has been claimed already is not counted twice."""
    from tests.unit.test_compute_admin_harness import StubComputeAPI

    svc = StubComputeAPI(tmp_path, {"quota": {"count_usage_from_placement": "true"}})
    try:
        svc.api_db.run_sync(quotas.set_limits, "p1", {"cores": 5})
        claimed = _instance()
        svc.api_db.run_sync(build_requests.create, claimed, {})
        svc.placement = _placement({"VCPU": 4, "MEMORY_MB": 2048}, allocated=set())
        # 4 in Placement + 1 pending unclaimed = 5 of 5: no room
        with pytest.raises(HTTPError) as refused:
            await claims.allowed(svc, "p1", SMALL, False, 1, 1)
        assert "Quota exceeded for cores: Requested 1, but already used 5 of 5 cores" in str(refused.value)
        # once Placement holds its claim (among the 4), it is not counted again: room for one
        svc.placement = _placement({"VCPU": 4, "MEMORY_MB": 2048}, allocated={claimed["uuid"]})
        assert await claims.allowed(svc, "p1", SMALL, False, 1, 1) == 1
        assert (await quota.driver(svc).usage("p1"))["instances"] == 1   # instance mappings
    finally:
        svc.close()


class _FakeAuth:
    async def token(self, refresh: bool = False) -> str:
        return "service-token"


def _keystone(registered: list[dict], limits: list[dict]):
    import httpx

    def answer(request):
        if request.url.path == "/v3/services":
            return httpx.Response(200, json={"services": [{"id": "nova-id", "type": "compute"}]})
        if request.url.path == "/v3/registered_limits":
            return httpx.Response(200, json={"registered_limits": registered})
        assert request.url.params["project_id"] == "p1" and request.url.params["service_id"] == "nova-id"
        return httpx.Response(200, json={"limits": limits})
    return httpx.AsyncClient(base_url="http://identity", transport=httpx.MockTransport(answer))


def _limit(resource: str, value: int, region: str | None = None, key: str = "default_limit") -> dict:
    return {"resource_name": resource, key: value, "region_id": region}


async def test_unified_limits_from_keystone(tmp_path):  # noqa: F811
    """The API's region before no region, a project's limit before the registered one; max_count lowered to
    what fits; a resize's growth and an unshelve checked against the classes."""
    from tests.unit.test_compute_admin_harness import StubComputeAPI

    svc = StubComputeAPI(tmp_path, {"quota": {"driver": "unified_limits"}})
    try:
        svc.identity = _keystone(
            [_limit("servers", 4), _limit("servers", 6, "RegionOne"), _limit("servers", 9, "Elsewhere"),
             _limit("class:VCPU", 8), _limit("server_key_pairs", 2)],
            [_limit("class:VCPU", 5, key="resource_limit"), _limit("server_key_pairs", 50, key="resource_limit")])
        svc.placement = SimpleNamespace(get=_placement({"VCPU": 3, "MEMORY_MB": 1024}, set()).get, auth=_FakeAuth())
        driver = quota.driver(svc)
        shown = await driver.limits("p1")
        assert shown["instances"] == 6 and shown["cores"] == 5
        assert shown["key_pairs"] == 2          # Nova checks key pairs with no project: the registered limit
        snap = await counting.snapshot(svc, "p1")
        assert await driver.servers_that_fit("p1", SMALL, False, 1, 4, snap) == 2   # 3 of 5 vCPUs used
        with pytest.raises(HTTPError) as refused:
            await driver.servers_that_fit("p1", {**SMALL, "vcpus": 3}, False, 1, 1, snap)
        # oslo.limit lists every resource over its limit, those with none (0) too: class:VCPU refuses
        assert str(refused.value) == (
            "Project p1 is over a limit for [Resource class:DISK_GB is over limit of 0 due to current usage 0 and "
            "delta 1, Resource class:MEMORY_MB is over limit of 0 due to current usage 1024 and delta 512, "
            "Resource class:VCPU is over limit of 5 due to current usage 3 and delta 3]")
        await driver.check_growth("p1", {"cores": 2, "ram": 4096})   # class:MEMORY_MB has no limit: not enforced
        with pytest.raises(HTTPError) as refused:
            await driver.check_growth("p1", {"cores": 3})
        assert str(refused.value).endswith("[Resource class:VCPU is over limit of 5 due to current usage 3 and "
                                           "delta 3]")
        with pytest.raises(HTTPError):
            await driver.check_unshelve("p1", {**SMALL, "vcpus": 4}, False)
    finally:
        svc.close()
