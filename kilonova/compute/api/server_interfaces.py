"""Port interfaces of a server (``/servers/{id}/os-interface``), as upstream's os-interface.

List and show read the server's ports from the network service with the caller's token. An attach
finds the caller's port (``port_id``: not in use, of the server's project) or makes one on the network
named (``net_id``, with ``fixed_ips``), or on the one network the project has, with the caller's token
too -- so what the caller may not see is a 404 as upstream's -- once the ``attach_interface`` instance
action is recorded (a refusal then ends it as failed, its ``compute_attach_interface`` event an Error with
the reason, as upstream's compute manager records it), and asks the server's host to bind and plug it
(``agent/operations/interfaces.py``), waiting for the answer, as upstream's RPC call does. A detach records ``detach_interface`` and asks
the host to unplug the port; a port the attach made is deleted then, a user's port only unbound.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.clients import neutron_error, segment
from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError, UnsupportedVersion
from kilonova.compute.api import common
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_actions import begin, check_startable, undo_begin
from kilonova.compute.db import instance_actions, instances

_UUID = {"type": "string", "format": "uuid"}
_TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}


def _schema(with_tag: bool) -> dict:
    attachment: dict[str, Any] = {
        "net_id": _UUID, "port_id": _UUID,
        "fixed_ips": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "properties": {"ip_address": {"type": "string", "anyOf": [
                {"format": "ipv4"}, {"format": "ipv6"}]}},
            "required": ["ip_address"], "additionalProperties": False}}}
    if with_tag:
        attachment["tag"] = _TAG
    return {"type": "object", "properties": {"interfaceAttachment": {
        "type": "object", "properties": attachment, "additionalProperties": False}},
        "additionalProperties": False}


CREATE, CREATE_2_49 = _schema(False), _schema(True)


def _headers(request: Request) -> dict[str, str]:
    return {"X-Auth-Token": request.state.context.token}


def _network(request: Request):
    return compute_api(request).network


def _view(request: Request, port: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    view = {"port_state": port.get("status"), "port_id": port["id"], "net_id": port["network_id"],
            "mac_addr": port.get("mac_address"),
            "fixed_ips": [{"subnet_id": ip.get("subnet_id"), "ip_address": ip["ip_address"]}
                          for ip in port.get("fixed_ips") or []]}
    if want(request, "2.70"):
        vif = next((v for v in server.get("network_info") or [] if v.get("port_id") == port["id"]), None)
        view["tag"] = (vif or {}).get("tag")
    return view


async def _port(request: Request, port_id: str) -> dict[str, Any]:
    response = await _network(request).get(f"/v2.0/ports/{segment(port_id)}", headers=_headers(request))
    if response.status_code != 200:
        raise HTTPError(404, f"Port id {port_id} could not be found.")
    return response.json()["port"]


async def _find(request: Request, server_id: str) -> lookup.ServerRef:
    return await lookup.find(compute_api(request), request.state.context, server_id)


async def index(request: Request, server_id: str):
    ref = await _find(request, server_id)
    response = await _network(request).get("/v2.0/ports", params={"device_id": ref.uuid}, headers=_headers(request))
    if response.status_code != 200:
        raise HTTPError(502, f"The network service answered {response.status_code} for the server's ports.")
    return json_response({"interfaceAttachments": [_view(request, port, ref.server)
                                                   for port in response.json()["ports"]]})


async def show(request: Request, server_id: str, port_id: str):
    ref = await _find(request, server_id)
    port = await _port(request, port_id)
    if port.get("device_id") != ref.uuid:
        raise HTTPError(404, f"Instance {ref.uuid} does not have a port with id {port_id}")
    return json_response({"interfaceAttachment": _view(request, port, ref.server)})


def _check_writer(request: Request, what: str) -> None:
    common.authorize(request, f"os_compute_api:os-attach-interfaces:{what}")


async def _users_port(request: Request, ref: lookup.ServerRef, port_id: str) -> dict[str, Any]:
    port = await _port(request, port_id)
    if port.get("device_id"):
        raise HTTPError(409, f"Port {port_id} is still in use.")
    if port.get("project_id") != ref.server["project_id"]:
        raise HTTPError(400, f"Port {port_id} not usable for instance {ref.uuid}.")
    return port


async def _only_network(request: Request, ref: lookup.ServerRef) -> str:
    """No network named: the project's own networks, else the shared ones; exactly one, as upstream."""
    project = ref.server["project_id"]
    for params in ({"project_id": project, "shared": "False"}, {"shared": "True"}):
        response = await _network(request).get("/v2.0/networks", params=params, headers=_headers(request))
        networks = response.json().get("networks", []) if response.status_code == 200 else []
        networks = [n for n in networks if not n.get("router:external")]
        if len(networks) > 1:
            raise HTTPError(400, "More than one possible network found. Specify network ID(s) to select which "
                                 "one(s) to connect to.")
        if networks:
            return networks[0]["id"]
    raise HTTPError(400, f"No specific network was requested and none are available for project '{project}'.")


