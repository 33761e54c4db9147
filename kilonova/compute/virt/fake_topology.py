"""What a fake host reports of its NUMA cells and PCI devices (``[fake_driver] numa_nodes`` / ``pci_devices``),
with the usage of the guests it runs, so NUMATopologyFilter and PciPassthroughFilter can be tried without
hardware. Guests are laid on cells the way the scheduler's fit finds them (``scheduler.topology``)."""
from __future__ import annotations

from typing import Any

from kilonova.compute.scheduler import topology


def _for_host(entries: list[str], host: str) -> list[str]:
    """Entries that apply to ``host``: unprefixed ones, and ``host=...`` ones naming it."""
    mine = []
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep:
            mine.append(entry)
        elif name.strip() == host:
            mine.append(value.strip())
    return mine


def configured(conf, host: str, vcpus: int, memory_mb: int) -> tuple[list[dict], list[dict]]:
    """(NUMA cells, PCI pools) of ``host`` before any guest."""
    nodes = _for_host(conf.getlist("fake_driver", "numa_nodes"), host)
    count = int(nodes[-1]) if nodes else 0
    cells = [{"id": i, "cpus": vcpus // count + (1 if i < vcpus % count else 0),
              "memory_mb": memory_mb // count, "cpu_usage": 0, "memory_usage": 0, "pinned_cpus": 0}
             for i in range(count)]
    pools = []
    for entry in _for_host(conf.getlist("fake_driver", "pci_devices"), host):
        vendor, product, amount, *numa = entry.split(":")
        pools.append({"vendor_id": vendor, "product_id": product, "count": int(amount), "dev_type": "type-PCI",
                      "numa_node": int(numa[0]) if numa else None})
    return cells, pools


def report(conf, cells: list[dict], pools: list[dict], guests: list[dict[str, Any]]) -> dict[str, Any]:
    """The compute node's ``numa_topology`` and ``pci_stats`` with ``guests`` (their flavors) placed."""
    cells = [dict(c) for c in cells]
    pools = [dict(p) for p in pools]
    aliases = topology.aliases(conf)
    for flavor in guests:
        spec = {"flavor": flavor}
        try:
            wanted = topology.guest_cells(spec)
            requests = topology.pci_requests(spec, aliases)
        except topology.TopologyError:
            continue
        if wanted and cells:
            pinned = topology.dedicated(spec)
            chosen = topology.fit_numa(wanted, cells, pinned=pinned, cpu_ratio=1e9, ram_ratio=1e9)
            for guest_cell, cell_id in zip(wanted, chosen or ()):
                cell = next(c for c in cells if c["id"] == cell_id)
                cell["pinned_cpus" if pinned else "cpu_usage"] += guest_cell.cpus
                cell["memory_usage"] += guest_cell.memory_mb
        for alias, count in requests:
            for pool in pools:
                if count and topology._matches(alias, pool):
                    taken = min(count, pool["count"])
                    pool["count"] -= taken
                    count -= taken
    return {"numa_topology": {"cells": cells} if cells else None, "pci_stats": pools or None}
