"""The ``routers`` table, its gateway port and its interface ports, with Neutron's L3 consistency checks."""
from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.network import errors, l3_errors
from kilonova.network.db import networks, ports, subnets
from kilonova.network.l3_models import FloatingIP, Router
from kilonova.network.models import IPAllocation, Port, utcnow

INTERFACE = "network:router_interface"
GATEWAY = "network:router_gateway"
COLUMNS = ("id", "project_id", "name", "status", "admin_state_up", "gw_port_id", "enable_snat", "routes",
           "availability_zone_hints", "description", "tags", "created_at", "updated_at", "revision_number")


def load(session: Session, router_id: str) -> Router:
    router = session.get(Router, router_id)
    if router is None:
        raise l3_errors.router_not_found(router_id)
    return router


def to_dict(session: Session, router: Router) -> dict[str, Any]:
    values = {column: getattr(router, column) for column in COLUMNS}
    values["gateway"] = ports.get(session, router.gw_port_id) if router.gw_port_id else None
    return values


def get(session: Session, router_id: str) -> dict[str, Any]:
    return to_dict(session, load(session, router_id))


def list_routers(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    query = sa.select(Router).order_by(Router.created_at, Router.id)
    if visible_to is not None:
        query = query.where(Router.project_id == visible_to)
    for key in ("id", "name", "project_id"):
        if key in filters:
            query = query.where(getattr(Router, key).in_(filters[key]))
    return [to_dict(session, router) for router in session.scalars(query)]


def _touch(router: Router) -> None:
    router.revision_number += 1
    router.updated_at = utcnow()


def _new_port(session: Session, router_id: str, owner: str, network_id: str, project_id: str,
              fixed_ips: list | None) -> dict[str, Any]:
    """A router port, ACTIVE at once (the L3 agents converge on it after the commit; nothing waits for them)."""
    port = ports.create(session, {"id": str(uuid.uuid4()), "network_id": network_id, "project_id": project_id,
                                  "device_id": router_id, "device_owner": owner}, fixed_ips, None)
    session.execute(sa.update(Port).where(Port.id == port["id"]).values(status="ACTIVE"))
    return {**port, "status": "ACTIVE"}


def create(session: Session, row: dict[str, Any], gateway: dict[str, Any] | None) -> dict[str, Any]:
    router = Router(**row)
    session.add(router)
    session.flush()
    if gateway:
        _set_gateway(session, router, gateway)
    return to_dict(session, router)


def update(session: Session, router_id: str, values: dict[str, Any], gateway: Any) -> dict[str, Any]:
    """``gateway``: the new external_gateway_info (``{}``/None: none), or ``...`` to leave it."""
    router = load(session, router_id)
    if "routes" in values:
        _check_routes(session, router, values["routes"])
    for key, value in values.items():
        setattr(router, key, value)
    if gateway is not ...:
        _set_gateway(session, router, gateway or {})
    _touch(router)
    session.flush()
    return to_dict(session, router)


def delete(session: Session, router_id: str) -> None:
    router = load(session, router_id)
    if interface_ports(session, router_id):
        raise l3_errors.router_in_use(router_id)
    if router.gw_port_id:
        ports.delete(session, router.gw_port_id)
    session.delete(router)


# ---------------------------------------------------------------------------------------------------- gateway

def _floating_ips_through(session: Session, router_id: str) -> bool:
    return session.scalar(sa.select(FloatingIP.id).where(FloatingIP.router_id == router_id).limit(1)) is not None


def _set_gateway(session: Session, router: Router, info: dict[str, Any]) -> None:
    current = ports.get(session, router.gw_port_id) if router.gw_port_id else None
    network_id = info.get("network_id")
    if current is not None and network_id == current["network_id"]:
        if "enable_snat" in info:
            router.enable_snat = info["enable_snat"]
        wanted = info.get("external_fixed_ips")
        if wanted is not None and _addresses(wanted) != _addresses(current["fixed_ips"]):
            ports.update(session, current, {}, wanted, None)
        return
    if current is not None:
        if _floating_ips_through(session, router.id):
            raise l3_errors.gateway_in_use_by_floating_ip(router.id, current["network_id"])
        router.gw_port_id = None
        session.flush()
        ports.delete(session, current["id"])
        session.flush()
    if not network_id:
        router.enable_snat = True
        return
    network = networks.get(session, network_id)
    if not network["external"]:
        raise l3_errors.bad_router_request(f"Network {network_id} is not an external network")
    if not network["subnets"]:
        raise l3_errors.bad_router_request(f"No subnets defined on network {network_id}")
    port = _new_port(session, router.id, GATEWAY, network_id, "", info.get("external_fixed_ips"))
    router.gw_port_id = port["id"]
    router.enable_snat = info.get("enable_snat", True)


def _addresses(fixed_ips: list) -> set[tuple[Any, Any]]:
    """Requested or held external fixed IPs as comparable pairs (an entry may give only one of the two)."""
    return {(item.get("subnet_id"), item.get("ip_address")) for item in fixed_ips if isinstance(item, dict)}


# -------------------------------------------------------------------------------------------------- interfaces

def interface_ports(session: Session, router_id: str) -> list[dict[str, Any]]:
    ids = session.scalars(sa.select(Port.id).where(Port.device_id == router_id, Port.device_owner == INTERFACE)
                          .order_by(Port.created_at, Port.id)).all()
    return [ports.get(session, port_id) for port_id in ids]


def _attached_subnets(session: Session, router_id: str) -> list[dict[str, Any]]:
    ids = [ip["subnet_id"] for port in interface_ports(session, router_id) for ip in port["fixed_ips"]]
    return [subnets.get(session, subnet_id) for subnet_id in dict.fromkeys(ids)]


def _check_new_subnet(session: Session, router_id: str, subnet: dict[str, Any]) -> None:
    cidr = ipaddress.ip_network(subnet["cidr"])
    for attached in _attached_subnets(session, router_id):
        if attached["id"] == subnet["id"]:
            raise l3_errors.bad_router_request(f"Router already has a port on subnet {subnet['id']}")
        other = ipaddress.ip_network(attached["cidr"])
        if cidr.version == other.version and cidr.overlaps(other):
            raise l3_errors.bad_router_request(
                f"Cidr {subnet['cidr']} of subnet {subnet['id']} overlaps with cidr {attached['cidr']} of subnet "
                f"{attached['id']}")


def _interface_info(router: Router, port: dict[str, Any]) -> dict[str, Any]:
    subnet_ids = [ip["subnet_id"] for ip in port["fixed_ips"]]
    return {"id": router.id, "tenant_id": router.project_id, "project_id": router.project_id,
            "port_id": port["id"], "network_id": port["network_id"],
            "subnet_id": subnet_ids[0] if subnet_ids else None, "subnet_ids": subnet_ids}


def add_interface_by_subnet(session: Session, router_id: str, subnet: dict[str, Any]) -> dict[str, Any]:
    router = load(session, router_id)
    if not subnet["gateway_ip"]:
        raise l3_errors.bad_router_request("Subnet for router interface must have a gateway IP")
    _check_new_subnet(session, router_id, subnet)
    port = _new_port(session, router_id, INTERFACE, subnet["network_id"], subnet["project_id"],
                     [{"subnet_id": subnet["id"], "ip_address": subnet["gateway_ip"]}])
    _touch(router)
    return _interface_info(router, port)


def add_interface_by_port(session: Session, router_id: str, port: dict[str, Any]) -> dict[str, Any]:
    router = load(session, router_id)
    if port["device_id"] or port["device_owner"]:
        raise l3_errors.port_in_use(port["network_id"], port["id"], port["device_id"] or port["device_owner"])
    if not port["fixed_ips"]:
        raise l3_errors.bad_router_request("Router port must have at least one fixed IP")
    attached = [subnets.get(session, ip["subnet_id"]) for ip in port["fixed_ips"]]
    if sum(1 for subnet in attached if subnet["ip_version"] == 4) > 1:
        raise l3_errors.bad_router_request("Cannot have multiple IPv4 subnets on router port")
    for subnet in attached:
        _check_new_subnet(session, router_id, subnet)
    updated = ports.update(session, port, {"device_id": router_id, "device_owner": INTERFACE}, None, None)
    session.execute(sa.update(Port).where(Port.id == port["id"]).values(status="ACTIVE"))
    _touch(router)
    return _interface_info(router, updated)


def _check_not_needed(session: Session, router: Router, port: dict[str, Any]) -> None:
    """An interface stays while a floating IP reaches its subnet through it or a route goes through it."""
    fixed = session.scalars(sa.select(FloatingIP.fixed_ip_address).where(FloatingIP.router_id == router.id)).all()
    for ip in port["fixed_ips"]:
        cidr = ipaddress.ip_network(subnets.get(session, ip["subnet_id"])["cidr"])
        if any(address and ipaddress.ip_address(address) in cidr for address in fixed):
            raise l3_errors.interface_in_use_by_floating_ip(router.id, ip["subnet_id"])
        if any(ipaddress.ip_address(route["nexthop"]) in cidr for route in router.routes or []):
            raise errors.fault(409, "RouterInterfaceInUseByRoute",
                               f"Router interface for subnet {ip['subnet_id']} on router {router.id} cannot be "
                               "deleted, as it is required by one or more routes.")


def remove_interface(session: Session, router_id: str, subnet_id: str | None, port_id: str | None
                     ) -> dict[str, Any]:
    router = load(session, router_id)
    interfaces = interface_ports(session, router_id)
    if port_id is not None:
        port = next((p for p in interfaces if p["id"] == port_id), None)
        if port is None:
            raise l3_errors.interface_not_found(router_id, port_id)
        if subnet_id is not None and subnet_id not in {ip["subnet_id"] for ip in port["fixed_ips"]}:
            raise l3_errors.subnet_mismatch_for_port(port_id, subnet_id)
    else:
        port = next((p for p in interfaces if subnet_id in {ip["subnet_id"] for ip in p["fixed_ips"]}), None)
        if port is None:
            subnets.get(session, subnet_id)  # SubnetNotFound first, as upstream
            raise l3_errors.interface_not_found_for_subnet(router_id, subnet_id)
    _check_not_needed(session, router, port)
    info = _interface_info(router, port)
    ports.delete(session, port["id"])
    _touch(router)
    return info


def _check_routes(session: Session, router: Router, routes: list[dict[str, str]]) -> None:
    connected = [ipaddress.ip_network(s["cidr"]) for s in _attached_subnets(session, router.id)]
    for route in routes:
        nexthop = ipaddress.ip_address(route["nexthop"])
        if not any(nexthop in cidr for cidr in connected):
            raise errors.fault(400, "InvalidRoutes", f"Invalid format for routes: {routes}, the nexthop does not "
                                                     "belong to the connected subnet")


def routers_reaching(session: Session, subnet_id: str, network_id: str) -> list[str]:
    """Routers with an interface on ``subnet_id`` and their gateway on external network ``network_id``."""
    on_subnet = sa.select(Port.device_id).join(IPAllocation, IPAllocation.port_id == Port.id).where(
        Port.device_owner == INTERFACE, IPAllocation.subnet_id == subnet_id)
    gateway_ports = sa.select(Port.id).where(Port.network_id == network_id, Port.device_owner == GATEWAY)
    return list(session.scalars(sa.select(Router.id).where(Router.id.in_(on_subnet),
                                                           Router.gw_port_id.in_(gateway_ports))
                                .order_by(Router.created_at, Router.id)))
