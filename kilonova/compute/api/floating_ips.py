"""The compute API's floating-IP proxies (``os-floating-ips``, ``os-floating-ip-pools``) until 2.35, as upstream:
each call is made to the network service with the caller's own token, and answered in Nova's older shape.
From 2.36 they are gone (404). The ``addFloatingIp`` / ``removeFloatingIp`` server actions live in
``server_action_handlers/floating_ip.py``.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.clients import neutron_error, segment
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want

CREATE = {"type": ["object", "null"], "properties": {"pool": {"type": ["string", "null"]}},
          "additionalProperties": False}
DEFAULT_POOL = "nova"  # upstream's [neutron] default_floating_pool


def check_version(request: Request) -> None:
    if want(request, "2.36"):
        raise HTTPError(404, "The resource could not be found.")


def _headers(request: Request) -> dict[str, str]:
    return {"X-Auth-Token": request.state.context.token}


async def network_get(request: Request, path: str, **params: Any):
    return await compute_api(request).network.get(path, params=params or None, headers=_headers(request))


async def _pools(request: Request) -> list[dict[str, Any]]:
    response = await network_get(request, "/v2.0/networks", **{"router:external": "True"})
    if response.status_code != 200:
        raise HTTPError(502, f"The network service answered {response.status_code} for the external networks.")
    return response.json()["networks"]


def _view(fip: dict[str, Any], pools: list[dict[str, Any]]) -> dict[str, Any]:
    network = next((n for n in pools if n["id"] == fip["floating_network_id"]), None)
    details = fip.get("port_details") or {}
    return {"id": fip["id"], "ip": fip["floating_ip_address"],
            "pool": (network or {}).get("name") or fip["floating_network_id"],
            "fixed_ip": fip["fixed_ip_address"], "instance_id": details.get("device_id") or None}


async def _floating_ip(request: Request, floating_ip_id: str) -> dict[str, Any]:
    response = await network_get(request, f"/v2.0/floatingips/{segment(floating_ip_id)}")
    if response.status_code != 200:
        raise HTTPError(404, f"Floating IP not found for ID {floating_ip_id}")
    return response.json()["floatingip"]


async def index(request: Request):
    check_version(request)
    ctx = request.state.context
    response = await network_get(request, "/v2.0/floatingips", project_id=ctx.project_id)
    pools = await _pools(request)
    return json_response({"floating_ips": [_view(fip, pools) for fip in response.json().get("floatingips", [])]})


async def show(request: Request, floating_ip_id: str):
    check_version(request)
    fip = await _floating_ip(request, floating_ip_id)
    return json_response({"floating_ip": _view(fip, await _pools(request))})


async def create(request: Request):
    check_version(request)
    body = await read_json(request, required=False)
    validation.validate(CREATE, body)
    wanted = (body or {}).get("pool")
    pools = await _pools(request)
    name = wanted or DEFAULT_POOL
    pool = next((n for n in pools if n["name"] == name), None) or next((n for n in pools if n["id"] == name), None)
    if pool is None:
        raise HTTPError(404, "Floating IP pool not found.")
    response = await compute_api(request).network.post(
        "/v2.0/floatingips", json={"floatingip": {"floating_network_id": pool["id"]}}, headers=_headers(request))
    if response.status_code != 201:
        kind = neutron_error(response).get("type")
        where = f" in pool {wanted}" if wanted else ""
        if kind == "OverQuota":
            raise HTTPError(403, f"IP allocation over quota{where}.")
        if kind == "IpAddressGenerationFailure":
            raise HTTPError(404, f"No more floating IPs{where or ' available'}.")
        raise HTTPError(400, f"Floating IP allocation failed: {response.text[:200]}")
    return json_response({"floating_ip": _view(response.json()["floatingip"], pools)})


async def delete(request: Request, floating_ip_id: str):
    check_version(request)
    fip = await _floating_ip(request, floating_ip_id)
    response = await compute_api(request).network.delete(f"/v2.0/floatingips/{segment(fip['id'])}",
                                                         headers=_headers(request))
    if response.status_code == 403:
        raise HTTPError(403, "Policy doesn't allow os_compute_api:os-floating-ips:delete to be performed.")
    if response.status_code not in (204, 404):
        raise HTTPError(400, f"Floating IP {floating_ip_id} could not be released: {response.text[:200]}")
    return empty_response(202)


async def pools_index(request: Request):
    check_version(request)
    return json_response({"floating_ip_pools": [{"name": n["name"]} for n in await _pools(request)]})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-floating-ips", index)
    router.add("POST", "/v2.1/os-floating-ips", create)
    router.add("GET", "/v2.1/os-floating-ips/{floating_ip_id}", show)
    router.add("DELETE", "/v2.1/os-floating-ips/{floating_ip_id}", delete)
    router.add("GET", "/v2.1/os-floating-ip-pools", pools_index)
