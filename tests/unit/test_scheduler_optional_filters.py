"""The hint filters (SameHost, DifferentHost, Json) and the optional filters (aggregate metadata, compute
capabilities) on real scheduler host states, each with how its rejection is explained."""
import json

import pytest

from kilonova.compute.scheduler.filters import all_filters
from kilonova.compute.scheduler.filters.extra_specs_ops import match
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager
from kilonova.config import Config

CPU_INFO = json.dumps({"arch": "x86_64", "model": "fake", "features": ["vmx"]})


def host(name, free_ram=1000, vcpus_used=0, aggregates=None, hv="fake"):
    return HostState(uuid=f"uuid-{name}", host=name, nodename=name, cell_uuid="cell1", availability_zone="nova",
                     service_up=True, service_disabled=False, hypervisor_type=hv, cpu_info=CPU_INFO,
                     capacity={"MEMORY_MB": 4096, "VCPU": 8, "DISK_GB": 100},
                     used={"MEMORY_MB": 4096 - free_ram, "VCPU": vcpus_used, "DISK_GB": 10},
                     aggregates=aggregates or {})


@pytest.fixture
def conf(tmp_path):
    return Config.load(state_dir=tmp_path)


def flt(conf, name):
    return all_filters()[name](conf)


def test_the_hint_filters_and_compute_capabilities_are_enabled_by_default(conf):
    enabled = conf.getlist("filter_scheduler", "enabled_filters")
    for name in ("ComputeCapabilitiesFilter", "SameHostFilter", "DifferentHostFilter", "JsonFilter"):
        assert name in enabled
    assert "AggregateMultiTenancyIsolation" not in enabled   # optional: the operator enables it


@pytest.mark.parametrize("value, requirement, expected", [
    ("4096", "= 2048", True), ("1024", "= 2048", False), ("4", "== 4", True), ("4", "!= 4", False),
    ("QEMU", "s== QEMU", True), ("QEMU", "s!= QEMU", False), ("abc", "<in> b", True),
    ("vmx sse", "<all-in> vmx sse", True), ("vmx", "<all-in> vmx sse", False),
    ("b", "<or> a <or> b", True), ("c", "<or> a <or> b", False), ("x86_64", "x86_64", True),
    ("fast", ">= 2", False),   # not a number: no match, never an error
], ids=lambda v: str(v))
def test_extra_spec_operators(value, requirement, expected):
    assert match(value, requirement) is expected


def test_same_host_and_different_host(conf):
    same, different = flt(conf, "SameHostFilter"), flt(conf, "DifferentHostFilter")
    spec = {"scheduler_hints": {"same_host": ["s1"], "different_host": "s1"}, "hint_hosts": {
        "same_host": {"a"}, "different_host": {"a"}}}
    assert same.host_passes(host("a"), spec) and not same.host_passes(host("b"), spec)
    assert different.host_passes(host("b"), spec) and not different.host_passes(host("a"), spec)
    # A server on no host (unknown or not placed): no host holds it.
    unplaced = {"scheduler_hints": {"same_host": "s9", "different_host": ["s9"]}, "hint_hosts": {}}
    assert not same.host_passes(host("a"), unplaced) and different.host_passes(host("a"), unplaced)
    assert same.host_passes(host("a"), {}) and different.host_passes(host("a"), {})
    assert same.explain(spec) == "holds none of the servers s1 (same_host hint)"
    assert different.explain(spec) == "holds one of the servers s1 (different_host hint)"


@pytest.mark.parametrize("query, passes_a", [
    ([">=", "$free_ram_mb", 2048], True),
    (["<", "$free_ram_mb", 2048], False),
    (["and", [">=", "$free_ram_mb", 1024], ["<=", "$vcpus_used", 2]], True),
    (["or", ["=", "$host", "b"], ["in", "$hypervisor_type", "QEMU", "fake"]], True),
    (["not", ["=", "$host", "a"]], False),
    (["=", "$cpu_info.arch", "x86_64"], True),
    ([">=", "$no_such_thing", 1], False),     # the variable resolves to nothing: one argument left is false
    ([], True),
], ids=lambda v: json.dumps(v))
def test_json_filter_operators(conf, query, passes_a):
    spec = {"scheduler_hints": {"query": json.dumps(query)}}
    assert flt(conf, "JsonFilter").host_passes(host("a", free_ram=3000, vcpus_used=1), spec) is passes_a


def test_json_filter_explains_a_false_and_a_broken_query(conf):
    json_filter = flt(conf, "JsonFilter")
    assert json_filter.explain({"scheduler_hints": {"query": '[">=", "$free_ram_mb", 99999]'}}) == \
        'the query hint is false for it: [">=", "$free_ram_mb", 99999]'
    broken = {"scheduler_hints": {"query": '["~", "$host", "a"]'}}
    assert not json_filter.host_passes(host("a"), broken)
    assert "unknown operator '~'" in json_filter.explain(broken)
    assert "not JSON" in json_filter.explain({"scheduler_hints": {"query": "[>="}})