async def _new_port(request: Request, ref: lookup.ServerRef, net_id: str | None, ip: str | None) -> dict[str, Any]:
    net_id = net_id or await _only_network(request, ref)
    network = await _network(request).get(f"/v2.0/networks/{segment(net_id)}", headers=_headers(request))
    if network.status_code != 200:
        raise HTTPError(404, f"Network {net_id} could not be found.")
    port: dict[str, Any] = {"network_id": net_id, "project_id": ref.server["project_id"]}
    if ip:
        port["fixed_ips"] = [{"ip_address": ip}]
    response = await _network(request).post("/v2.0/ports", json={"port": port}, headers=_headers(request))
    if response.status_code == 201:
        return response.json()["port"]
    error = neutron_error(response)
    kind = error.get("type")
    if kind == "IpAddressGenerationFailure":
        raise HTTPError(400, f"No fixed IP addresses available for network: {net_id}")
    if kind == "IpAddressAlreadyAllocated":
        raise HTTPError(409, f"Fixed IP address {ip} is already in use on instance {ref.uuid}.")
    if response.status_code == 404:
        raise HTTPError(404, f"Network {net_id} could not be found.")
    if kind == "OverQuota":
        raise HTTPError(403, "Maximum number of ports exceeded")
    if response.status_code == 403:
        raise HTTPError(403, error.get("message") or f"Port creation on network {net_id} is not allowed.")
    raise HTTPError(400, error.get("message") or f"Port creation failed: {response.text[:200]}")


async def create(request: Request, server_id: str):
    body = await read_json(request)
    validation.validate(CREATE_2_49 if want(request, "2.49") else CREATE, body)
    ref = await _find(request, server_id)
    _check_writer(request, "create")
    attachment = body.get("interfaceAttachment") or {}
    net_id, port_id = attachment.get("net_id"), attachment.get("port_id")
    ip = (attachment.get("fixed_ips") or [{}])[0].get("ip_address")
    if net_id and port_id:
        raise HTTPError(400, "Must not input both network_id and port_id")
    if ip and not net_id:
        raise HTTPError(400, "Must input network_id when request IP address")
    check_startable(request, ref, "attach_interface")
    server = await begin(request, ref, "attach_interface")
    try:
        port = await _users_port(request, ref, port_id) if port_id else await _new_port(request, ref, net_id, ip)
    except HTTPError as refused:
        await ref.cell.db.write(instance_actions.finish_last_event, ref.uuid, request.state.context.request_id,
                                "compute_attach_interface", "Error", refused.message, None, server.get("host"),
                                "attach_interface")
        raise
    try:
        await _call_host(request, ref, server, "attach_interface", port_id=port["id"], preexisting=bool(port_id),
                         tag=attachment.get("tag"))
    except BaseException:
        if not port_id:
            await _network(request).delete(f"/v2.0/ports/{port['id']}", headers=_headers(request))
        raise
    try:
        server = await ref.cell.db.read(instances.get, ref.uuid)  # with the new port's tag
    except NotFound:
        pass
    return json_response({"interfaceAttachment": _view(request, await _port(request, port["id"]), server)})


async def _call_host(request: Request, ref: lookup.ServerRef, server: dict, method: str, **kwargs: Any) -> None:
    """The host's answer, its refusals as upstream's codes; an action not handed over is finished as failed."""
    request_id = request.state.context.request_id
    try:
        await compute_api(request).compute_rpc(server["host"]).call(method, instance=server, request_id=request_id,
                                                                    **kwargs)
    except (NoSuchTarget, UnsupportedVersion) as exc:
        await undo_begin(ref, method, request_id)
        raise HTTPError(409, f"Compute host {server['host']} cannot {method.replace('_', ' ')} now: {exc}") from None
    except RemoteError as exc:
        if exc.exc_type == "UnsupportedVersion":
            await undo_begin(ref, method, request_id)
            raise HTTPError(409, f"Compute host {server['host']} does not support {method} yet.") from None
        if exc.exc_type == "InterfaceAttachNotSupported":
            raise HTTPError(400, exc.message) from None
        if exc.exc_type == "PortNotAttached":
            raise HTTPError(404, exc.message) from None
        if method == "attach_interface":
            raise HTTPError(500, f"Failed to attach network adapter device to {ref.uuid}") from None
        raise HTTPError(500, f"Failed to detach network adapter device from {ref.uuid}") from None
    except RPCError as exc:
        raise HTTPError(504, f"Compute host {server['host']} did not answer: {exc}") from None


async def delete(request: Request, server_id: str, port_id: str):
    ref = await _find(request, server_id)
    _check_writer(request, "delete")
    check_startable(request, ref, "detach_interface")
    if not any(v.get("port_id") == port_id for v in ref.server.get("network_info") or []):
        raise HTTPError(404, f"Port {port_id} is not attached")
    server = await begin(request, ref, "detach_interface")
    await _call_host(request, ref, server, "detach_interface", port_id=port_id)
    return empty_response(202)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/os-interface", index)
    router.add("POST", "/v2.1/servers/{server_id}/os-interface", create)
    router.add("GET", "/v2.1/servers/{server_id}/os-interface/{port_id}", show)
    router.add("DELETE", "/v2.1/servers/{server_id}/os-interface/{port_id}", delete)
