"""Where a server group's members are: read by the scheduler (group filters and weighers) and by the
conductor (the late check before a build is sent)."""
from __future__ import annotations

import logging

from kilonova.compute.cells import CellDown
from kilonova.compute.db import instances

LOG = logging.getLogger(__name__)


async def placed(cells, uuids: list[str]) -> list[tuple[str, str]]:
    """(uuid, host) of the servers of ``uuids`` that have a host, from every cell that answers."""
    found: list[tuple[str, str]] = []
    if not uuids:
        return found
    for cell in cells.real():
        try:
            found += await cell.read(instances.hosts_of, uuids)
        except CellDown:
            LOG.warning("cell %s is down: its members of a server group are not counted", cell.name)
    return found
