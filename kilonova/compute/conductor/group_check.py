"""The late check of a hard server-group policy, just before a build is sent to its host.

Upstream's compute manager does it (``_validate_instance_group_policy``): two builds into one group
scheduled in parallel (by two schedulers, or each not yet seeing the other's host) may both be given
hosts that together break the policy. Here the conductor checks once the server's own host is written
in its cell, so of two racing builds at least the later one sees the other; a build that would break
the policy is handled as a failed build on that host: rescheduled to an alternate, or ERROR with the
reason when none is left.
"""
from __future__ import annotations

from typing import Any

from kilonova.common.db import NotFound
from kilonova.compute import group_members
from kilonova.compute.db import server_groups


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
    members = [m for m in group["members"] if m != instance_uuid]
    others = [where for _, where in await group_members.placed(cells, members)]
    if group["policy"] == "anti-affinity":
        allowed = int(group["rules"].get("max_server_per_host", 1))
        if others.count(host) >= allowed:
            return "Anti-affinity instance group policy was violated."
    elif others and host not in others:
        return "Affinity instance group policy was violated."
    return None
