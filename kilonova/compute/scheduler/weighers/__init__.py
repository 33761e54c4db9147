"""Scheduler weighers: each gives a host one number; the scheduler normalises and sums them.

A weigher's multiplier comes from ``[filter_scheduler] <name>_weight_multiplier``;
a negative multiplier turns spreading into stacking.
"""
from __future__ import annotations

from kilonova.compute.scheduler.host_state import HostState


class BaseWeigher:
    option = ""

    def __init__(self, conf) -> None:
        self.multiplier = conf.getfloat("filter_scheduler", self.option)

    def weigh(self, host: HostState, spec: dict) -> float:
        raise NotImplementedError


class RAMWeigher(BaseWeigher):
    """More free RAM is better (spread)."""
    option = "ram_weight_multiplier"

    def weigh(self, host, spec):
        return host.free("MEMORY_MB")


class CPUWeigher(BaseWeigher):
    """More free vCPUs is better (spread)."""
    option = "cpu_weight_multiplier"

    def weigh(self, host, spec):
        return host.free("VCPU")


class DiskWeigher(BaseWeigher):
    """More free disk is better (spread)."""
    option = "disk_weight_multiplier"

    def weigh(self, host, spec):
        return host.free("DISK_GB")


def all_weighers() -> tuple[type[BaseWeigher], ...]:
    from kilonova.compute.scheduler.weighers.server_group import (
        ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher)
    return (RAMWeigher, CPUWeigher, DiskWeigher, ServerGroupSoftAffinityWeigher,
            ServerGroupSoftAntiAffinityWeigher)


def normalise(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    if high == low:
        return [0.0 for _ in values]
    return [(value - low) / (high - low) for value in values]


def weigh_hosts(weighers: list[BaseWeigher], hosts: list[HostState], spec: dict) -> list[HostState]:
    """Hosts ordered best first."""
    if not hosts:
        return []
    totals = [0.0] * len(hosts)
    for weigher in weighers:
        if weigher.multiplier == 0:
            continue
        for i, value in enumerate(normalise([weigher.weigh(host, spec) for host in hosts])):
            totals[i] += weigher.multiplier * value
    order = sorted(range(len(hosts)), key=lambda i: totals[i], reverse=True)
    return [hosts[i] for i in order]
