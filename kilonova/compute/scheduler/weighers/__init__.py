"""Scheduler weighers: each gives a host one number; the scheduler normalises each weigher's numbers over the
hosts (0..1) and sums them, each times its multiplier.

A weigher's multiplier comes from ``[filter_scheduler] <name>_weight_multiplier``, or for a host in an
aggregate with that metadata key (``openstack aggregate set --property ram_weight_multiplier=-1``) from
the aggregate, the smallest value when several of its aggregates set it, as upstream. A negative multiplier
turns spreading into stacking.
"""
from __future__ import annotations

import logging
import math

from kilonova.compute.scheduler.host_state import HostState

LOG = logging.getLogger(__name__)


class BaseWeigher:
    option = ""
    #: Reads per-host instance counts (the scheduler then reads them for each decision).
    needs_instance_counts = False

    def __init__(self, conf) -> None:
        self.multiplier = conf.getfloat("filter_scheduler", self.option)

    def multiplier_for(self, host: HostState) -> float:
        """The host's aggregates' ``<option>`` metadata (smallest valid value), else the configured one."""
        values = host.aggregates.get(self.option)
        if not values:
            return self.multiplier
        try:
            return min(float(value) for value in values)
        except ValueError:
            LOG.warning("aggregate metadata %s=%s of host %s is not a number; using %s", self.option,
                        ",".join(sorted(values)), host.host, self.multiplier)
            return self.multiplier

    def applies(self, spec: dict) -> bool:
        """Whether this request can give hosts different weights here (one that cannot is skipped)."""
        return True

    def weigh(self, host: HostState, spec: dict) -> float:
        raise NotImplementedError

    def weigh_all(self, hosts: list[HostState], spec: dict) -> list[float]:
        return [self.weigh(host, spec) for host in hosts]


class _FreeWeigher(BaseWeigher):
    """More free of a resource class is better (spread)."""
    resource_class = ""

    def weigh(self, host, spec):
        return host.free(self.resource_class)

    def weigh_all(self, hosts, spec):
        rc = self.resource_class
        return [h.capacity.get(rc, 0) - h.used.get(rc, 0) for h in hosts]


class RAMWeigher(_FreeWeigher):
    """More free RAM is better (spread)."""
    option = "ram_weight_multiplier"
    resource_class = "MEMORY_MB"


class CPUWeigher(_FreeWeigher):
    """More free vCPUs is better (spread)."""
    option = "cpu_weight_multiplier"
    resource_class = "VCPU"


class DiskWeigher(_FreeWeigher):
    """More free disk is better (spread)."""
    option = "disk_weight_multiplier"
    resource_class = "DISK_GB"


def all_weighers() -> tuple[type[BaseWeigher], ...]:
    from kilonova.compute.scheduler.weighers.host_load import (
        BuildFailureWeigher, CrossCellWeigher, HypervisorVersionWeigher, IoOpsWeigher, NumInstancesWeigher)
    from kilonova.compute.scheduler.weighers.image_properties import ImagePropertiesWeigher
    from kilonova.compute.scheduler.weighers.server_group import (
        ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher)
    return (RAMWeigher, CPUWeigher, DiskWeigher, ServerGroupSoftAffinityWeigher,
            ServerGroupSoftAntiAffinityWeigher, IoOpsWeigher, NumInstancesWeigher, BuildFailureWeigher,
            CrossCellWeigher, HypervisorVersionWeigher, ImagePropertiesWeigher)


def normalise(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    if high == low:
        return [0.0 for _ in values]
    span = high - low
    return [(value - low) / span for value in values]


def _aggregate_keys(hosts: list[HostState]) -> set[str]:
    keys: set[str] = set()
    for host in hosts:
        if host.aggregates:
            keys.update(host.aggregates)
    return keys


def active(weighers: list[BaseWeigher], hosts: list[HostState], spec: dict,
           keys: set[str] | None = None) -> list[BaseWeigher]:
    """The weighers that can change the order: the request asks something of them, and their multiplier is not 0
    (or some host's aggregates set it)."""
    keys = _aggregate_keys(hosts) if keys is None else keys
    return [w for w in weighers if (w.multiplier != 0 or w.option in keys) and w.applies(spec)]


def weights(weighers: list[BaseWeigher], hosts: list[HostState], spec: dict) -> dict[str, list[float]]:
    """weigher name -> each host's contribution (multiplier x normalised weight), in ``hosts`` order."""
    found = {}
    keys = _aggregate_keys(hosts)
    for weigher in active(weighers, hosts, spec, keys):
        values = normalise(weigher.weigh_all(hosts, spec))
        if weigher.option in keys:  # some hosts' aggregates set their own multiplier
            found[type(weigher).__name__] = [weigher.multiplier_for(h) * v for h, v in zip(hosts, values)]
        else:
            found[type(weigher).__name__] = [weigher.multiplier * v for v in values]
    return found


def weigh_hosts(weighers: list[BaseWeigher], hosts: list[HostState], spec: dict) -> list[HostState]:
    """Hosts ordered best first."""
    return [host for host, _ in weighed(weighers, hosts, spec)]


def weighed(weighers: list[BaseWeigher], hosts: list[HostState], spec: dict) -> list[tuple[HostState, float]]:
    """(host, total weight), best first.

    The totals of ``weights`` summed in weigher order, computed in one pass per weigher (the same float
    operations in the same order, so the same totals to the last bit). A weigher that rates every host the
    same adds 0.0 (or -0.0) to each total, which changes none, and is skipped -- unless some multiplier is
    not finite (inf x 0 is nan)."""
    if not hosts:
        return []
    keys = _aggregate_keys(hosts)
    totals = [0.0] * len(hosts)
    for weigher in active(weighers, hosts, spec, keys):
        values = weigher.weigh_all(hosts, spec)
        low, high = min(values), max(values)
        if weigher.option in keys:  # some hosts' aggregates set their own multiplier
            multipliers = _multipliers(weigher, hosts)
            if high == low and all(map(math.isfinite, multipliers)):
                continue
            if high == low:
                totals = [t + m * 0.0 for t, m in zip(totals, multipliers)]
                continue
            span = high - low
            totals = [t + m * ((v - low) / span) for t, m, v in zip(totals, multipliers, values)]
        else:
            m = weigher.multiplier
            if high == low:
                if not math.isfinite(m):
                    totals = [t + m * 0.0 for t in totals]
                continue
            span = high - low
            totals = [t + m * ((v - low) / span) for t, v in zip(totals, values)]
    order = sorted(range(len(hosts)), key=totals.__getitem__, reverse=True)
    return [(hosts[i], totals[i]) for i in order]


def _multipliers(weigher: BaseWeigher, hosts: list[HostState]) -> list[float]:
    """Each host's multiplier for ``weigher`` (multiplier_for), worked out once per distinct aggregate value set."""
    option, default = weigher.option, weigher.multiplier
    known: dict[int, float] = {}
    found = []
    for host in hosts:
        values = host.aggregates.get(option)
        if not values:
            found.append(default)
            continue
        multiplier = known.get(id(values))
        if multiplier is None:
            multiplier = known[id(values)] = weigher.multiplier_for(host)
        found.append(multiplier)
    return found
