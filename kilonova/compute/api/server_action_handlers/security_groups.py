"""addSecurityGroup / removeSecurityGroup (every microversion): the group, found by name or id in the
caller's project, is added to (or taken off) each of the server's ports through the network service
with the caller's token, as upstream; the server then shows it among its ``security_groups``."""
from __future__ import annotations

from typing import Any

from kilonova.common.http import HTTPError, empty_response
from kilonova.compute.api import lookup
from kilonova.compute.api import security_group_lookup as groups
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.db import instances


def _group_name(body: dict[str, Any], key: str) -> str:
    """The group the body names, refused as upstream's action parser refuses it."""
    wanted = body[key]
    if not isinstance(wanted, dict):
        raise HTTPError(400, "Missing parameter dict")
    if "name" not in wanted:
        raise HTTPError(400, "Security group not specified")
    name = wanted["name"]
    if not isinstance(name, str) or not name.strip():
        raise HTTPError(400, "Security group name cannot be empty")
    return name


async def _group_and_ports(request, ref: lookup.ServerRef, name: str) -> tuple[dict, list[dict]]:
    group = await groups.find_group(request, name)
    if group is None:
        raise HTTPError(404, f"Security group {name} is not found for project {request.state.context.project_id}")
    ports = await groups.server_ports(request, ref.uuid)
    if not ports:
        raise HTTPError(404, f"instance_id {ref.uuid} could not be found as device id on any ports")
    return group, ports


async def _show_on_server(ref: lookup.ServerRef, names: list[str]) -> None:
    """The names the server's ``security_groups`` shows (upstream reads them from its ports)."""
    if ref.cell is not None:
        await ref.cell.db.write(instances.update, ref.uuid, {"security_groups": names})


@handles("addSecurityGroup")
async def add_security_group(request, ref: lookup.ServerRef, key: str, body: dict):
    name = _group_name(body, key)
    group, ports = await _group_and_ports(request, ref, name)
    for port in ports:
        if not (port.get("fixed_ips") and port.get("port_security_enabled", True)):
            raise HTTPError(400, "Network requires port_security_enabled and subnet associated in order to apply "
                                 "security groups.")
    for port in ports:
        response = await groups.set_port_groups(request, port["id"], [*port.get("security_groups", []), group["id"]])
        if response.status_code == 400:
            raise HTTPError(400, groups.neutron_message(response))
        if response.status_code != 200:
            raise groups.unavailable(response)
    shown = list(ref.server.get("security_groups") or [])
    await _show_on_server(ref, shown + [group["name"]] if group["name"] not in shown else shown)
    return empty_response(202)


@handles("removeSecurityGroup")
async def remove_security_group(request, ref: lookup.ServerRef, key: str, body: dict):
    name = _group_name(body, key)
    group, ports = await _group_and_ports(request, ref, name)
    found = False
    for port in ports:
        current = port.get("security_groups", [])
        if group["id"] not in current:
            continue
        response = await groups.set_port_groups(request, port["id"], [g for g in current if g != group["id"]])
        if response.status_code != 200:
            raise groups.unavailable(response)
        found = True
    if not found:
        raise HTTPError(404, f"Security group {name} not associated with the instance {ref.uuid}")
    await _show_on_server(ref, [n for n in ref.server.get("security_groups") or [] if n != group["name"]])
    return empty_response(202)
