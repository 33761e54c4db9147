"""The target_cell, different_cell and build_near_host_ip/cidr hints: their filters (off by default, the hints
then ignored, as upstream) and the create's acceptance of the hints."""
import pytest

from kilonova.compute.scheduler.filters import all_filters
from kilonova.compute.scheduler.filters.cells_network import (
    DifferentCellFilter, SimpleCIDRAffinityFilter, TargetCellFilter)
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager
from kilonova.config import Config


def host(name, cell="cell1", ip="10.0.0.5"):
    return HostState(uuid=name, host=name, nodename=name, cell_uuid=f"uuid-{cell}", cell_name=cell,
                     availability_zone="nova", service_up=True, service_disabled=False, host_ip=ip)


def hints(**values):
    return {"scheduler_hints": values}


@pytest.fixture
def conf(tmp_path):
    return Config.load(state_dir=tmp_path)


def test_the_filters_are_known_but_off_by_default(conf):
    enabled = conf.getlist("filter_scheduler", "enabled_filters")
    for name in ("TargetCellFilter", "DifferentCellFilter", "SimpleCIDRAffinityFilter"):
        assert name in all_filters() and name not in enabled


def test_target_cell_by_name_or_uuid(conf):
    flt = TargetCellFilter(conf)
    assert not flt.applies({}) and flt.host_passes(host("a"), {})
    assert flt.host_passes(host("a"), hints(target_cell="cell1"))
    assert flt.host_passes(host("a"), hints(target_cell="uuid-cell1"))
    assert not flt.host_passes(host("a", cell="cell2"), hints(target_cell="cell1"))
    assert flt.explain(hints(target_cell="cell1")) == "not in the cell the target_cell hint names (cell1)"


def test_different_cell_one_or_several(conf):
    flt = DifferentCellFilter(conf)
    assert not flt.host_passes(host("a"), hints(different_cell="cell1"))
    assert flt.host_passes(host("a", cell="cell3"), hints(different_cell=["cell1", "uuid-cell2"]))
    assert not flt.host_passes(host("a", cell="cell2"), hints(different_cell=["cell1", "uuid-cell2"]))


def test_build_near_host_ip_with_upstreams_default_cidr(conf):
    flt = SimpleCIDRAffinityFilter(conf)
    assert flt.host_passes(host("a", ip="10.0.0.200"), hints(build_near_host_ip="10.0.0.1"))   # /24
    assert not flt.host_passes(host("a", ip="10.0.1.2"), hints(build_near_host_ip="10.0.0.1"))
    assert flt.host_passes(host("a", ip="10.0.1.2"), hints(build_near_host_ip="10.0.0.1", cidr="/16"))
    assert not flt.host_passes(host("a", ip=None), hints(build_near_host_ip="10.0.0.1"))
    assert flt.host_passes(host("a", ip="fd00::5"), hints(build_near_host_ip="fd00::1", cidr="/64"))
    assert "10.0.0.0/24" in flt.explain(hints(build_near_host_ip="10.0.0.1"))
    nonsense = hints(build_near_host_ip="10.0.0.1", cidr="/99")
    assert not flt.host_passes(host("a"), nonsense)
    assert flt.explain(nonsense).startswith("the build_near_host_ip and cidr hints make no network")


def test_no_valid_host_names_the_cell_filter(conf):
    conf.set("filter_scheduler", "enabled_filters", "ComputeFilter,TargetCellFilter")
    manager = SchedulerManager(conf, placement=None, cells=None)
    with pytest.raises(NoValidHost) as info:
        manager._filter([host("a"), host("b")], hints(target_cell="cell9"), {"VCPU": 1})
    assert "TargetCellFilter removed 2 of 2 hosts (not in the cell the target_cell hint names (cell9))" in \
        str(info.value)
