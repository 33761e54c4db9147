"""The late check of a hard server-group policy, just before a build is sent to its host.

Upstream's compute manager does it (``_validate_instance_group_policy``): two builds into one group
scheduled in parallel (by two schedulers, or each not yet seeing the other's host) may both be given
hosts that together break the policy. Here the conductor checks once the server's own host is written
in its cell, so of two racing builds at least the later one sees the other; a build that would break
the policy is handled as a failed build on that host: rescheduled to an alternate, or ERROR with the
reason when none is left.
"""
from __future__ import annotations

import logging
from typing import Any

from kilonova.common.db import NotFound
from kilonova.compute.cells import CellDown
from kilonova.compute.db import instances, server_groups

LOG = logging.getLogger(__name__)


async def _member_hosts(cells, uuids: list[str]) -> list[str]:
    hosts: list[str] = []
    for cell in cells.real():
        try:
            hosts += [host for _, host in await cell.read(instances.hosts_of, uuids)]
        except CellDown:
            LOG.warning("cell %s is down: its members of a server group are not counted", cell.name)
    return hosts


async def violation(cells, spec: dict[str, Any], instance_uuid: str, host: str) -> str | None:
    """Why building ``instance_uuid`` on ``host`` breaks its group's hard policy; None when it does not."""
    group_uuid = (spec.get("scheduler_hints") or {}).get("group")
    if not group_uuid:
        return None
    try:
        group = await cells.api_db.read(server_groups.get, group_uuid)
    except NotFound:
        return None
    if group["policy"] not in ("affinity", "anti-affinity"):
        return None
    others = await _member_hosts(cells, [m for m in group["members"] if m != instance_uuid])
    if group["policy"] == "anti-affinity":
        allowed = int(group["rules"].get("max_server_per_host", 1))
        if others.count(host) >= allowed:
            return "Anti-affinity instance group policy was violated."
    elif others and host not in others:
        return "Affinity instance group policy was violated."
    return None
