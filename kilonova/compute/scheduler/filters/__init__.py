"""Scheduler filters: each answers one question about one host (``host_passes``)."""
from __future__ import annotations

from typing import Any

from kilonova.compute.scheduler.host_state import HostState


class BaseFilter:
    #: Why a host was removed, for "No valid host" explanations.
    reason = "removed by filter"
    #: Reads ``HostState.aggregates`` (the scheduler then reads aggregate metadata for each pass).
    needs_aggregates = False
    #: Also checked when a server is rebuilt with a new image on its own host (upstream's RUN_ON_REBUILD).
    run_on_rebuild = False

    def __init__(self, conf) -> None:
        self.conf = conf

    def applies(self, spec: dict[str, Any]) -> bool:
        """Whether ``spec`` asks this filter anything (one that does not passes every host; skipped)."""
        return True

    def host_passes(self, host: HostState, spec: dict[str, Any]) -> bool:
        raise NotImplementedError

    def filter_all(self, hosts: list[HostState], spec: dict[str, Any]) -> list[HostState]:
        """The hosts that pass (a filter on the hot path reads the request once here instead of per host)."""
        return [host for host in hosts if self.host_passes(host, spec)]

    def explain(self, spec: dict[str, Any]) -> str:
        """Why the hosts this filter removed for ``spec`` were removed."""
        return self.reason


def all_filters() -> dict[str, type[BaseFilter]]:
    """Every filter ``[filter_scheduler] enabled_filters`` may name (upstream's ``available_filters``)."""
    from kilonova.compute.scheduler.filters.affinity import DifferentHostFilter, SameHostFilter
    from kilonova.compute.scheduler.filters.aggregates import (
        AggregateImagePropertiesIsolation, AggregateInstanceExtraSpecsFilter, AggregateMultiTenancyIsolation)
    from kilonova.compute.scheduler.filters.availability_zone import AvailabilityZoneFilter
    from kilonova.compute.scheduler.filters.cells_network import (
        DifferentCellFilter, SimpleCIDRAffinityFilter, TargetCellFilter)
    from kilonova.compute.scheduler.filters.compute import ComputeFilter
    from kilonova.compute.scheduler.filters.compute_capabilities import ComputeCapabilitiesFilter
    from kilonova.compute.scheduler.filters.image_properties import ImagePropertiesFilter
    from kilonova.compute.scheduler.filters.json_filter import JsonFilter
    from kilonova.compute.scheduler.filters.numa_pci import NUMATopologyFilter, PciPassthroughFilter
    from kilonova.compute.scheduler.filters.server_group import (
        ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter)

    return {cls.__name__: cls for cls in (
        ComputeFilter, AvailabilityZoneFilter, ComputeCapabilitiesFilter, ImagePropertiesFilter,
        ServerGroupAntiAffinityFilter, ServerGroupAffinityFilter, SameHostFilter, DifferentHostFilter, JsonFilter,
        AggregateInstanceExtraSpecsFilter, AggregateMultiTenancyIsolation, AggregateImagePropertiesIsolation,
        NUMATopologyFilter, PciPassthroughFilter, TargetCellFilter, DifferentCellFilter, SimpleCIDRAffinityFilter)}
