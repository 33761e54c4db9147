"""The hosts of the servers a request's ``same_host`` / ``different_host`` hints name, read once per request
for SameHostFilter and DifferentHostFilter (``spec["hint_hosts"]``: hint -> set of hosts)."""
from __future__ import annotations

from typing import Any

from kilonova.compute import group_members
from kilonova.compute.scheduler.filters.affinity import hint_uuids

HINTS = ("same_host", "different_host")


async def hint_hosts(cells, spec: dict[str, Any]) -> dict[str, set[str]] | None:
    """None when the request has neither hint (nothing is read)."""
    hints = spec.get("scheduler_hints") or {}
    wanted = {name: hint_uuids(hints.get(name)) for name in HINTS if hint_uuids(hints.get(name))}
    if not wanted:
        return None
    every = sorted({uuid for uuids in wanted.values() for uuid in uuids})
    placed = dict(await group_members.placed(cells, every))
    return {name: {placed[uuid] for uuid in uuids if uuid in placed} for name, uuids in wanted.items()}
