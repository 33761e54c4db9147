"""/v2.1/servers/{id}/ips and /ips/{network}: a server's addresses by network label, as upstream's ips
API shows them (``version`` and ``addr`` only, not the extended fields of the server body)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import common, lookup, query_params, views
from kilonova.compute.api.app import compute_api


async def _addresses(request: Request, server_id: str, rule: str) -> dict[str, list[dict[str, Any]]]:
    query_params.closed_from_2102(request)
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.authorize(request, f"os_compute_api:ips:{rule}", common.server_target(ref.server))
    return {network: [{"version": ip["version"], "addr": ip["addr"]} for ip in ips]
            for network, ips in views.addresses(ref.server.get("network_info") or []).items()}


async def list_ips(request: Request, server_id: str):
    return json_response({"addresses": await _addresses(request, server_id, "index")})


async def show_ips(request: Request, server_id: str, network: str):
    addresses = await _addresses(request, server_id, "show")
    if network not in addresses:
        raise HTTPError(404, "Instance is not a member of specified network")
    return json_response({network: addresses[network]})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/ips", list_ips)
    router.add("GET", "/v2.1/servers/{server_id}/ips/{network}", show_ips)
