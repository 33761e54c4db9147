"""Each weigher's direction with upstream's default multipliers, multipliers from aggregate metadata, and
host_subset_size."""
from collections import Counter

import pytest

from kilonova.compute.scheduler import weighers as weighers_mod
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.manager import SchedulerManager
from kilonova.compute.scheduler.weighers import weigh_hosts, weights
from kilonova.config import Config


def host(name, *, free_ram=1000, io=0, instances=0, failed=0, version=1000, aggregates=None, images=None):
    return HostState(uuid=name, host=name, nodename=name, cell_uuid="c1", availability_zone="nova",
                     service_up=True, service_disabled=False, capacity={"MEMORY_MB": 10000, "VCPU": 10},
                     used={"MEMORY_MB": 10000 - free_ram, "VCPU": 0}, num_io_ops=io, num_instances=instances,
                     failed_builds=failed, hypervisor_version=version, aggregates=aggregates or {},
                     instance_images=images)


@pytest.fixture
def conf(tmp_path):
    return Config.load(state_dir=tmp_path)


def every(conf):
    return [cls(conf) for cls in weighers_mod.all_weighers()]


def order(conf, hosts, spec=None):
    return [h.host for h in weigh_hosts(every(conf), hosts, spec or {})]


def test_io_ops_prefers_quiet_hosts_and_num_instances_is_off_by_default(conf):
    assert order(conf, [host("busy", io=4), host("quiet", io=0)]) == ["quiet", "busy"]
    crowded = [host("full", instances=40), host("empty", instances=0, free_ram=999)]
    assert order(conf, crowded) == ["full", "empty"]   # RAM decides: instance counts weigh 0
    conf.set("filter_scheduler", "num_instances_weight_multiplier", "-2.0")
    assert order(conf, crowded) == ["empty", "full"]


def test_a_host_whose_builds_fail_goes_last_whatever_its_room(conf):
    assert order(conf, [host("failing", free_ram=9000, failed=2), host("small", free_ram=10)]) == \
        ["small", "failing"]


def test_newer_hypervisor_versions_win_between_equal_hosts(conf):
    assert order(conf, [host("old", version=1000), host("new", version=2000)]) == ["new", "old"]
    conf.set("filter_scheduler", "hypervisor_version_weight_multiplier", "-1.0")
    assert order(conf, [host("old", version=1000), host("new", version=2000)]) == ["old", "new"]


def test_cross_cell_weigher_prefers_the_servers_cell_on_a_move(conf):
    other = host("other", free_ram=5000)
    other.cell_uuid = "c2"
    assert order(conf, [other, host("home")], {"requested_cell": "c1"}) == ["home", "other"]
    assert order(conf, [other, host("home")], {}) == ["other", "home"]


def test_image_properties_weigher_is_off_by_default_and_counts_shared_properties(conf):
    spec = {"image": {"properties": {"os_distro": "ubuntu", "hw_machine_type": "q35"}}}
    alike = host("alike", images=[{"os_distro": "ubuntu"}, {"os_distro": "ubuntu", "hw_machine_type": "q35"}],
                 free_ram=900)
    other = host("other", images=[{"os_distro": "windows"}])
    assert order(conf, [alike, other], spec) == ["other", "alike"]
    conf.set("filter_scheduler", "image_props_weight_multiplier", "2.0")
    assert order(conf, [alike, other], spec) == ["alike", "other"]
    conf.set("filter_scheduler", "image_props_weight_setting", "hw_machine_type=1")
    weigher = next(w for w in every(conf) if type(w).__name__ == "ImagePropertiesWeigher")
    assert weigher.weigh(alike, spec) == 1.0   # only the listed property counts


def test_an_aggregate_multiplier_overrides_the_configured_one_for_its_hosts(conf):
    roomy = host("roomy", free_ram=9000, aggregates={"ram_weight_multiplier": {"-2.0", "0.5"}})
    tight = host("tight", free_ram=100)
    assert order(conf, [roomy, tight]) == ["tight", "roomy"]   # the smallest value of its aggregates: -2.0
    contributions = weights(every(conf), [roomy, tight], {})["RAMWeigher"]
    assert contributions == [-2.0, 0.0]
    broken = host("roomy", free_ram=9000, aggregates={"ram_weight_multiplier": {"lots"}})
    assert order(conf, [broken, tight]) == ["roomy", "tight"]   # not a number: the configured multiplier


