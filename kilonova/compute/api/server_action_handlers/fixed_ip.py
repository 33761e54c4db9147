"""addFixedIp / removeFixedIp (upstream's multinic actions, until 2.43; 404 from 2.44): one more address on the
server's port of a network, or one address taken off its port, changed in the network service with the caller's
token. The network service's ``network-changed`` then has the server's host refresh its network information,
where ``addresses`` shows the change. Refused to non-admins while the server is locked, as upstream."""
from __future__ import annotations

from typing import Any

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, empty_response
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles

ADD = {"type": "object", "properties": {"addFixedIp": {
    "type": "object", "properties": {"networkId": {"type": ["string", "integer"], "minLength": 1, "maxLength": 255}},
    "required": ["networkId"], "additionalProperties": False}}, "required": ["addFixedIp"],
    "additionalProperties": False}
REMOVE = {"type": "object", "properties": {"removeFixedIp": {
    "type": "object", "properties": {"address": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}},
    "required": ["address"], "additionalProperties": False}}, "required": ["removeFixedIp"],
    "additionalProperties": False}


def _check(request, ref: lookup.ServerRef, body: dict, schema: dict) -> None:
    if want(request, "2.44"):
        raise HTTPError(404, "The resource could not be found.")
    validation.validate(schema, body)
    if ref.server.get("locked") and not request.state.context.is_admin:
        raise HTTPError(409, f"Instance {ref.uuid} is locked")


async def _port(request, port_id: str) -> dict[str, Any] | None:
    response = await compute_api(request).network.get(f"/v2.0/ports/{segment(port_id)}",
                                                      headers={"X-Auth-Token": request.state.context.token})
    return response.json()["port"] if response.status_code == 200 else None


async def _set_fixed_ips(request, port_id: str, fixed_ips: list[dict]):
    return await compute_api(request).network.put(f"/v2.0/ports/{segment(port_id)}",
                                                  json={"port": {"fixed_ips": fixed_ips}},
                                                  headers={"X-Auth-Token": request.state.context.token})


@handles("addFixedIp")
async def add_fixed_ip(request, ref: lookup.ServerRef, key: str, body: dict):
    _check(request, ref, body, ADD)
    network_id = str(body[key]["networkId"])
    vif = next((v for v in ref.server.get("network_info") or [] if v.get("network_id") == network_id), None)
    port = await _port(request, vif["port_id"]) if vif else None
    if port is None:
        raise HTTPError(400, f"Network could not be found for instance {ref.uuid}.")
    subnets = await compute_api(request).network.get("/v2.0/subnets", params={"network_id": network_id},
                                                     headers={"X-Auth-Token": request.state.context.token})
    kept = [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]} for ip in port["fixed_ips"]]
    # As upstream: a new address from the first of the network's subnets that has one left.
    for subnet in subnets.json().get("subnets", []) if subnets.status_code == 200 else []:
        response = await _set_fixed_ips(request, port["id"], kept + [{"subnet_id": subnet["id"]}])
        if response.status_code == 200:
            return empty_response(202)
    raise HTTPError(400, f"No fixed IP addresses available for network: {network_id}")


@handles("removeFixedIp")
async def remove_fixed_ip(request, ref: lookup.ServerRef, key: str, body: dict):
    _check(request, ref, body, REMOVE)
    address = body[key]["address"]
    vif = next((v for v in ref.server.get("network_info") or []
                if any(ip["ip_address"] == address for ip in v.get("fixed_ips", []))), None)
    port = await _port(request, vif["port_id"]) if vif else None
    if port is None or not any(ip["ip_address"] == address for ip in port["fixed_ips"]):
        raise HTTPError(400, f"Instance {ref.uuid} doesn't have fixed IP '{address}'.")
    kept = [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]} for ip in port["fixed_ips"]
            if ip["ip_address"] != address]
    response = await _set_fixed_ips(request, port["id"], kept)
    if response.status_code != 200:
        raise HTTPError(400, f"Fixed IP {address} could not be removed from instance {ref.uuid}: "
                             f"{response.text[:200]}")
    return empty_response(202)
