"""Scheduler logic: what Placement is asked, which hosts filters keep, how weighers order them."""
import uuid

import pytest

from kilonova.compute.scheduler.filters.availability_zone import AvailabilityZoneFilter
from kilonova.compute.scheduler.filters.compute import ComputeFilter
from kilonova.compute.scheduler.filters.image_properties import ImagePropertiesFilter
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.agent.resources import ProviderReporter
from kilonova.compute.scheduler.manager import (NoValidHost, SchedulerManager, candidate_query, resources_from_spec,
                                                traits_from_spec)
from kilonova.compute.scheduler.weighers import CPUWeigher, RAMWeigher, weigh_hosts
from kilonova.config import Config

FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0, "swap": 0,
          "extra_specs": {}}


def host(name, *, up=True, disabled=False, az="nova", free_ram=1000, free_cpu=10, supported=None):
    return HostState(uuid=f"uuid-{name}", host=name, nodename=name, cell_uuid="cell1", availability_zone=az,
                     service_up=up, service_disabled=disabled,
                     supported_instances=supported if supported is not None else [("x86_64", "fake", "hvm")],
                     capacity={"MEMORY_MB": 10000, "VCPU": 100}, used={"MEMORY_MB": 10000 - free_ram,
                                                                       "VCPU": 100 - free_cpu})


@pytest.fixture
def conf(tmp_path):
    return Config.load(state_dir=tmp_path)


def test_resources_include_ephemeral_and_swap_and_overrides():
    flavor = dict(FLAVOR, root_gb=10, ephemeral_gb=5, swap=1500,
                  extra_specs={"resources:VCPU": "0", "resources:CUSTOM_FPGA": "2"})
    assert resources_from_spec({"flavor": flavor}) == {"MEMORY_MB": 512, "DISK_GB": 17, "CUSTOM_FPGA": 2}


def test_dedicated_cpus_are_asked_for_as_pcpu():
    dedicated = dict(FLAVOR, vcpus=2, extra_specs={"hw:cpu_policy": "dedicated"})
    assert resources_from_spec({"flavor": dedicated}) == {"PCPU": 2, "MEMORY_MB": 512, "DISK_GB": 1}
    from_image = {"flavor": FLAVOR, "image": {"properties": {"hw_cpu_policy": "dedicated"}}}
    assert resources_from_spec(from_image)["PCPU"] == 1 and "VCPU" not in resources_from_spec(from_image)
    shared = dict(FLAVOR, extra_specs={"hw:cpu_policy": "shared"})
    assert resources_from_spec({"flavor": shared})["VCPU"] == 1


def test_traits_from_flavor_and_image():
    spec = {"flavor": dict(FLAVOR, extra_specs={"trait:HW_CPU_X86_AVX2": "required",
                                                "trait:COMPUTE_STATUS_DISABLED": "forbidden"}),
            "image": {"properties": {"trait:CUSTOM_GOLD": "required", "hw_disk_bus": "virtio"}}}
    assert traits_from_spec(spec) == ["!COMPUTE_STATUS_DISABLED", "CUSTOM_GOLD", "HW_CPU_X86_AVX2"]


def test_compute_filter_rejects_down_and_disabled(conf):
    flt = ComputeFilter(conf)
    assert flt.host_passes(host("a"), {})
    assert not flt.host_passes(host("b", up=False), {})
    assert not flt.host_passes(host("c", disabled=True), {})


def test_availability_zone_filter(conf):
    flt = AvailabilityZoneFilter(conf)
    assert flt.host_passes(host("a", az="nova"), {"availability_zone": "nova"})
    assert not flt.host_passes(host("a", az="nova"), {"availability_zone": "zone2"})
    assert flt.host_passes(host("a", az="zone2"), {"availability_zone": None})


def test_image_properties_filter(conf):
    flt = ImagePropertiesFilter(conf)
    arm = {"image": {"properties": {"hw_architecture": "aarch64"}}}
    x86 = {"image": {"properties": {"hw_architecture": "x86_64", "img_hv_type": "fake"}}}
    assert not flt.host_passes(host("a"), arm)
    assert flt.host_passes(host("a"), x86)
    assert flt.host_passes(host("a"), {"image": {"properties": {}}})
    assert not flt.host_passes(host("a", supported=[]), x86)


