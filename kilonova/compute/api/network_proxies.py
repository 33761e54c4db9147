"""os-networks and os-tenant-networks (until 2.35; 404 from 2.36): the network service's networks in the
shapes nova-network had, read with the caller's token (so the caller sees what the network service shows
it). Their writes were nova-network's and answer 410 (removed.py), as upstream.

Nova-network's fields are all null now but for the id and the label, as upstream answers them.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize, gone_from

_FIELDS = ("id", "cidr", "netmask", "gateway", "broadcast", "dns1", "dns2", "cidr_v6", "gateway_v6", "label",
           "netmask_v6")
_ADMIN_FIELDS = ("created_at", "updated_at", "deleted_at", "deleted", "injected", "bridge", "vlan",
                 "vpn_public_address", "vpn_public_port", "vpn_private_address", "dhcp_start", "project_id", "host",
                 "bridge_interface", "multi_host", "priority", "rxtx_base", "mtu", "dhcp_server", "enable_dhcp",
                 "share_address")


def _headers(request: Request) -> dict[str, str]:
    return {"X-Auth-Token": request.state.context.token}


async def _networks(request: Request) -> list[dict[str, Any]]:
    response = await compute_api(request).network.get("/v2.0/networks", headers=_headers(request))
    if response.status_code != 200:
        raise HTTPError(502, f"The network service answered {response.status_code} for the networks.")
    return response.json()["networks"]


async def _network(request: Request, network_id: str) -> dict[str, Any]:
    response = await compute_api(request).network.get(f"/v2.0/networks/{segment(network_id)}",
                                                      headers=_headers(request))
    if response.status_code != 200:
        raise HTTPError(404, "Network not found")
    return response.json()["network"]


def _legacy(request: Request, network: dict[str, Any]) -> dict[str, Any]:
    fields = _FIELDS + (_ADMIN_FIELDS if request.state.context.is_admin else ())
    body: dict[str, Any] = dict.fromkeys(fields)
    body.update(id=network["id"], label=network.get("name"))
    return body


def _tenant(network: dict[str, Any]) -> dict[str, Any]:
    # "None" as a string: what upstream has answered for the cidr since Neutron took over.
    return {"id": network["id"], "cidr": "None", "label": network.get("name")}


# Upstream's os_compute_api:os-networks:{list,show} and os-tenant-networks:{list,show} let the project's
# readers read; the network service narrows what each one sees.
async def list_networks(request: Request):
    gone_from(request, "2.36")
    authorize(request, "os_compute_api:os-networks:list")
    return json_response({"networks": [_legacy(request, n) for n in await _networks(request)]})


async def show_network(request: Request, network_id: str):
    gone_from(request, "2.36")
    authorize(request, "os_compute_api:os-networks:show")
    return json_response({"network": _legacy(request, await _network(request, network_id))})


async def list_tenant_networks(request: Request):
    gone_from(request, "2.36")
    authorize(request, "os_compute_api:os-tenant-networks:list")
    return json_response({"networks": [_tenant(n) for n in await _networks(request)]})


async def show_tenant_network(request: Request, network_id: str):
    gone_from(request, "2.36")
    authorize(request, "os_compute_api:os-tenant-networks:show")
    return json_response({"network": _tenant(await _network(request, network_id))})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-networks", list_networks)
    router.add("GET", "/v2.1/os-networks/{network_id}", show_network)
    router.add("GET", "/v2.1/os-tenant-networks", list_tenant_networks)
    router.add("GET", "/v2.1/os-tenant-networks/{network_id}", show_tenant_network)