def test_aggregate_instance_extra_specs(conf):
    aggregate = flt(conf, "AggregateInstanceExtraSpecsFilter")
    ssd = host("a", aggregates={"ssd": {"true"}, "speed": {"3"}})
    plain = host("b")
    spec = {"flavor": {"extra_specs": {"aggregate_instance_extra_specs:ssd": "true", "speed": ">= 2",
                                       "hw:cpu_policy": "shared", "resources:VCPU": "1"}}}
    assert aggregate.host_passes(ssd, spec) and not aggregate.host_passes(plain, spec)
    assert aggregate.host_passes(plain, {"flavor": {"extra_specs": {"hw:cpu_policy": "shared"}}})
    assert aggregate.explain(spec) == ("its aggregates' metadata do not match the flavor's extra specs "
                                       "(ssd=true, speed=>= 2)")


def test_aggregate_multi_tenancy_isolation(conf):
    tenancy = flt(conf, "AggregateMultiTenancyIsolation")
    kept = host("a", aggregates={"filter_tenant_id": {"p1", "p2"}, "filter_tenant_id2": {"p3"}})
    assert tenancy.host_passes(kept, {"project_id": "p3"})
    assert not tenancy.host_passes(kept, {"project_id": "p4"})
    assert tenancy.host_passes(host("b"), {"project_id": "p4"})   # not isolated: anyone
    assert "project p4 is not among them" in tenancy.explain({"project_id": "p4"})


def test_aggregate_image_properties_isolation_and_its_namespace(conf):
    isolation = flt(conf, "AggregateImagePropertiesIsolation")
    windows = host("a", aggregates={"os_distro": {"windows"}, "other.os_type": {"linux"}})
    linux = {"image": {"properties": {"os_distro": "ubuntu"}}}
    assert not isolation.host_passes(windows, linux)
    assert isolation.host_passes(windows, {"image": {"properties": {"os_distro": "windows"}}})
    assert isolation.host_passes(windows, {"image": {"properties": {}}})   # the image says nothing
    conf.set("filter_scheduler", "aggregate_image_properties_isolation_namespace", "other")
    assert flt(conf, "AggregateImagePropertiesIsolation").host_passes(windows, linux)   # os_distro not in it
    assert not flt(conf, "AggregateImagePropertiesIsolation").host_passes(
        windows, {"image": {"properties": {"other.os_type": "windows"}}})


def test_compute_capabilities(conf):
    caps = flt(conf, "ComputeCapabilitiesFilter")
    qemu, fake = host("a", hv="QEMU"), host("b")
    spec = {"flavor": {"extra_specs": {"capabilities:hypervisor_type": "s== QEMU",
                                       "capabilities:cpu_info:arch": "x86_64", "hw:mem_page_size": "large"}}}
    assert caps.host_passes(qemu, spec) and not caps.host_passes(fake, spec)
    assert not caps.host_passes(qemu, {"flavor": {"extra_specs": {"capabilities:cpu_info:nothing": "x"}}})
    assert caps.host_passes(fake, {"flavor": {"extra_specs": {"free_ram_mb": "= 512"}}})   # unscoped attribute
    assert not caps.host_passes(fake, {"flavor": {"extra_specs": {"free_ram_mb": "= 5120"}}})
    assert "capabilities:hypervisor_type=s== QEMU" in caps.explain(spec)


def test_no_valid_host_names_the_hint_filter_and_its_servers(conf):
    """The scheduler's own filter pass: the explanation an admin reads in the fault."""
    manager = SchedulerManager.__new__(SchedulerManager)
    manager.filters = [flt(conf, "ComputeFilter"), flt(conf, "SameHostFilter")]
    spec = {"scheduler_hints": {"same_host": "s1"}, "hint_hosts": {"same_host": {"c"}}}
    with pytest.raises(NoValidHost) as error:
        manager._filter([host("a"), host("b")], spec, {"MEMORY_MB": 512})
    assert "SameHostFilter removed 2 of 2 hosts (holds none of the servers s1 (same_host hint))" in str(error.value)


def test_an_unknown_filter_name_stops_the_scheduler(conf):
    conf.set("filter_scheduler", "enabled_filters", "ComputeFilter,AggregateMultiTenancyIsolaton")
    with pytest.raises(ValueError, match="Scheduler Host Filter AggregateMultiTenancyIsolaton could not be found."):
        SchedulerManager(conf, placement=None, cells=None)


def test_filters_a_request_asks_nothing_of_are_skipped(conf):
    plain = {"flavor": {"extra_specs": {"hw:cpu_policy": "shared"}}, "scheduler_hints": {}}
    for name in ("SameHostFilter", "DifferentHostFilter", "JsonFilter", "ComputeCapabilitiesFilter",
                 "AggregateInstanceExtraSpecsFilter"):
        assert not flt(conf, name).applies(plain), name
    assert flt(conf, "JsonFilter").applies({"scheduler_hints": {"query": '["=", "$host", "a"]'}})
    assert flt(conf, "ComputeCapabilitiesFilter").applies({"flavor": {"extra_specs": {"capabilities:x": "y"}}})
    assert flt(conf, "AggregateInstanceExtraSpecsFilter").applies({"flavor": {"extra_specs": {"ssd": "true"}}})


def test_a_query_nested_past_any_sense_removes_every_host_and_says_why(conf):
    json_filter = flt(conf, "JsonFilter")
    deep = {"scheduler_hints": {"query": '["not", ' * 5000 + '["=", "$host", "a"]' + "]" * 5000}}
    assert not json_filter.host_passes(host("a"), deep)
    assert json_filter.explain(deep) == "the query hint is nested too deeply"
    assert not json_filter.host_passes(host("a"), {"scheduler_hints": {"query": {"not": "a list"}}})
