"""A requested destination at server create (2.74 ``host`` / ``hypervisor_hostname``), checked as upstream does.

Only administrators may name one; the host must be mapped to a cell and the node
must exist, else 400. The scheduler still runs its filters on it.
"""
from __future__ import annotations

from typing import Any

from kilonova.common.context import RequestContext
from kilonova.common.http import HTTPError
from kilonova.compute.cells import CellDown
from kilonova.compute.db import compute_nodes, mappings


async def requested(svc, ctx: RequestContext, server: dict[str, Any]) -> dict[str, str] | None:
    host, node = server.get("host"), server.get("hypervisor_hostname")
    if not host and not node:
        return None
    if not ctx.is_admin:
        raise HTTPError(403, "Policy doesn't allow compute:servers:create:requested_destination to be performed.")
    forced = (server.get("availability_zone") or "").split(":")[1:]  # the zone:host:node form
    if any(forced):
        raise HTTPError(400, "One mechanism with host and/or hypervisor_hostname and another mechanism with "
                             "zone:host:node are mutually exclusive.")
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