def test_weighers_spread_by_default_and_stack_with_negative_multiplier(conf):
    hosts = [host("small", free_ram=100), host("big", free_ram=5000), host("mid", free_ram=2000)]
    assert [h.host for h in weigh_hosts([RAMWeigher(conf)], hosts, {})] == ["big", "mid", "small"]
    conf.set("filter_scheduler", "ram_weight_multiplier", "-1.0")
    assert [h.host for h in weigh_hosts([RAMWeigher(conf)], hosts, {})] == ["small", "mid", "big"]


def test_weighers_combine_with_multipliers(conf):
    conf.set("filter_scheduler", "cpu_weight_multiplier", "10.0")
    hosts = [host("ram-rich", free_ram=5000, free_cpu=1), host("cpu-rich", free_ram=100, free_cpu=90)]
    assert weigh_hosts([RAMWeigher(conf), CPUWeigher(conf)], hosts, {})[0].host == "cpu-rich"


def test_no_valid_host_explains_which_filter_removed_hosts(conf):
    manager = SchedulerManager(conf, placement=None, cells=None)
    hosts = [host("a", up=False), host("b", disabled=True), host("c", az="other")]
    with pytest.raises(NoValidHost) as info:
        manager._filter(hosts, {"availability_zone": "zone3"}, {"VCPU": 1})
    message = str(info.value)
    assert "Placement found 3 host(s) with VCPU:1" in message
    assert "ComputeFilter removed 2 of 3 hosts" in message
    assert "AvailabilityZoneFilter removed 1 of 1 hosts" in message
    kept = manager._filter(hosts[2:], {"availability_zone": "other"}, {"VCPU": 1})
    assert [h.host for h in kept] == ["c"]


# ---------------------------------------------------------------- claims, against the real Placement app

class _Placement:
    """The scheduler's Placement client, talking to the real Placement ASGI app (SQLite)."""

    def __init__(self, http):
        self.http = http

    async def get(self, path, **kw):
        return await self.http.get(path, **kw)

    async def put(self, path, **kw):
        return await self.http.put(path, **kw)


@pytest.fixture
async def placement(tmp_path):
    import httpx

    from kilonova.common.clients import Endpoints
    from kilonova.common.service import ServiceEnv
    from kilonova.common.testing import FakeValidator
    from kilonova.placement.service import PlacementService

    svc = PlacementService(ServiceEnv(conf=Config.load(state_dir=tmp_path / "placement"), endpoints=Endpoints(),
                                      transport=None),
                           validator=FakeValidator({"scheduler-token": ("scheduler", "service", ["service"])}))
    svc.prepare()
    headers = {"X-Auth-Token": "scheduler-token", "OpenStack-API-Version": "placement 1.36"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://placement",
                                 headers=headers) as http:
        yield _Placement(http)
    svc.db.close()


async def _host_with_memory(placement, name, memory_mb):
    created = await placement.http.post("/resource_providers", json={"name": name})
    assert created.status_code == 200, created.text
    provider = created.json()
    response = await placement.put(f"/resource_providers/{provider['uuid']}/inventories", json={
        "resource_provider_generation": provider["generation"],
        "inventories": {"MEMORY_MB": {"total": memory_mb}}})
    assert response.status_code == 200, response.text
    return HostState(uuid=provider["uuid"], host=name, nodename=name, cell_uuid="cell1", availability_zone="nova",
                     service_up=True, service_disabled=False,
                     allocation_request={"allocations": {provider["uuid"]: {"resources": {"MEMORY_MB": 512}}}})


async def _claims_of(placement, consumer):
    return (await placement.get(f"/allocations/{consumer}")).json()["allocations"]


INST_1, INST_2, OWNER = (str(uuid.UUID(int=n)) for n in (1, 2, 3))
SPEC = {"project_id": "p1", "user_id": "u1", "flavor": FLAVOR}


