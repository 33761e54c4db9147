"""Host CPU sets, as nova.conf spells them ("0-3,^2,6"), and the choice of CPUs for pinned guests.

``[compute] cpu_dedicated_set`` holds the host CPUs that pinned (``hw:cpu_policy=dedicated``)
guests get to themselves, one guest per CPU; they are reported to Placement as PCPU.
``[compute] cpu_shared_set`` holds the CPUs every other guest floats over (VCPU).
"""
from __future__ import annotations

import os
from pathlib import Path

from kilonova.compute.virt.libvirt.domain import Unsupported


def parse_set(text: str) -> set[int]:
    """``"0-3,^2,6"`` -> {0, 1, 3, 6}; raises ValueError on anything else."""
    included: set[int] = set()
    excluded: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        target = excluded if part.startswith("^") else included
        part = part.lstrip("^")
        try:
            first, _, last = part.partition("-")
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"{text!r} is not a CPU set (e.g. 0-3,^2,6)") from None
        if low < 0 or high < low:
            raise ValueError(f"{text!r} is not a CPU set: {part} is not a range of CPU numbers")
        target.update(range(low, high + 1))
    return included - excluded


def format_set(cpus) -> str:
    """{0, 1, 2, 5} -> ``"0-2,5"`` (libvirt's cpuset syntax, the inverse of ``parse_set``)."""
    ranges: list[str] = []
    ordered = sorted(cpus)
    start = previous = None
    for cpu in [*ordered, None]:
        if cpu is not None and previous is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(ranges)


def online(path: Path = Path("/sys/devices/system/cpu/online")) -> set[int]:
    try:
        return parse_set(path.read_text())
    except (OSError, ValueError):
        return set(range(os.cpu_count() or 1))


def numa_nodes(root: Path = Path("/sys/devices/system/node")) -> dict[int, set[int]]:
    """Host NUMA node -> its CPUs; a host without NUMA information is one node holding every CPU."""
    nodes = {}
    for entry in sorted(root.glob("node[0-9]*")):
        try:
            nodes[int(entry.name.removeprefix("node"))] = parse_set((entry / "cpulist").read_text())
        except (OSError, ValueError):
            continue
    return nodes or {0: online()}


def host_sets(dedicated_text: str, shared_text: str, host_cpus: set[int]) -> tuple[set[int], set[int]]:
    """(dedicated, shared) from the configuration, checked against the host; ValueError says what is wrong.

    An empty shared set means unpinned guests may run anywhere.
    """
    dedicated = parse_set(dedicated_text) if dedicated_text.strip() else set()
    shared = parse_set(shared_text) if shared_text.strip() else set()
    for name, chosen in (("cpu_dedicated_set", dedicated), ("cpu_shared_set", shared)):
        missing = chosen - host_cpus
        if missing:
            raise ValueError(f"[compute] {name} names CPUs {format_set(missing)} that this host does not have "
                             f"(online: {format_set(host_cpus)})")
    if dedicated & shared:
        raise ValueError("[compute] cpu_dedicated_set and cpu_shared_set overlap on CPUs "
                         f"{format_set(dedicated & shared)}")
    return dedicated, shared


def unpinned_count(dedicated: set[int], shared: set[int], host_cpus: set[int]) -> int:
    """How many host CPUs unpinned guests share (VCPU inventory). As Nova: with only a dedicated set, none."""
    if shared:
        return len(shared)
    return 0 if dedicated else len(host_cpus)


def pick_dedicated(count: int, dedicated: set[int], taken: set[int]) -> list[int]:
    """``count`` CPUs of ``dedicated`` that no other guest has, or Unsupported saying why there are none."""
    if not dedicated:
        raise Unsupported(f"hw:cpu_policy=dedicated needs host CPUs in [compute] cpu_dedicated_set; this host "
                          "has none configured")
    free = sorted(dedicated - taken)
    if len(free) < count:
        raise Unsupported(f"hw:cpu_policy=dedicated needs {count} host CPUs of cpu_dedicated_set "
                          f"{format_set(dedicated)}; {len(free)} of them are free")
    return free[:count]
