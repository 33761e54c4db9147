"""``/v2.0/routers``: create, list, show, update (gateway, routes), delete, and add/remove interfaces."""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router as HTTPRouter
from kilonova.common.http import empty_response, json_response, read_json
from kilonova.network import attributes as A
from kilonova.network import ipam, l3_errors, l3_views, policy, query
from kilonova.network.db import ports, routers, subnets, usage
from kilonova.network.errors import bad_request, not_found, policy_denied
from kilonova.network.lookup import context, network_visible_to, respond_list, respond_one, service

GATEWAY_KEYS = {"network_id", "enable_snat", "external_fixed_ips", "qos_policy_id"}


def _gateway(name: str, value: Any) -> dict[str, Any] | None:
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"Invalid input for {name}. Reason: '{value}' is not a dictionary.")
    unexpected = sorted(set(value) - GATEWAY_KEYS)
    if unexpected:
        raise bad_request(f"Invalid input for {name}. Reason: Unexpected keys supplied: {', '.join(unexpected)}.")
    if value.get("qos_policy_id") is not None:
        raise bad_request("QoS policies are not supported by this cloud; leave qos_policy_id out.")
    info: dict[str, Any] = {}
    if "network_id" in value:
        info["network_id"] = A.to_string("network_id", value["network_id"])
    if "enable_snat" in value:
        info["enable_snat"] = A.to_bool("enable_snat", value["enable_snat"])
    if "external_fixed_ips" in value:
        fixed = value["external_fixed_ips"]
        if not isinstance(fixed, list) or not all(isinstance(item, dict) and item and
                                                  set(item) <= {"subnet_id", "ip_address"} for item in fixed):
            raise bad_request(f"Invalid input for external_fixed_ips. Reason: Invalid data format for fixed IP: "
                              f"'{fixed}'.")
        info["external_fixed_ips"] = fixed
    if info and "network_id" not in info:
        raise bad_request(f"Invalid input for {name}. Reason: Validation of dictionary's keys failed. Expected "
                          "keys: {'network_id'} Provided keys: " + str(set(value)) + ".")
    return info