async def test_a_retried_claim_keeps_or_moves_the_instance_s_earlier_claim(conf, placement):
    """A dead conductor's claim is still there when the build is scheduled again: it moves, never doubles."""
    first = await _host_with_memory(placement, "first", 1024)
    second = await _host_with_memory(placement, "second", 1024)
    manager = SchedulerManager(conf, placement=placement, cells=None)
    assert await manager._claim_first([first], INST_1, SPEC) is first
    # Scheduled again with the held host among those that fit: the claim is kept, the answer is that host.
    assert await manager._claim_first([second, first], INST_1, SPEC) is first
    assert list(await _claims_of(placement, INST_1)) == [first.uuid]
    # The held host no longer fits (filtered out): the claim moves in one swap.
    assert await manager._claim_first([second], INST_1, SPEC) is second
    assert list(await _claims_of(placement, INST_1)) == [second.uuid]
    for provider, used in ((first, 0), (second, 512)):
        usages = (await placement.get(f"/resource_providers/{provider.uuid}/usages")).json()["usages"]
        assert usages["MEMORY_MB"] == used


async def test_a_retried_claim_never_overcommits_a_full_host(conf, placement):
    full = await _host_with_memory(placement, "full", 512)
    other = await _host_with_memory(placement, "other", 512)
    manager = SchedulerManager(conf, placement=placement, cells=None)
    assert await manager._claim_first([full], OWNER, SPEC) is full
    assert await manager._claim_first([other], INST_2, SPEC) is other
    # inst-2 retried: the full host refuses it, and its earlier claim stays where it was.
    assert await manager._claim_first([full], INST_2, SPEC) is None
    assert list(await _claims_of(placement, INST_2)) == [other.uuid]
    assert list(await _claims_of(placement, OWNER)) == [full.uuid]


async def test_only_a_host_with_a_dedicated_cpu_set_offers_pinned_guests(conf, placement):
    """The libvirt host's report (PCPU from [compute] cpu_dedicated_set) against the scheduler's query."""
    reporter = ProviderReporter(placement, conf)
    hosts = {"pinning": {"vcpus": 2, "pcpus": 2}, "shared-only": {"vcpus": 4, "pcpus": 0},
             "all-dedicated": {"vcpus": 0, "pcpus": 4}}
    names = {}
    for name, cpu in hosts.items():
        created = (await placement.http.post("/resource_providers", json={"name": name})).json()
        inventory = reporter.inventory({**cpu, "memory_mb": 4096, "local_gb": 20})
        response = await placement.put(f"/resource_providers/{created['uuid']}/inventories", json={
            "resource_provider_generation": created["generation"], "inventories": inventory})
        assert response.status_code == 200, response.text
        names[created["uuid"]] = name

    async def hosts_for(extra_specs: dict, vcpus: int = 1) -> set[str]:
        spec = {"flavor": dict(FLAVOR, vcpus=vcpus, extra_specs=extra_specs)}
        response = await placement.get("/allocation_candidates",
                                       params=candidate_query(spec, resources_from_spec(spec), 100))
        return {names[uuid] for uuid in response.json()["provider_summaries"]}

    assert await hosts_for({"hw:cpu_policy": "dedicated"}, vcpus=2) == {"pinning", "all-dedicated"}
    assert await hosts_for({"hw:cpu_policy": "dedicated"}, vcpus=3) == {"all-dedicated"}
    assert await hosts_for({}) == {"pinning", "shared-only"}  # a host of dedicated CPUs only has no VCPU


def test_no_valid_host_says_when_the_only_candidates_are_excluded_hosts():
    manager = SchedulerManager.__new__(SchedulerManager)

    async def only_the_source(spec, resources, trace=None):
        return [type("Host", (), {"host": "compute1"})()]

    manager._candidates = only_the_source
    spec = {"flavor": {"vcpus": 1, "memory_mb": 512, "root_gb": 1}}
    with pytest.raises(NoValidHost) as raised:
        import asyncio

        asyncio.run(manager.select_destinations(spec, ["u1"], ignore_hosts=["compute1"]))
    assert str(raised.value) == ("No valid host was found. Placement found 1 host(s) with DISK_GB:1, MEMORY_MB:512, "
                                 "VCPU:1, none other than compute1, which the request excludes.")
