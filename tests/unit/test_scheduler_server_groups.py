"""The server-group filters and weighers: hard affinity / anti-affinity (with max_server_per_host) and
the soft policies' weights, and how a rejection is explained."""
import pytest

from kilonova.compute.scheduler.filters.server_group import ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.weighers import RAMWeigher, weigh_hosts
from kilonova.compute.scheduler.weighers.server_group import (ServerGroupSoftAffinityWeigher,
                                                              ServerGroupSoftAntiAffinityWeigher)
from kilonova.config import Config


def host(name, free_ram=1000):
    return HostState(uuid=f"uuid-{name}", host=name, nodename=name, cell_uuid="cell1", availability_zone="nova",
                     service_up=True, service_disabled=False, capacity={"MEMORY_MB": 10000},
                     used={"MEMORY_MB": 10000 - free_ram})


def spec(policy, hosts, rules=None):
    return {"instance_group": {"uuid": "g-1", "policy": policy, "rules": rules or {}, "hosts": hosts}}


@pytest.fixture
def conf(tmp_path):
    return Config.load(state_dir=tmp_path)


def test_filters_pass_everything_without_a_group_or_with_another_policy(conf):
    for flt in (ServerGroupAffinityFilter(conf), ServerGroupAntiAffinityFilter(conf)):
        assert flt.host_passes(host("a"), {})
        assert flt.host_passes(host("a"), spec("soft-affinity", {"a": ["m1"], "b": ["m2"]}))


def test_affinity_keeps_the_members_host_and_a_new_group_goes_anywhere(conf):
    flt = ServerGroupAffinityFilter(conf)
    assert flt.host_passes(host("a"), spec("affinity", {}))
    assert flt.host_passes(host("a"), spec("affinity", {"a": ["m1"]}))
    assert not flt.host_passes(host("b"), spec("affinity", {"a": ["m1"]}))


def test_anti_affinity_one_per_host_unless_the_rules_allow_more(conf):
    flt = ServerGroupAntiAffinityFilter(conf)
    assert flt.host_passes(host("a"), spec("anti-affinity", {}))
    assert not flt.host_passes(host("a"), spec("anti-affinity", {"a": ["m1"]}))
    assert flt.host_passes(host("b"), spec("anti-affinity", {"a": ["m1"]}))
    two = {"max_server_per_host": 2}
    assert flt.host_passes(host("a"), spec("anti-affinity", {"a": ["m1"]}, two))
    assert not flt.host_passes(host("a"), spec("anti-affinity", {"a": ["m1", "m2"]}, two))


def test_rejections_name_the_group(conf):
    assert "server group g-1" in ServerGroupAntiAffinityFilter(conf).explain(spec("anti-affinity", {}))
    assert "affinity server group" in ServerGroupAffinityFilter(conf).explain(spec("affinity", {}))


def test_soft_affinity_prefers_the_host_with_more_members_over_free_ram(conf):
    hosts = [host("roomy", free_ram=9000), host("crowded", free_ram=100), host("empty", free_ram=5000)]
    conf.set("filter_scheduler", "soft_affinity_weight_multiplier", "10")
    weighers = [RAMWeigher(conf), ServerGroupSoftAffinityWeigher(conf)]
    ordered = weigh_hosts(weighers, hosts, spec("soft-affinity", {"crowded": ["m1", "m2"]}))
    assert ordered[0].host == "crowded"
    # Without a group the soft weigher is silent: free RAM decides.
    assert weigh_hosts(weighers, hosts, {})[0].host == "roomy"


def test_soft_anti_affinity_prefers_the_host_with_fewest_members(conf):
    hosts = [host("a", free_ram=9000), host("b", free_ram=100), host("c", free_ram=5000)]
    conf.set("filter_scheduler", "soft_anti_affinity_weight_multiplier", "10")
    weighers = [RAMWeigher(conf), ServerGroupSoftAntiAffinityWeigher(conf)]
    ordered = weigh_hosts(weighers, hosts, spec("soft-anti-affinity", {"a": ["m1", "m2"], "c": ["m3"]}))
    assert [h.host for h in ordered] == ["b", "c", "a"]
    # The soft anti-affinity weigher does not read an affinity group.
    assert ServerGroupSoftAntiAffinityWeigher(conf).weigh(host("a"), spec("soft-affinity", {"a": ["m1"]})) == 0
