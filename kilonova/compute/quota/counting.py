"""Usage the quota drivers count: cells and build requests (each server once), Placement's usages.

Build requests have no allocation until the scheduler claims one, so a count from Placement adds the
resources of build requests that have none yet (asked of Placement per build request only when the cheaper
count, which adds them all, would refuse).
"""
from __future__ import annotations

from typing import Any

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError
from kilonova.compute.cells import CellDown
from kilonova.compute.db import quota_counts
from kilonova.compute.db.quota_counts import Snapshot
from kilonova.compute.scheduler.manager import NoValidHost, resources_from_spec


async def snapshot(svc, project_id: str) -> Snapshot:
    return await svc.api_db.read(quota_counts.snapshot, project_id)


async def from_cells(svc, project_id: str, snap: Snapshot) -> dict[str, int]:
    """instances, cores and ram: the snapshot's build requests and the cells' other live instances."""
    used = snap.pending_usage()
    pending = list(snap.pending)
    for cell in svc.cells.all():
        try:
            counted = await cell.read(quota_counts.cell_usage, project_id, pending)
        except CellDown:
            continue  # as upstream counting from cells: a cell that is down is not counted
        for key in used:
            used[key] += counted[key]
    return used


def flavor_resources(flavor: dict[str, Any], is_bfv: bool = False) -> dict[str, int]:
    """Resource class -> amount one server of ``flavor`` takes (as the scheduler asks Placement)."""
    try:
        return resources_from_spec({"flavor": {"root_gb": 0, "ephemeral_gb": 0, "swap": 0, **flavor},
                                    "is_bfv": is_bfv})
    except NoValidHost:
        return {}


async def placement_usages(svc, project_id: str) -> dict[str, int]:
    response = await svc.placement.get(f"/usages?project_id={segment(project_id)}")
    if response.status_code != 200:
        raise HTTPError(503, f"Failed to retrieve usages from placement while enforcing quota limits "
                             f"(Placement answered {response.status_code}).")
    return {rc: int(amount) for rc, amount in response.json().get("usages", {}).items()}


async def unallocated(svc, snap: Snapshot) -> set[str]:
    """The snapshot's build requests that hold no allocation in Placement (yet)."""
    found = set()
    for uuid in snap.pending:
        response = await svc.placement.get(f"/allocations/{segment(uuid)}")
        if response.status_code != 200 or not response.json().get("allocations"):
            found.add(uuid)
    return found


async def pending_resources(svc, snap: Snapshot, uuids: Any = None) -> dict[str, int]:
    """Resource class -> amount the snapshot's build requests (of ``uuids`` only, when given) will claim."""
    wanted = [uuid for uuid in snap.pending if uuids is None or uuid in uuids]
    total: dict[str, int] = {}
    for flavor in (await svc.api_db.read(quota_counts.pending_flavors, wanted)).values():
        for rc, amount in flavor_resources(flavor, flavor["is_bfv"]).items():
            total[rc] = total.get(rc, 0) + amount
    return total


def add(*counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            total[key] = total.get(key, 0) + value
    return total
