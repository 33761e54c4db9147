"""``/v2.0/floatingips``: allocate from an external network, associate with a port, list, disassociate, release.

A floating IP that gains or loses its association, or goes, is news for the router it goes through: the L3
agents are told (``l3_rpc``), and on the libvirt dataplane that router's namespace DNATs it to its fixed IP.
"""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.network import attributes as A
from kilonova.network import ipam, l3_errors, l3_views, policy, query
from kilonova.network.db import floating_ips, ports, usage
from kilonova.network.errors import bad_request, not_found
from kilonova.network.lookup import context, network_visible_to, respond_list, respond_one, service


def _address(name: str, value: Any) -> str | None:
    return None if value is None else str(ipam.parse_ip(value, name))


ATTRS = {
    "floating_network_id": A.Attr(A.to_string, allow_put=False), "subnet_id": A.Attr(A.to_string, allow_put=False),
    "floating_ip_address": A.Attr(_address, allow_put=False), "port_id": A.Attr(A.to_optional_string),
    "fixed_ip_address": A.Attr(_address), "description": A.Attr(A.to_string),
    "tags": A.Attr(A.to_string_list, allow_put=False),
    "project_id": A.Attr(A.to_string, allow_put=False), "tenant_id": A.Attr(A.to_string, allow_put=False),
}


def _port_for(session, ctx, port_id: str, project_id: str) -> dict[str, Any]:
    """The port a floating IP of ``project_id`` is to be associated with, as the caller may use it."""
    port, network = ports.get_with_network(session, port_id)
    if not policy.can_see_port(ctx, port, network["project_id"]):
        raise not_found("port", port_id)
    if not policy.privileged(ctx) and port["project_id"] != project_id:
        raise l3_errors.bad_floatingip_request(f"Cannot create floating IP and bind it to Port {port_id}, since "
                                               "that port is owned by a different tenant")
    return port


async def create(request: Request):
    ctx = context(request)
    policy.check_can_write(ctx, "rule:create_floatingip")
    values = A.parse(await read_json(request), "floatingip", ATTRS)
    if "floating_network_id" not in values:
        raise bad_request("Failed to parse request. Required attribute 'floating_network_id' not specified")
    if "floating_ip_address" in values:
        policy.check_attribute(ctx, "rule:create_floatingip:floating_ip_address")
    if values.get("fixed_ip_address") and not values.get("port_id"):
        raise l3_errors.bad_floatingip_request("fixed_ip_address cannot be specified without a port_id")
    row = {"id": str(uuid.uuid4()), "project_id": policy.project_for(ctx, values),
           "floating_network_id": values["floating_network_id"], "description": values.get("description", ""),
           "tags": values.get("tags", [])}

    def write(session):
        usage.check_quota(session, "floatingip", [row["project_id"]])
        network_visible_to(session, ctx, row["floating_network_id"])
        port = _port_for(session, ctx, values["port_id"], row["project_id"]) if values.get("port_id") else None
        return floating_ips.create(session, row, values.get("subnet_id"), values.get("floating_ip_address"), port,
                                   values.get("fixed_ip_address"))

    created, changed = await service(request).db.write(write)
    service(request).notifier.floating_ips_changed(changed)
    service(request).l3.routers_updated([created["router_id"]])
    return json_response({"floatingip": l3_views.floating_ip(created)}, status=201)


def _visible(session, ctx, floatingip_id: str) -> dict[str, Any]:
    fip = floating_ips.get(session, floatingip_id)
    if not (policy.privileged(ctx) or fip["project_id"] == ctx.project_id):
        raise l3_errors.floatingip_not_found(floatingip_id)
    return fip


def _owned(session, ctx, floatingip_id: str, rule: str) -> dict[str, Any]:
    fip = _visible(session, ctx, floatingip_id)
    policy.check_owner(ctx, "floatingip", fip, True, rule)
    return fip


async def index(request: Request):
    ctx = context(request)
    q = query.parse(request)
    visible_to = None if policy.privileged(ctx) else ctx.project_id
    rows = await service(request).db.read(floating_ips.list_floating_ips, visible_to, q.filters)
    return respond_list(request, "floatingips", [l3_views.floating_ip(f) for f in rows], q)


async def show(request: Request, floatingip_id: str):
    fip = await service(request).db.read(_visible, context(request), floatingip_id)
    return respond_one(request, "floatingip", l3_views.floating_ip(fip))


async def update(request: Request, floatingip_id: str):
    ctx = context(request)
    values = A.parse(await read_json(request), "floatingip", ATTRS, update=True)
    port_id = values.pop("port_id", ...)
    fixed_ip_address = values.pop("fixed_ip_address", None)

    def write(session):
        fip = _owned(session, ctx, floatingip_id, "rule:update_floatingip")
        port = _port_for(session, ctx, port_id, fip["project_id"]) if isinstance(port_id, str) else port_id
        return fip["router_id"], *floating_ips.update(session, floatingip_id, values, port, fixed_ip_address)

    before, updated, changed = await service(request).db.write(write)
    service(request).notifier.floating_ips_changed(changed)
    service(request).l3.routers_updated([before, updated["router_id"]])
    return respond_one(request, "floatingip", l3_views.floating_ip(updated))


async def delete(request: Request, floatingip_id: str):
    ctx = context(request)

    def write(session):
        fip = _owned(session, ctx, floatingip_id, "rule:delete_floatingip")
        return fip["router_id"], floating_ips.delete(session, floatingip_id)

    before, changed = await service(request).db.write(write)
    service(request).notifier.floating_ips_changed(changed)
    service(request).l3.routers_updated([before])
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2.0/floatingips", create)
    router.add("GET", "/v2.0/floatingips", index)
    router.add("GET", "/v2.0/floatingips/{floatingip_id}", show)
    router.add("PUT", "/v2.0/floatingips/{floatingip_id}", update)
    router.add("DELETE", "/v2.0/floatingips/{floatingip_id}", delete)
