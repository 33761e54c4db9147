"""``/v2.0/subnets``: create with IPAM defaults and checks, list, show, update, delete."""
from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, read_json
from kilonova.network import attributes as A
from kilonova.network import ipam, policy, query, views
from kilonova.network.db import subnets, usage
from kilonova.network.errors import bad_request, invalid_input, not_found, policy_denied
from kilonova.network.lookup import context, creation_response, respond_list, respond_one, service, visible_network

UNSET = object()
ATTRS = {
    "name": A.Attr(A.to_string), "network_id": A.Attr(A.to_string, allow_put=False),
    "ip_version": A.Attr(A.to_int, allow_put=False), "cidr": A.Attr(allow_put=False),
    "gateway_ip": A.Attr(), "enable_dhcp": A.Attr(A.to_bool), "allocation_pools": A.Attr(),
    "dns_nameservers": A.Attr(), "host_routes": A.Attr(), "description": A.Attr(A.to_string),
    "ipv6_ra_mode": A.Attr(A.to_optional_string, allow_put=False),
    "ipv6_address_mode": A.Attr(A.to_optional_string, allow_put=False),
    "tags": A.Attr(A.to_string_list), "project_id": A.Attr(A.to_string, allow_put=False),
    "tenant_id": A.Attr(A.to_string, allow_put=False), "subnetpool_id": A.Attr(allow_put=False),
    "service_types": A.Attr(A.to_string_list),
}
IPV6_MODES = ("dhcpv6-stateful", "dhcpv6-stateless", "slaac")  # neutron-lib's order (its messages list them)


def _nameservers(value: Any, version: int) -> list[str]:
    if not isinstance(value, list):
        raise bad_request("Invalid input for dns_nameservers. Reason: it is not a list.")
    servers = [str(ipam.parse_ip(v, "dns_nameservers")) for v in value]
    for server in servers:
        if ipaddress.ip_address(server).version != version:
            raise invalid_input(f"dns_nameserver '{server}' does not match the ip_version '{version}'")
    if len(set(servers)) != len(servers):
        raise bad_request(f"Invalid input for dns_nameservers. Reason: Duplicate nameserver in {value}.")
    return servers


def _routes(value: Any, version: int) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise bad_request("Invalid input for host_routes. Reason: it is not a list.")
    routes = []
    for route in value:
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise bad_request(f"Invalid input for host_routes. Reason: Invalid data format for hostroute: "
                              f"'{route}'.")
        destination = ipam.parse_cidr(route["destination"], None)
        nexthop = ipam.parse_ip(route["nexthop"], "host_routes")
        for name, value in (("nexthop", nexthop), ("destination", destination)):
            if value.version != version:
                raise invalid_input(f"{name} '{route[name]}' does not match the ip_version '{version}'")
        routes.append({"destination": str(destination), "nexthop": str(nexthop)})
    return routes


def _ipv6_modes(values: dict[str, Any], version: int, cidr: ipam.IPNetwork) -> None:
    """Neutron's checks of ``ipv6_ra_mode`` (who sends router advertisements, and with which flags) and
    ``ipv6_address_mode`` (how ports get their addresses)."""
    for key in ("ipv6_ra_mode", "ipv6_address_mode"):
        if values.get(key) is not None and values[key] not in IPV6_MODES:
            raise bad_request(f"Invalid input for {key}. Reason: '{values[key]}' is not in {list(IPV6_MODES)}.")
    ra_mode, address_mode = values.get("ipv6_ra_mode"), values.get("ipv6_address_mode")
    if version == 4:
        for key in ("ipv6_ra_mode", "ipv6_address_mode"):
            if values.get(key) is not None:
                raise invalid_input(f"{key} is not valid when ip_version is 4")
        return
    if values.get("enable_dhcp", True) and cidr.prefixlen > 126:
        raise invalid_input("Subnet has a prefix length that is incompatible with DHCP service enabled")
    if (ra_mode or address_mode) and not values.get("enable_dhcp", True):
        raise invalid_input("ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False")
    if ra_mode and address_mode and ra_mode != address_mode:
        raise invalid_input(f"ipv6_ra_mode set to '{ra_mode}' with ipv6_address_mode set to '{address_mode}' is "
                            "not valid. If both attributes are set, they must be the same value")
    if ipam.is_auto_address(values) and cidr.prefixlen != 64:
        raise invalid_input(f"Invalid CIDR {cidr} for IPv6 address mode. OpenStack uses the EUI-64 address "
                            "format, which requires the prefix to be /64")


