"""Scheduler filters: each answers one question about one host (``host_passes``)."""
from __future__ import annotations

from typing import Any

from kilonova.compute.scheduler.host_state import HostState


class BaseFilter:
    #: Why a host was removed, for "No valid host" explanations.
    reason = "removed by filter"

    def __init__(self, conf) -> None:
        self.conf = conf

    def host_passes(self, host: HostState, spec: dict[str, Any]) -> bool:
        raise NotImplementedError

    def explain(self, spec: dict[str, Any]) -> str:
        """Why the hosts this filter removed for ``spec`` were removed."""
        return self.reason


def all_filters() -> dict[str, type[BaseFilter]]:
    from kilonova.compute.scheduler.filters.availability_zone import AvailabilityZoneFilter
    from kilonova.compute.scheduler.filters.compute import ComputeFilter
    from kilonova.compute.scheduler.filters.image_properties import ImagePropertiesFilter
    from kilonova.compute.scheduler.filters.server_group import (
        ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter)

    return {cls.__name__: cls for cls in (ComputeFilter, AvailabilityZoneFilter, ImagePropertiesFilter,
                                          ServerGroupAntiAffinityFilter, ServerGroupAffinityFilter)}
