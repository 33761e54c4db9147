"""A requested destination at server create, checked as upstream does: 2.74's ``host`` /
``hypervisor_hostname``, or the older forced host in ``availability_zone`` (``zone:host``,
``zone::node``, ``zone:host:node``).

Only administrators may name one; the host must be mapped to a cell and the node
must exist, else 400. Placement must still have room on it; the scheduler runs its filters on a 2.74
destination but not on a forced one (``"force": True``), as upstream's force_hosts/force_nodes.
"""
from __future__ import annotations

from typing import Any

from kilonova.common.context import RequestContext
from kilonova.common.http import HTTPError
from kilonova.compute.api.common import enforce
from kilonova.compute.cells import CellDown
from kilonova.compute.db import compute_nodes, mappings


async def requested(svc, ctx: RequestContext, server: dict[str, Any]) -> dict[str, str] | None:
    host, node = server.get("host"), server.get("hypervisor_hostname")
    if not host and not node:
        return None
    enforce(svc, ctx, "compute:servers:create:requested_destination")
    if any(split_zone(server.get("availability_zone"))[1:]):
        raise HTTPError(400, "One mechanism with host and/or hypervisor_hostname and another mechanism with "
                             "zone:host:node are mutually exclusive.")
    return await _checked(svc, host, node)


def split_zone(value: str | None) -> tuple[str | None, str | None, str | None]:
    """(zone, forced host, forced node) of a create's ``availability_zone``, parsed as upstream parses it."""
    if not value or ":" not in value:
        return value or None, None, None
    colons = value.count(":")
    if colons == 1:
        (zone, host), node = value.split(":"), ""
    elif colons == 2 and "::" in value:
        zone, node = value.split("::")
        host = ""
    elif colons == 2:
        zone, host, node = value.split(":")
    else:
        raise HTTPError(400, "Invalid input received: Unable to parse availability_zone")
    return zone or None, host or None, node or None


async def forced(svc, ctx: RequestContext, host: str | None, node: str | None) -> dict[str, str] | None:
    """The destination a forced host/node names, for administrators only (upstream's forced_host policy)."""
    if not host and not node:
        return None
    enforce(svc, ctx, "os_compute_api:servers:create:forced_host")
    return {**await _checked(svc, host, node), "force": True}


async def _checked(svc, host: str | None, node: str | None) -> dict[str, str]:
    if host and await svc.api_db.read(mappings.get_host_mapping, host) is None:
        raise HTTPError(400, f"Compute host {host} could not be found.")
    if node and not await _node_exists(svc, host, node):
        raise HTTPError(400, f"Compute host {node} could not be found.")
    return {key: value for key, value in (("host", host), ("node", node)) if value}


async def _node_exists(svc, host: str | None, node: str) -> bool:
    for cell in svc.cells.real():
        try:
            rows = await cell.read(compute_nodes.list_with_services)
        except CellDown:
            continue
        if any(row.hypervisor_hostname == node and (host is None or row.host == host) for row, _ in rows):
            return True
    return False
