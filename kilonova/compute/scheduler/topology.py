"""A guest's NUMA and PCI needs (from flavor extra specs and image properties, as upstream reads them) and
whether a host's NUMA cells and PCI device pools can meet them.

Host topology, as the compute agent reports it (``compute_nodes.numa_topology`` / ``pci_stats``, JSON):
``{"cells": [{"id": 0, "cpus": 16, "memory_mb": 65536, "cpu_usage": 2, "memory_usage": 4096,
"pinned_cpus": 0}, ...]}`` and ``[{"vendor_id": "8086", "product_id": "154d", "count": 2, "numa_node": 0}]``
(``count``: devices still free).

Kept to what the filters decide on: ``hw:numa_nodes`` (or ``hw_numa_nodes``), ``hw:numa_cpus.N`` /
``hw:numa_mem.N`` for an uneven split, ``hw:cpu_policy=dedicated`` (one NUMA cell unless more are asked
for, CPUs pinned so not overcommitted), ``pci_passthrough:alias`` with ``[pci] alias``. Huge pages, CPU
thread policies and PCI NUMA affinity policies are not modelled.
"""
from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from typing import Any


class TopologyError(ValueError):
    """A request whose NUMA or PCI extra specs cannot be read (said in the host's rejection)."""


@dataclass(frozen=True)
class GuestCell:
    cpus: int
    memory_mb: int


def _specs(spec: dict[str, Any]) -> tuple[dict, dict]:
    return ((spec.get("flavor") or {}).get("extra_specs") or {},
            ((spec.get("image") or {}).get("properties") or {}))


def dedicated(spec: dict[str, Any]) -> bool:
    extra, props = _specs(spec)
    return (extra.get("hw:cpu_policy") or props.get("hw_cpu_policy")) == "dedicated"


def guest_cells(spec: dict[str, Any]) -> list[GuestCell] | None:
    """The guest's NUMA cells; None when the request asks for no NUMA topology."""
    extra, props = _specs(spec)
    flavor = spec.get("flavor") or {}
    nodes = extra.get("hw:numa_nodes") or props.get("hw_numa_nodes")
    if not nodes and not dedicated(spec):
        return None
    try:
        count = int(nodes or 1)
    except ValueError:
        raise TopologyError(f"hw:numa_nodes={nodes} is not a number") from None
    vcpus, memory = int(flavor.get("vcpus") or 0), int(flavor.get("memory_mb") or 0)
    if count < 1 or count > max(vcpus, 1):
        raise TopologyError(f"hw:numa_nodes={count} does not fit {vcpus} vCPUs")
    if any(key.startswith("hw:numa_cpus.") for key in extra):  # an explicit split
        cells = []
        for index in range(count):
            cpus = _cpu_list(extra.get(f"hw:numa_cpus.{index}", ""))
            cells.append(GuestCell(len(cpus), int(extra.get(f"hw:numa_mem.{index}", memory // count))))
        return cells
    return [GuestCell(vcpus // count + (1 if i < vcpus % count else 0),
                      memory // count + (1 if i < memory % count else 0)) for i in range(count)]


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        try:
            cpus.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise TopologyError(f"hw:numa_cpus value {text!r} is not a CPU list") from None
    return cpus


def fit_numa(cells: list[GuestCell], host_cells: list[dict], *, pinned: bool, cpu_ratio: float,
             ram_ratio: float) -> tuple[int, ...] | None:
    """The host cell ids the guest's cells go to (one distinct host cell each), or None when they do not fit."""
    def fits(guest: GuestCell, cell: dict) -> bool:
        if pinned:
            cpu_free = cell.get("cpus", 0) - cell.get("pinned_cpus", 0) - cell.get("cpu_usage", 0)
        else:
            cpu_free = cell.get("cpus", 0) * cpu_ratio - cell.get("cpu_usage", 0) - cell.get("pinned_cpus", 0)
        mem_free = cell.get("memory_mb", 0) * ram_ratio - cell.get("memory_usage", 0)
        return guest.cpus <= cpu_free and guest.memory_mb <= mem_free

    if len(cells) > len(host_cells):
        return None
    for chosen in itertools.permutations(host_cells, len(cells)):  # hosts have few cells: try each order
        if all(fits(g, c) for g, c in zip(cells, chosen)):
            return tuple(c.get("id", i) for i, c in enumerate(chosen))
    return None


def pci_requests(spec: dict[str, Any], aliases: dict[str, dict]) -> list[tuple[dict, int]]:
    """(alias spec, count) for each ``pci_passthrough:alias`` entry; TopologyError for an unknown alias."""
    extra, _ = _specs(spec)
    value = extra.get("pci_passthrough:alias")
    if not value:
        return []
    wanted = []
    for item in filter(None, (p.strip() for p in str(value).split(","))):
        name, _, count = item.partition(":")
        if name not in aliases:
            raise TopologyError(f"PCI alias {name} is not defined ([pci] alias)")
        try:
            wanted.append((aliases[name], int(count or 1)))
        except ValueError:
            raise TopologyError(f"pci_passthrough:alias {item!r} has no count") from None
    return wanted


def fit_pci(requests: list[tuple[dict, int]], pools: list[dict]) -> bool:
    """Whether the host's free devices cover every request (a device serves one request)."""
    free = [dict(pool) for pool in pools]
    for alias, count in requests:
        for pool in free:
            if count and _matches(alias, pool):
                taken = min(count, pool.get("count", 0))
                pool["count"] -= taken
                count -= taken
        if count:
            return False
    return True


def _matches(alias: dict, pool: dict) -> bool:
    return all(str(pool.get(key, "")).lower() == str(alias[key]).lower()
               for key in ("vendor_id", "product_id", "dev_type") if key in alias)


def aliases(conf) -> dict[str, dict]:
    """``[pci] alias``: one JSON object or a JSON list of them, each with a ``name`` (upstream's format)."""
    return _parse_aliases(conf.get("pci", "alias"))


@functools.lru_cache(maxsize=8)
def _parse_aliases(text: str) -> dict[str, dict]:
    if not text.strip():
        return {}
    parsed = json.loads(text)
    entries = parsed if isinstance(parsed, list) else [parsed]
    return {entry["name"]: entry for entry in entries}


@functools.lru_cache(maxsize=4096)
def parse_json(text: str | None) -> Any:
    """A reported JSON column; None when empty or unreadable (hosts report few distinct values: cached)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