def test_an_aggregate_can_turn_on_a_weigher_the_configuration_leaves_off(conf):
    crowded = host("crowded", instances=9, aggregates={"num_instances_weight_multiplier": {"-5"}})
    assert order(conf, [crowded, host("empty", free_ram=10)]) == ["empty", "crowded"]


def test_host_subset_size_picks_among_the_best_few(conf):
    conf.set("filter_scheduler", "host_subset_size", "2")
    manager = SchedulerManager(conf, placement=None, cells=None)
    hosts = [host("best", free_ram=9000), host("second", free_ram=8000), host("worst", free_ram=10)]
    firsts = Counter(manager._order(hosts, {})[0].host for _ in range(200))
    assert set(firsts) == {"best", "second"}


def test_the_image_properties_of_a_hosts_instances_are_read_from_what_a_create_records(tmp_path):
    from kilonova.compute.db import host_view, instances
    from tests.unit.test_compute_admin_harness import StubComputeAPI

    stub = StubComputeAPI(tmp_path)
    try:
        def servers(session):
            for number, sysmeta in enumerate([{"image_properties": {"os_distro": "ubuntu", "hw_rng": None}},
                                              {"image_os_distro": "debian"}, {}]):
                instances.create(session, {"uuid": f"00000000-0000-4000-8000-00000000000{number}",
                                           "project_id": "p", "user_id": "u", "flavor": {}, "vm_state": "active",
                                           "host": "h1", "node": "h1", "system_metadata": sysmeta})
        stub.cells.default.db.run_sync(servers)
        found = stub.cells.default.db.run_sync(host_view.instance_image_properties)
        assert found == {"h1": [{"os_distro": "ubuntu"}, {"os_distro": "debian"}, {}]}
    finally:
        stub.close()


# ---------------------------------------------------------------- the one-pass totals are the sum of the parts

def _reference(weighers, hosts, spec):
    """Upstream's composition written out plainly: each weigher's contributions (``weights``) summed in
    weigher order, hosts sorted by total (stable: ties keep the hosts' order)."""
    totals = [0.0] * len(hosts)
    for contribution in weights(weighers, hosts, spec).values():
        totals = [t + c for t, c in zip(totals, contribution)]
    order = sorted(range(len(hosts)), key=totals.__getitem__, reverse=True)
    return [(hosts[i].host, totals[i]) for i in order]


def test_weighed_totals_are_exactly_the_summed_contributions(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    multipliers = st.sampled_from(["0", "1.0", "-1.0", "2.5", "1000000", "-0.3", "inf", "nonsense"])
    a_host = st.fixed_dictionaries({
        "free_ram": st.integers(0, 4), "io": st.integers(0, 2), "instances": st.integers(0, 3),
        "failed": st.integers(0, 1), "version": st.sampled_from([1000, 1001, 2000]),
        "aggregates": st.dictionaries(st.sampled_from(["ram_weight_multiplier", "io_ops_weight_multiplier",
                                                        "num_instances_weight_multiplier"]),
                                      st.sets(multipliers, min_size=1, max_size=2), max_size=2)})

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(a_host, min_size=1, max_size=12), st.sampled_from(["0", "1.0", "-1.0", "inf"]))
    def check(described, ram_multiplier):
        conf = Config.load(state_dir=tmp_path)
        conf.set("filter_scheduler", "ram_weight_multiplier", ram_multiplier)
        weighers = every(conf)
        hosts = [host(f"h{i}", **{**d, "free_ram": d["free_ram"] * 100}) for i, d in enumerate(described)]
        got = [(h.host, total) for h, total in weighers_mod.weighed(weighers, hosts, {})]
        want = _reference(weighers, hosts, {})
        assert [name for name, _ in got] == [name for name, _ in want]
        assert [repr(total) for _, total in got] == [repr(total) for _, total in want]   # nan and -0.0 too

    check()
