"""``/v2.0/ports``: create with MAC and fixed-IP allocation, bind, list with filters, update, delete."""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, read_json
from kilonova.network import attributes as A
from kilonova.network import l3_errors, mac, policy, query, views
from kilonova.network.db import ports, usage
from kilonova.network.db.networks import L3_OWNERS
from kilonova.network.errors import bad_request, not_found, policy_denied
from kilonova.network.lookup import (context, creation_response, network_visible_to, respond_list, respond_one,
                                    service, write_retrying)


def _group_ids(name: str, value):
    return [] if value is None else A.to_string_list(name, value)


ATTRS = {
    "name": A.Attr(A.to_string), "network_id": A.Attr(A.to_string, allow_put=False),
    "admin_state_up": A.Attr(A.to_bool), "mac_address": A.Attr(), "fixed_ips": A.Attr(),
    "device_id": A.Attr(A.to_string), "device_owner": A.Attr(A.to_string), "description": A.Attr(A.to_string),
    "binding:host_id": A.Attr(A.to_string), "binding:profile": A.Attr(A.to_dict),
    "binding:vnic_type": A.Attr(A.to_string), "port_security_enabled": A.Attr(A.to_bool),
    "security_groups": A.Attr(_group_ids), "allowed_address_pairs": A.Attr(),
    "tags": A.Attr(A.to_string_list), "project_id": A.Attr(A.to_string, allow_put=False),
    "tenant_id": A.Attr(A.to_string, allow_put=False),
}
ADMIN_ONLY = ("binding:host_id", "binding:profile")
VNIC_TYPES = ("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder", "smart-nic",
              "vdpa", "remote-managed")
RENAMED = {"binding:host_id": "binding_host_id", "binding:profile": "binding_profile",
           "binding:vnic_type": "binding_vnic_type"}
NOT_COLUMNS = ("project_id", "tenant_id", "network_id", "mac_address", "fixed_ips", "security_groups",
               "allowed_address_pairs")


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    return {RENAMED.get(k, k): v for k, v in values.items() if k not in NOT_COLUMNS}


def _check_values(ctx, action: str, values: dict[str, Any], network: dict[str, Any]) -> str | None:
    """Policy and format checks shared by create and update; returns the wanted MAC, if any."""
    policy.check_admin_attributes(ctx, action, values, ADMIN_ONLY)
    if values.get("device_owner", "").startswith("network:"):
        policy.check_attribute(ctx, f"rule:{action}:device_owner", network["project_id"])
    if any(isinstance(ip, dict) and "ip_address" in ip for ip in values.get("fixed_ips") or []):
        policy.check_attribute(ctx, f"rule:{action}:fixed_ips:ip_address", network["project_id"])
    if values.get("binding:vnic_type", "normal") not in VNIC_TYPES:
        raise bad_request(f"Invalid input for binding:vnic_type. Reason: '{values['binding:vnic_type']}' is not "
                          f"in {list(VNIC_TYPES)}.")
    if values.get("allowed_address_pairs"):
        raise bad_request("Allowed address pairs are not supported by this cloud.")
    if "mac_address" not in values:
        return None
    policy.check_attribute(ctx, f"rule:{action}:mac_address", network["project_id"])
    wanted = mac.normalize(values["mac_address"])
    if wanted is None:
        raise bad_request(f"Invalid input for mac_address. Reason: '{values['mac_address']}' is not a valid MAC "
                          "address.")
    return wanted


def _new_port(ctx, session, values: dict[str, Any]) -> tuple[dict[str, Any], list | None, str | None, list | None]:
    if "network_id" not in values:
        raise bad_request("Failed to parse request. Required attribute 'network_id' not specified")
    network = network_visible_to(session, ctx, values["network_id"])
    if network["external"]:
        policy.check_attribute(ctx, "rule:create_port:network", network["project_id"])
    wanted_mac = _check_values(ctx, "create_port", values, network)
    row = {"id": str(uuid.uuid4()), "network_id": network["id"], "project_id": policy.project_for(ctx, values),
           **_columns(values)}
    return row, values.get("fixed_ips"), wanted_mac, values.get("security_groups")