def _routes(name: str, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise bad_request(f"Invalid input for {name}. Reason: '{value}' is not a list.")
    routes = []
    for route in value:
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise bad_request(f"Invalid input for {name}. Reason: Invalid data format for hostroute: '{route}'.")
        destination = ipam.parse_cidr(route["destination"], None)
        routes.append({"destination": str(destination), "nexthop": str(ipam.parse_ip(route["nexthop"], name))})
    return routes


def _false_only(name: str, value: Any) -> bool:
    if A.to_bool(name, value):
        raise bad_request(f"{'Distributed' if name == 'distributed' else 'HA'} routers are not supported by this "
                          "cloud.")
    return False


ATTRS = {
    "name": A.Attr(A.to_string), "description": A.Attr(A.to_string), "admin_state_up": A.Attr(A.to_bool),
    "external_gateway_info": A.Attr(_gateway), "routes": A.Attr(_routes, allow_post=False),
    "distributed": A.Attr(_false_only), "ha": A.Attr(_false_only),
    "availability_zone_hints": A.Attr(A.to_string_list, allow_put=False), "tags": A.Attr(A.to_string_list),
    "flavor_id": A.Attr(A.to_optional_string, allow_put=False),
    "project_id": A.Attr(A.to_string, allow_put=False), "tenant_id": A.Attr(A.to_string, allow_put=False),
}
NOT_COLUMNS = ("project_id", "tenant_id", "external_gateway_info", "distributed", "ha", "flavor_id")


def _check_gateway_policy(ctx, action: str, info: dict[str, Any] | None) -> None:
    for key in ("enable_snat", "external_fixed_ips"):
        if info and key in info:
            policy.check_attribute(ctx, f"rule:{action}:external_gateway_info:{key}")


def _check_gateway_network(ctx, session, info: dict[str, Any] | None) -> None:
    """The gateway's network must be one the caller sees (404 otherwise)."""
    if info and info.get("network_id"):
        network_visible_to(session, ctx, info["network_id"])


def _show(ctx, router: dict[str, Any]) -> dict[str, Any]:
    return l3_views.router(router, policy.privileged(ctx))


async def create(request: Request):
    ctx = context(request)
    policy.check_can_write(ctx, "rule:create_router")
    values = A.parse(await read_json(request), "router", ATTRS)
    if values.get("flavor_id"):
        raise bad_request("Router flavors are not supported by this cloud.")
    gateway = values.get("external_gateway_info")
    _check_gateway_policy(ctx, "create_router", gateway)
    row = {"id": str(uuid.uuid4()), "project_id": policy.project_for(ctx, values),
           **{k: v for k, v in values.items() if k not in NOT_COLUMNS}}

    def write(session):
        usage.check_quota(session, "router", [row["project_id"]])
        _check_gateway_network(ctx, session, gateway)
        return routers.create(session, row, gateway)

    created = await service(request).db.write(write)
    service(request).l3.routers_updated([created["id"]])
    return json_response({"router": _show(ctx, created)}, status=201)


def _visible(ctx, router: dict[str, Any]) -> bool:
    return policy.privileged(ctx) or router["project_id"] == ctx.project_id


def visible_router(session, ctx, router_id: str) -> dict[str, Any]:
    router = routers.get(session, router_id)
    if not _visible(ctx, router):
        raise l3_errors.router_not_found(router_id)
    return router


def _owned_router(session, ctx, router_id: str, rule: str) -> dict[str, Any]:
    router = visible_router(session, ctx, router_id)
    policy.check_owner(ctx, "router", router, True, rule)
    return router


async def index(request: Request):
    ctx = context(request)
    q = query.parse(request)
    visible_to = None if policy.privileged(ctx) else ctx.project_id
    rows = await service(request).db.read(routers.list_routers, visible_to, q.filters)
    return respond_list(request, "routers", [_show(ctx, r) for r in rows], q)


async def show(request: Request, router_id: str):
    ctx = context(request)
    router = await service(request).db.read(visible_router, ctx, router_id)
    return respond_one(request, "router", _show(ctx, router))


async def update(request: Request, router_id: str):
    ctx = context(request)
    values = A.parse(await read_json(request), "router", ATTRS, update=True)
    gateway = values.get("external_gateway_info", ...)
    _check_gateway_policy(ctx, "update_router", gateway if gateway is not ... else None)

    def write(session):
        _owned_router(session, ctx, router_id, "rule:update_router")
        _check_gateway_network(ctx, session, gateway if gateway is not ... else None)
        return routers.update(session, router_id, {k: v for k, v in values.items() if k not in NOT_COLUMNS},
                              gateway)

    updated = await service(request).db.write(write)
    service(request).l3.routers_updated([router_id])
    return respond_one(request, "router", _show(ctx, updated))


async def delete(request: Request, router_id: str):
    ctx = context(request)

    def write(session):
        _owned_router(session, ctx, router_id, "rule:delete_router")
        routers.delete(session, router_id)

    await service(request).db.write(write)
    service(request).l3.routers_updated([router_id])
    return empty_response(204)


def _interface_body(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        raise l3_errors.bad_router_request("Either subnet_id or port_id must be specified")
    subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
    for name, value in (("subnet_id", subnet_id), ("port_id", port_id)):
        if value is not None and not isinstance(value, str):
            raise bad_request(f"Invalid input for {name}. Reason: '{value}' is not a valid string.")
    if not subnet_id and not port_id:
        raise l3_errors.bad_router_request("Either subnet_id or port_id must be specified")
    return subnet_id, port_id


def _visible_subnet(session, ctx, subnet_id: str) -> dict[str, Any]:
    subnet, network = subnets.get_with_network(session, subnet_id)
    if not (policy.can_see_network(ctx, network) or subnet["project_id"] == ctx.project_id):
        raise not_found("subnet", subnet_id)
    return subnet


def _usable_port(session, ctx, port_id: str) -> dict[str, Any]:
    port, network = ports.get_with_network(session, port_id)
    if not policy.can_see_port(ctx, port, network["project_id"]):
        raise not_found("port", port_id)
    if not policy.privileged(ctx) and port["project_id"] != ctx.project_id:
        raise policy_denied("rule:add_router_interface")
    return port


async def add_interface(request: Request, router_id: str):
    ctx = context(request)
    subnet_id, port_id = _interface_body(await read_json(request))
    if subnet_id and port_id:
        raise l3_errors.bad_router_request("Cannot specify both subnet-id and port-id")

    def write(session):
        _owned_router(session, ctx, router_id, "rule:add_router_interface")
        if port_id:
            return routers.add_interface_by_port(session, router_id, _usable_port(session, ctx, port_id))
        return routers.add_interface_by_subnet(session, router_id, _visible_subnet(session, ctx, subnet_id))

    info = await service(request).db.write(write)
    service(request).l3.routers_updated([router_id])
    return json_response(info)


async def remove_interface(request: Request, router_id: str):
    ctx = context(request)
    subnet_id, port_id = _interface_body(await read_json(request))

    def write(session):
        _owned_router(session, ctx, router_id, "rule:remove_router_interface")
        return routers.remove_interface(session, router_id, subnet_id, port_id)

    info = await service(request).db.write(write)
    service(request).l3.routers_updated([router_id])
    return json_response(info)


def register(router: HTTPRouter) -> None:
    router.add("POST", "/v2.0/routers", create)
    router.add("GET", "/v2.0/routers", index)
    router.add("GET", "/v2.0/routers/{router_id}", show)
    router.add("PUT", "/v2.0/routers/{router_id}", update)
    router.add("DELETE", "/v2.0/routers/{router_id}", delete)
    router.add("PUT", "/v2.0/routers/{router_id}/add_router_interface", add_interface)
    router.add("PUT", "/v2.0/routers/{router_id}/remove_router_interface", remove_interface)
