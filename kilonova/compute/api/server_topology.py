"""GET /v2.1/servers/{id}/topology (2.78): the server's NUMA topology.

No server here has a NUMA topology (flavors' hw:numa_* and hw:cpu_policy are not
acted on), so every server answers as upstream answers for a server without one.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import common, lookup
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want


async def show_topology(request: Request, server_id: str):
    if not want(request, "2.78"):
        raise HTTPError(404, "The resource could not be found.")
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.authorize(request, "os_compute_api:servers:topology:index", common.server_target(ref.server))
    return json_response({"nodes": [], "pagesize_kb": None})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/topology", show_topology)