def new_row(ctx, values: dict[str, Any]) -> dict[str, Any]:
    if values.get("subnetpool_id"):
        raise bad_request("Subnet pools are not supported by this cloud; give a cidr.")
    if "cidr" not in values:
        raise bad_request("A cidr must be specified in the absence of a subnet pool")
    for required in ("network_id", "ip_version"):
        if required not in values:
            raise bad_request(f"Failed to parse request. Required attribute '{required}' not specified")
    version = values["ip_version"]
    if version not in (4, 6):
        raise bad_request(f"Invalid input for ip_version. Reason: '{version}' is not in [4, 6].")
    cidr = ipam.parse_cidr(values["cidr"], version)
    _ipv6_modes(values, version, cidr)
    gateway = values.get("gateway_ip", UNSET)
    gateway = ipam.default_gateway(cidr) if gateway is UNSET else ipam.check_gateway(cidr, gateway)
    pools = values.get("allocation_pools")
    pools = ipam.default_pools(cidr, gateway) if pools is None else ipam.check_pools(cidr, pools, gateway)
    return {
        "id": str(uuid.uuid4()), "network_id": values["network_id"], "project_id": policy.project_for(ctx, values),
        "name": values.get("name", ""), "ip_version": version, "cidr": str(cidr), "gateway_ip": gateway,
        "enable_dhcp": values.get("enable_dhcp", True), "allocation_pools": pools,
        "dns_nameservers": _nameservers(values.get("dns_nameservers", []), version),
        "host_routes": _routes(values.get("host_routes", []), version),
        "ipv6_ra_mode": values.get("ipv6_ra_mode"), "ipv6_address_mode": values.get("ipv6_address_mode"),
        "description": values.get("description", ""), "tags": values.get("tags", []),
    }


async def _check_network(request: Request, network_id: str) -> None:
    """Subnets go on the caller's own networks (admins: any)."""
    ctx = context(request)
    network = await visible_network(request, network_id)
    if not policy.privileged(ctx) and network["project_id"] != ctx.project_id:
        raise policy_denied("rule:create_subnet")


async def create(request: Request):
    ctx = context(request)
    body = await read_json(request)
    policy.check_can_write(ctx, "rule:create_subnet")
    rows = [new_row(ctx, A.parse(item, "subnet", ATTRS)) for item in A.bulk_items(body, "subnet", "subnets")]
    for network_id in {row["network_id"] for row in rows}:
        await _check_network(request, network_id)

    def create_all(session):
        usage.check_quota(session, "subnet", [row["project_id"] for row in rows])
        made = [subnets.create(session, row) for row in rows]
        return made, [port for subnet in made for port in subnets.add_automatic_addresses(session, subnet)]

    created, addressed = await service(request).db.write(create_all)
    service(request).notifier.network_changed(addressed)
    return creation_response("subnet", "subnets", [views.subnet(s) for s in created], bulk="subnets" in body)


async def _visible_subnet(request: Request, subnet_id: str) -> tuple[dict[str, Any], dict[str, Any], bool]:
    ctx = context(request)
    subnet, network = await service(request).db.read(subnets.get_with_network, subnet_id)
    visible = policy.can_see_network(ctx, network) or subnet["project_id"] == ctx.project_id
    return subnet, network, visible


async def index(request: Request):
    ctx = context(request)
    q = query.parse(request)
    visible_to = None if policy.privileged(ctx) else ctx.project_id
    rows = await service(request).db.read(subnets.list_subnets, visible_to, q.filters)
    return respond_list(request, "subnets", [views.subnet(s) for s in rows], q)


async def show(request: Request, subnet_id: str):
    subnet, _, visible = await _visible_subnet(request, subnet_id)
    if not visible:
        raise not_found("subnet", subnet_id)
    return respond_one(request, "subnet", views.subnet(subnet))


def _updated_values(subnet: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    cidr = ipaddress.ip_network(subnet["cidr"])
    changes = {k: v for k, v in values.items() if k in ("name", "enable_dhcp", "description", "tags")}
    if values.get("enable_dhcp") is False and (subnet["ipv6_ra_mode"] or subnet["ipv6_address_mode"]):
        raise invalid_input("Cannot disable enable_dhcp with ipv6 attributes set")
    gateway = subnet["gateway_ip"]
    if "gateway_ip" in values:
        gateway = changes["gateway_ip"] = ipam.check_gateway(cidr, values["gateway_ip"])
    if "allocation_pools" in values:
        changes["allocation_pools"] = ipam.check_pools(cidr, values["allocation_pools"], gateway)
    elif "gateway_ip" in values:
        ipam.check_pools(cidr, subnet["allocation_pools"], gateway)
    if "dns_nameservers" in values:
        changes["dns_nameservers"] = _nameservers(values["dns_nameservers"], subnet["ip_version"])
    if "host_routes" in values:
        changes["host_routes"] = _routes(values["host_routes"], subnet["ip_version"])
    return changes


async def update(request: Request, subnet_id: str):
    ctx = context(request)
    values = A.parse(await read_json(request), "subnet", ATTRS, update=True)
    subnet, _, visible = await _visible_subnet(request, subnet_id)
    policy.check_owner(ctx, "subnet", subnet, visible, "rule:update_subnet")
    updated = await service(request).db.write(subnets.update, subnet_id, _updated_values(subnet, values))
    return respond_one(request, "subnet", views.subnet(updated))


async def delete(request: Request, subnet_id: str):
    ctx = context(request)
    subnet, _, visible = await _visible_subnet(request, subnet_id)
    policy.check_owner(ctx, "subnet", subnet, visible, "rule:delete_subnet")
    unaddressed = await service(request).db.write(subnets.delete, subnet_id)
    service(request).notifier.network_changed(unaddressed)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2.0/subnets", create)
    router.add("GET", "/v2.0/subnets", index)
    router.add("GET", "/v2.0/subnets/{subnet_id}", show)
    router.add("PUT", "/v2.0/subnets/{subnet_id}", update)
    router.add("DELETE", "/v2.0/subnets/{subnet_id}", delete)
