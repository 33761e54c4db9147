"""The fields later microversions show that a server created before Kilonova recorded them lacks: its image's
properties (2.98) and its scheduler hints (2.100), read from its request spec as upstream reads them, one
API-database read per page of servers that need it."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.compute.api import server_records
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.db import build_requests


def _missing(request: Request, server: dict[str, Any]) -> bool:
    recorded = server.get("system_metadata") or {}
    return (want(request, "2.98") and server.get("image_ref") and server_records.IMAGE_PROPERTIES not in recorded) \
        or (want(request, "2.100") and server_records.SCHEDULER_HINTS not in recorded)


async def completed(request: Request, servers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """uuid -> the server with what its request spec says filled in, for the servers that lacked it."""
    lacking = [server for server in servers if _missing(request, server)]
    if not lacking:
        return {}
    specs = await compute_api(request).api_db.read(build_requests.specs_for, [s["uuid"] for s in lacking])
    filled = {}
    for server in lacking:
        spec = specs.get(server["uuid"])
        if spec is None:
            continue
        recorded = dict(server.get("system_metadata") or {})
        from_spec = server_records.system_metadata({}, az=None, image_properties=(spec.get("image") or {}).get(
            "properties"), hints=spec.get("scheduler_hints"))
        recorded.setdefault(server_records.IMAGE_PROPERTIES, from_spec.get(server_records.IMAGE_PROPERTIES, {}))
        recorded.setdefault(server_records.SCHEDULER_HINTS, from_spec.get(server_records.SCHEDULER_HINTS, {}))
        filled[server["uuid"]] = dict(server, system_metadata=recorded)
    return filled
