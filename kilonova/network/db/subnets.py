"""The ``subnets`` table, with the IPAM checks that involve other rows (overlaps, addresses in use)."""
from __future__ import annotations

import ipaddress
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.network import errors, ipam
from kilonova.network.db import networks
from kilonova.network.models import IPAllocation, Network, Port, Subnet, utcnow

COLUMNS = ("id", "network_id", "project_id", "name", "ip_version", "cidr", "gateway_ip", "enable_dhcp",
           "allocation_pools", "dns_nameservers", "host_routes", "ipv6_ra_mode", "ipv6_address_mode",
           "description", "tags", "created_at", "updated_at", "revision_number")


def to_dict(subnet: Subnet) -> dict[str, Any]:
    return {column: getattr(subnet, column) for column in COLUMNS}


def load(session: Session, subnet_id: str) -> Subnet:
    subnet = session.get(Subnet, subnet_id)
    if subnet is None:
        raise errors.not_found("subnet", subnet_id)
    return subnet


def get(session: Session, subnet_id: str) -> dict[str, Any]:
    return to_dict(load(session, subnet_id))


def get_with_network(session: Session, subnet_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    subnet = load(session, subnet_id)
    return to_dict(subnet), networks.to_dict(subnet.network)


def create(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    network = networks.load(session, values["network_id"])
    cidr = ipaddress.ip_network(values["cidr"])
    for other in network.subnets:
        if ipam.overlaps(cidr, ipaddress.ip_network(other.cidr)):
            raise errors.invalid_input(f"Requested subnet with cidr: {values['cidr']} for network: "
                                       f"{network.id} overlaps with another subnet")
    subnet = Subnet(**values)
    session.add(subnet)
    network.revision_number += 1
    session.flush()
    return to_dict(subnet)


def add_automatic_addresses(session: Session, subnet: dict[str, Any]) -> list[dict[str, Any]]:
    """A new SLAAC / DHCPv6-stateless subnet gives each port of its network (router interfaces excepted) its
    EUI-64 address there, as Neutron does; the ports that got one (id, device_id, device_owner)."""
    if not ipam.is_auto_address(subnet):
        return []
    taken = allocated(session, subnet["id"])
    rows = session.execute(sa.select(Port.id, Port.mac_address, Port.device_id, Port.device_owner).where(
        Port.network_id == subnet["network_id"], Port.device_owner.not_in(ipam.ROUTER_INTERFACE_OWNERS))).all()
    changed = []
    for row in rows:
        address = ipam.eui64(subnet["cidr"], row.mac_address)
        if address in taken:
            continue
        taken.add(address)
        session.add(IPAllocation(port_id=row.id, subnet_id=subnet["id"], network_id=subnet["network_id"],
                                 ip_address=address))
        changed.append({"id": row.id, "device_id": row.device_id, "device_owner": row.device_owner})
    session.flush()
    return changed


def list_subnets(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    query = sa.select(Subnet).order_by(Subnet.created_at, Subnet.id)
    if visible_to is not None:
        query = query.join(Network, Network.id == Subnet.network_id).where(
            sa.or_(Subnet.project_id == visible_to, Network.shared, Network.external))
    for key in ("id", "name", "network_id", "project_id", "cidr"):
        if key in filters:
            query = query.where(getattr(Subnet, key).in_(filters[key]))
    return [to_dict(subnet) for subnet in session.scalars(query)]


def update(session: Session, subnet_id: str, values: dict[str, Any]) -> dict[str, Any]:
    subnet = load(session, subnet_id)
    for key, value in values.items():
        setattr(subnet, key, value)
    subnet.revision_number += 1
    subnet.updated_at = utcnow()
    return to_dict(subnet)


def delete(session: Session, subnet_id: str) -> list[dict[str, Any]]:
    """SubnetInUse while a port other than a ``network:*`` one holds an address of it -- except a SLAAC /
    DHCPv6-stateless subnet, whose automatic addresses go with it (Neutron's ML2); the ports that lost one."""
    subnet = load(session, subnet_id)
    holders = session.execute(sa.select(Port.id, Port.device_id, Port.device_owner)
                              .join(IPAllocation, IPAllocation.port_id == Port.id)
                              .where(IPAllocation.subnet_id == subnet_id)).all()
    automatic = ipam.is_auto_address(subnet)
    blocking = [h for h in holders if not networks.auto_deleted(h.device_owner)
                and not (automatic and h.device_owner not in ipam.ROUTER_INTERFACE_OWNERS)]
    if blocking:
        raise errors.subnet_in_use(subnet_id)
    session.execute(sa.delete(IPAllocation).where(IPAllocation.subnet_id == subnet_id))
    subnet.network.revision_number += 1
    session.delete(subnet)
    return [{"id": h.id, "device_id": h.device_id, "device_owner": h.device_owner} for h in holders]


_ALLOCATED = sa.select(IPAllocation.__table__.c.ip_address).where(
    IPAllocation.__table__.c.subnet_id == sa.bindparam("subnet_id"))


def allocated(session: Session, subnet_id: str) -> set[str]:
    return set(session.execute(_ALLOCATED, {"subnet_id": subnet_id}).scalars())


def find(session: Session, network_id: str, name: str) -> dict[str, Any] | None:
    subnet = session.scalars(sa.select(Subnet).where(Subnet.network_id == network_id, Subnet.name == name)).first()
    return to_dict(subnet) if subnet else None
