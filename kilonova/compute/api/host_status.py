"""``host_status`` (2.16) of servers in show and the detail list: how their compute host is, as upstream
reports it to those its policy lets see it: UP, DOWN (forced down), MAINTENANCE (disabled), UNKNOWN (no
heartbeat within service_down_time), "" (no host yet). One services read per cell, not per server."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.compute.api import common, lookup
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.cells import CellDown
from kilonova.compute.db import services

_RULE = "os_compute_api:servers:show:host_status"


def _state(service, down_time: float) -> str:
    if service is None:
        return ""
    if service.forced_down:
        return "DOWN"
    if service.disabled:
        return "MAINTENANCE"
    return "UP" if services.is_up(service, down_time) else "UNKNOWN"


async def statuses(request: Request, refs: list[lookup.ServerRef]) -> dict[str, str]:
    """Each server's host_status that the caller may see (none before 2.16; with only the unknown-only
    rule, just the UNKNOWN ones)."""
    if not want(request, "2.16"):
        return {}
    every = common.allowed(request, _RULE)
    if not every and not common.allowed(request, _RULE + ":unknown-only"):
        return {}
    down_time = compute_api(request).conf.getfloat("DEFAULT", "service_down_time")
    by_cell: dict[str, tuple] = {}
    for ref in refs:
        if ref.cell is not None and not ref.down:
            by_cell.setdefault(ref.cell.uuid, (ref.cell, []))[1].append(ref)
    shown: dict[str, str] = {}
    for cell, cell_refs in by_cell.values():
        try:
            rows = await cell.read(services.list_services, binary="nova-compute")
        except CellDown:
            continue
        by_host = {row.host: row for row in rows}
        for ref in cell_refs:
            host = ref.server.get("host")
            state = _state(by_host.get(host), down_time) if host else ""
            if every or state == "UNKNOWN":
                shown[ref.uuid] = state
    return shown
