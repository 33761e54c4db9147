"""The server group a request is scheduled under, as the group filters and weighers read it.

``spec["instance_group"]`` (set by ``SchedulerManager`` for a request with the ``group`` hint):
``uuid``, ``policy``, ``rules``, and ``hosts`` -- host -> the group's other servers on it (never the ones
being scheduled, so a moving member does not count against itself). The hosts come from the cells'
instance records, plus the hosts this scheduler chose lately for members whose record has no host yet:
parallel boots into one group see each other even before their instances land.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from kilonova.common.db import NotFound
from kilonova.compute import group_members
from kilonova.compute.db import server_groups

LOG = logging.getLogger(__name__)
RECENT_TTL = 600.0  # seconds a choice is remembered for a member whose instance has no host yet


class GroupView:
    """Reads a request's group; remembers the hosts chosen for members until their records show them."""

    def __init__(self, cells) -> None:
        self.cells = cells
        self._recent: dict[str, tuple[str, float]] = {}  # member uuid -> (host chosen, when)

    async def load(self, spec: dict[str, Any], scheduling: list[str]) -> dict[str, Any] | None:
        uuid = (spec.get("scheduler_hints") or {}).get("group")
        if not uuid:
            return None
        try:
            group = await self.cells.api_db.read(server_groups.get, uuid)
        except NotFound:
            LOG.info("server group %s of the request is gone; scheduling without it", uuid)
            return None
        others = [m for m in group["members"] if m not in set(scheduling)]
        placed = dict(await group_members.placed(self.cells, others))
        now = time.monotonic()
        for member in others:
            chosen = self._recent.get(member)
            if member not in placed and chosen and now - chosen[1] < RECENT_TTL:
                placed[member] = chosen[0]
        hosts: dict[str, list[str]] = {}
        for member, host in placed.items():
            hosts.setdefault(host, []).append(member)
        return {"uuid": group["uuid"], "policy": group["policy"], "rules": group["rules"], "hosts": hosts}

    def chose(self, group: dict[str, Any], instance_uuid: str, host: str) -> None:
        """A member was given ``host``: later choices in this request and parallel ones count it."""
        group["hosts"].setdefault(host, []).append(instance_uuid)
        self._recent[instance_uuid] = (host, time.monotonic())
        cutoff = time.monotonic() - RECENT_TTL
        for member in [m for m, (_, when) in self._recent.items() if when < cutoff]:
            del self._recent[member]


def members_on(spec: dict[str, Any], host: str, policy: str) -> int | None:
    """How many of the group's other servers are on ``host``; None when the request's group has another
    policy (or there is no group)."""
    group = spec.get("instance_group")
    if not group or group["policy"] != policy:
        return None
    return len(group["hosts"].get(host, []))
