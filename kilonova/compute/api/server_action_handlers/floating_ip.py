"""addFloatingIp / removeFloatingIp (until 2.43; 404 from 2.44, as upstream): a floating IP of the caller's,
found by its address, associated with (or taken off) one of the server's fixed IPs through the network
service with the caller's token. The server's addresses show it once its host has refreshed the server's
network information (the network service's ``network-changed``)."""
from __future__ import annotations

import ipaddress
from typing import Any

from kilonova.common.clients import neutron_error, segment
from kilonova.common.http import HTTPError, empty_response
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.floating_ips import network_get
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles

ADDRESS = {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
ADD = {"type": "object", "properties": {"addFloatingIp": {
    "type": "object", "properties": {"address": ADDRESS, "fixed_address": ADDRESS},
    "required": ["address"], "additionalProperties": False}}, "required": ["addFloatingIp"],
    "additionalProperties": False}
REMOVE = {"type": "object", "properties": {"removeFloatingIp": {
    "type": "object", "properties": {"address": ADDRESS}, "required": ["address"], "additionalProperties": False}},
    "required": ["removeFloatingIp"], "additionalProperties": False}


async def _by_address(request, address: str) -> dict[str, Any]:
    response = await network_get(request, "/v2.0/floatingips", floating_ip_address=address)
    found = response.json().get("floatingips", []) if response.status_code == 200 else []
    if not found:
        raise HTTPError(404, "floating IP not found")
    return found[0]


async def _set_port(request, fip: dict[str, Any], body: dict[str, Any]):
    return await compute_api(request).network.put(f"/v2.0/floatingips/{segment(fip['id'])}",
                                                  json={"floatingip": body},
                                                  headers={"X-Auth-Token": request.state.context.token})


def _fixed_address(ref: lookup.ServerRef, wanted: str | None, address: str) -> tuple[str, str]:
    """(port id, fixed address) of the server the floating IP goes to."""
    network_info = ref.server.get("network_info") or []
    if not network_info:
        raise HTTPError(400, "Instance network is not ready yet")
    fixed = [(vif["port_id"], ip["ip_address"]) for vif in network_info for ip in vif.get("fixed_ips", [])]
    if not fixed:
        raise HTTPError(400, "No fixed IPs associated to instance")
    if wanted is not None:
        chosen = next((item for item in fixed if item[1] == wanted), None)
        if chosen is None:
            raise HTTPError(400, "Specified fixed address not assigned to instance")
        return chosen
    chosen = next((item for item in fixed if ipaddress.ip_address(item[1]).version == 4), None)
    if chosen is None:
        raise HTTPError(400, f"Unable to associate floating IP {address} to any fixed IPs for instance {ref.uuid}. "
                             "Instance has no fixed IPv4 addresses to associate.")
    return chosen


@handles("addFloatingIp")
async def add_floating_ip(request, ref: lookup.ServerRef, key: str, body: dict):
    if want(request, "2.44"):
        raise HTTPError(404, "The resource could not be found.")
    validation.validate(ADD, body)
    address = body[key]["address"]
    port_id, fixed = _fixed_address(ref, body[key].get("fixed_address"), address)
    fip = await _by_address(request, address)
    response = await _set_port(request, fip, {"port_id": port_id, "fixed_ip_address": fixed})
    if response.status_code == 403:
        raise HTTPError(403, "Policy doesn't allow os_compute_api:os-floating-ips:add to be performed.")
    if response.status_code != 200:
        error = neutron_error(response).get("message") if response.content else response.text
        raise HTTPError(400, f"Unable to associate floating IP {address} to fixed IP {fixed} for instance "
                             f"{ref.uuid}. Error: {error}")
    return empty_response(202)


@handles("removeFloatingIp")
async def remove_floating_ip(request, ref: lookup.ServerRef, key: str, body: dict):
    if want(request, "2.44"):
        raise HTTPError(404, "The resource could not be found.")
    validation.validate(REMOVE, body)
    address = body[key]["address"]
    fip = await _by_address(request, address)
    if not fip.get("port_id") or (fip.get("port_details") or {}).get("device_id") != ref.uuid:
        raise HTTPError(409, f"Floating IP {address} is not associated with instance {ref.uuid}.")
    response = await _set_port(request, fip, {"port_id": None})
    if response.status_code == 403:
        raise HTTPError(403, "Policy doesn't allow os_compute_api:os-floating-ips:remove to be performed.")
    if response.status_code != 200:
        raise HTTPError(400, f"Floating IP {address} could not be disassociated: {response.text[:200]}")
    return empty_response(202)
