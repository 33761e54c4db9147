"""Scheduler logic: what Placement is asked, which hosts filters keep, how weighers order them."""
import pytest

from kilonova.compute.scheduler.filters.availability_zone import AvailabilityZoneFilter
from kilonova.compute.scheduler.filters.compute import ComputeFilter
from kilonova.compute.scheduler.filters.image_properties import ImagePropertiesFilter
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager, resources_from_spec, traits_from_spec
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