async def create(request: Request):
    ctx = context(request)
    body = await read_json(request)
    policy.check_can_write(ctx, "rule:create_port")
    items = A.bulk_items(body, "port", "ports")

    def create_all(session):
        # The networks are read in the port's own write transaction (every boot creates a port).
        specs = [_new_port(ctx, session, A.parse(item, "port", ATTRS)) for item in items]
        usage.check_quota(session, "port", [row["project_id"] for row, *_ in specs])
        return [ports.create(session, dict(row), fixed_ips, wanted, groups, policy.privileged(ctx))
                for row, fixed_ips, wanted, groups in specs]

    created = await write_retrying(request, create_all)
    for port in created:
        service(request).notifier.port_changed(None, port)
        service(request).sg_notifier.port_changed(None, port)
    shown = [views.port(p, policy.privileged(ctx)) for p in created]
    return creation_response("port", "ports", shown, bulk="ports" in body)


def _check_visible(ctx, port: dict[str, Any], network: dict[str, Any]) -> None:
    if not policy.can_see_port(ctx, port, network["project_id"]):
        raise not_found("port", port["id"])


async def _visible_port(request: Request, port_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    port, network = await service(request).db.read(ports.get_with_network, port_id)
    _check_visible(context(request), port, network)
    return port, network


async def index(request: Request):
    ctx = context(request)
    q = query.parse(request)
    visible_to = None if policy.privileged(ctx) else ctx.project_id
    if (q.fields and ports.LIGHT_FIELDS.issuperset(q.fields) and set(q.filters) <= {"id", "device_id"}
            and not (q.tags or q.sort or q.limit or q.marker)):
        # Only ids, devices and groups asked (the compute API's server views): no port objects to build.
        rows = await service(request).db.read(ports.list_port_groups, visible_to, q.filters)
        return respond_list(request, "ports", rows, q)
    rows = await service(request).db.read(ports.list_ports, visible_to, q.filters)
    return respond_list(request, "ports", [views.port(p, policy.privileged(ctx)) for p in rows], q,
                        special={"fixed_ips"})


async def show(request: Request, port_id: str):
    port, _ = await _visible_port(request, port_id)
    return respond_one(request, "port", views.port(port, policy.privileged(context(request))))


def _check_port_owner(ctx, port: dict[str, Any], network: dict[str, Any], rule: str) -> None:
    """Changes: an admin, or a member of the port's project or of its network's project."""
    if policy.privileged(ctx):
        return
    if not ctx.can_write or ctx.project_id not in (port["project_id"], network["project_id"]):
        raise policy_denied(rule)


async def update(request: Request, port_id: str):
    ctx = context(request)
    values = A.parse(await read_json(request), "port", ATTRS, update=True)

    def change(session) -> tuple[dict[str, Any], dict[str, Any]]:
        # The checks read the port in the update's own transaction (every move of a server rebinds its ports).
        port, network = ports.get_with_network(session, port_id)
        _check_visible(ctx, port, network)
        _check_port_owner(ctx, port, network, "rule:update_port")
        wanted_mac = _check_values(ctx, "update_port", values, network)
        return port, ports.update(session, port, _columns(values), values.get("fixed_ips"), wanted_mac,
                                  values.get("security_groups"), policy.privileged(ctx))

    port, updated = await write_retrying(request, change)
    service(request).notifier.port_changed(port, updated)
    service(request).sg_notifier.port_changed(port, updated)
    return respond_one(request, "port", views.port(updated, policy.privileged(ctx)))


async def delete(request: Request, port_id: str):
    ctx = context(request)
    port, network = await _visible_port(request, port_id)
    _check_port_owner(ctx, port, network, "rule:delete_port")
    if port["device_owner"] in L3_OWNERS:
        raise l3_errors.l3_port_in_use(port_id, port["device_owner"])
    routers = await service(request).db.write(ports.delete, port_id)
    service(request).notifier.port_changed(port, None)
    service(request).sg_notifier.port_changed(port, None)
    service(request).l3.routers_updated(routers)  # their floating IPs left the port
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2.0/ports", create)
    router.add("GET", "/v2.0/ports", index)
    router.add("GET", "/v2.0/ports/{port_id}", show)
    router.add("PUT", "/v2.0/ports/{port_id}", update)
    router.add("DELETE", "/v2.0/ports/{port_id}", delete)
