"""NUMATopologyFilter and PciPassthroughFilter: the guest's NUMA cells and PCI devices against the host's
NUMA cells and free PCI device pools, as the compute agent reports them (see ``topology``)."""
from kilonova.compute.scheduler import topology
from kilonova.config import ConfigError
from kilonova.compute.scheduler.filters import BaseFilter


class NUMATopologyFilter(BaseFilter):
    """Only hosts whose NUMA cells can hold the guest's (``hw:numa_nodes``, ``hw:cpu_policy=dedicated``)."""

    run_on_rebuild = True
    reason = "its NUMA cells cannot hold the guest's"

    def __init__(self, conf) -> None:
        super().__init__(conf)
        self.cpu_ratio = conf.getfloat("DEFAULT", "cpu_allocation_ratio")
        self.ram_ratio = conf.getfloat("DEFAULT", "ram_allocation_ratio")

    def applies(self, spec):
        try:
            return topology.guest_cells(spec) is not None
        except topology.TopologyError:
            return True

    def host_passes(self, host, spec):
        try:
            cells = topology.guest_cells(spec)
        except topology.TopologyError:
            return False
        if cells is None:
            return True
        host_cells = (host.numa_topology or {}).get("cells") or []
        return topology.fit_numa(cells, host_cells, pinned=topology.dedicated(spec), cpu_ratio=self.cpu_ratio,
                                 ram_ratio=self.ram_ratio) is not None

    def explain(self, spec):
        try:
            cells = topology.guest_cells(spec) or []
        except topology.TopologyError as exc:
            return str(exc)
        wanted = " + ".join(f"{c.cpus} CPUs/{c.memory_mb} MB" for c in cells)
        pinned = ", pinned" if topology.dedicated(spec) else ""
        return f"{self.reason} ({len(cells)} cell(s): {wanted}{pinned}; a host reporting no NUMA topology has none)"


class PciPassthroughFilter(BaseFilter):
    """Only hosts with free PCI devices for the flavor's ``pci_passthrough:alias`` ([pci] alias)."""

    reason = "has not enough free PCI devices"

    def __init__(self, conf) -> None:
        super().__init__(conf)
        try:  # a broken alias list stops the scheduler at start, as any wrong option does
            topology.aliases(conf)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"[pci] alias: not a JSON object or list of objects with a name ({exc})") from None

    def applies(self, spec):
        return bool(((spec.get("flavor") or {}).get("extra_specs") or {}).get("pci_passthrough:alias"))

    def host_passes(self, host, spec):
        try:
            requests = topology.pci_requests(spec, topology.aliases(self.conf))
        except topology.TopologyError:
            return False
        return not requests or topology.fit_pci(requests, host.pci_stats or [])

    def explain(self, spec):
        try:
            topology.pci_requests(spec, topology.aliases(self.conf))
        except topology.TopologyError as exc:
            return str(exc)
        wanted = ((spec.get("flavor") or {}).get("extra_specs") or {}).get("pci_passthrough:alias")
        return f"{self.reason} (pci_passthrough:alias={wanted})"
