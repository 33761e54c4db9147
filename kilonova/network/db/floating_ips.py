"""The ``floatingips`` table: an address of an external network held by a port of its own, associated with a
fixed IP of a port that a router with its gateway on that network reaches."""
from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.http import HTTPError
from kilonova.network import l3_errors
from kilonova.network.db import networks, ports, routers
from kilonova.network.l3_models import FloatingIP
from kilonova.network.models import Subnet, utcnow

OWNER = "network:floatingip"
COLUMNS = ("id", "project_id", "floating_network_id", "floating_port_id", "floating_ip_address", "fixed_port_id",
           "fixed_ip_address", "router_id", "status", "description", "tags", "created_at", "updated_at",
           "revision_number")
PORT_DETAILS = ("name", "network_id", "mac_address", "admin_state_up", "status", "device_id", "device_owner")


def load(session: Session, floatingip_id: str) -> FloatingIP:
    fip = session.get(FloatingIP, floatingip_id)
    if fip is None:
        raise l3_errors.floatingip_not_found(floatingip_id)
    return fip


def to_dict(session: Session, fip: FloatingIP) -> dict[str, Any]:
    values = {column: getattr(fip, column) for column in COLUMNS}
    port = ports.get(session, fip.fixed_port_id) if fip.fixed_port_id else None
    values["port_details"] = {key: port[key] for key in PORT_DETAILS} if port else None
    return values


def get(session: Session, floatingip_id: str) -> dict[str, Any]:
    return to_dict(session, load(session, floatingip_id))


def list_floating_ips(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    query = sa.select(FloatingIP).order_by(FloatingIP.created_at, FloatingIP.id)
    if visible_to is not None:
        query = query.where(FloatingIP.project_id == visible_to)
    for key, column in (("id", FloatingIP.id), ("project_id", FloatingIP.project_id),
                        ("port_id", FloatingIP.fixed_port_id), ("floating_network_id", FloatingIP.floating_network_id),
                        ("floating_ip_address", FloatingIP.floating_ip_address), ("router_id", FloatingIP.router_id)):
        if key in filters:
            query = query.where(column.in_(filters[key]))
    return [to_dict(session, fip) for fip in session.scalars(query)]


def _address_port(session: Session, fip_id: str, network: dict[str, Any], subnet_id: str | None,
                  address: str | None) -> dict[str, Any]:
    """The floating IP's own port on the external network, holding one IPv4 address."""
    values = {"id": str(uuid.uuid4()), "network_id": network["id"], "project_id": "", "device_id": fip_id,
              "device_owner": OWNER}
    if address is not None or subnet_id is not None:
        wanted = {key: value for key, value in (("subnet_id", subnet_id), ("ip_address", address)) if value}
        return ports.create(session, values, [wanted], None)
    candidates = session.scalars(sa.select(Subnet.id).where(Subnet.network_id == network["id"], Subnet.ip_version == 4)
                                 .order_by(Subnet.created_at, Subnet.id)).all()
    if not candidates:
        raise l3_errors.bad_floatingip_request(f"Network {network['id']} does not contain any IPv4 subnet")
    for candidate in candidates:
        try:
            return ports.create(session, dict(values), [{"subnet_id": candidate}], None)
        except HTTPError as exc:
            if exc.code != "IpAddressGenerationFailure" or candidate == candidates[-1]:
                raise
    raise AssertionError("unreachable")


def create(session: Session, row: dict[str, Any], subnet_id: str | None, address: str | None,
           port: dict[str, Any] | None, fixed_ip_address: str | None) -> tuple[dict[str, Any], list[dict]]:
    """A new floating IP (associated when ``port`` is given); also the ports whose association changed."""
    network = networks.get(session, row["floating_network_id"])
    if not network["external"]:
        raise l3_errors.bad_floatingip_request(f"Network {network['id']} is not a valid external network")
    if subnet_id is not None and subnet_id not in network["subnets"]:
        raise l3_errors.bad_floatingip_request(f"Subnet {subnet_id} does not belong to network {network['id']}")
    own_port = _address_port(session, row["id"], network, subnet_id, address)
    fip = FloatingIP(**row, floating_port_id=own_port["id"],
                     floating_ip_address=own_port["fixed_ips"][0]["ip_address"], status="DOWN")
    session.add(fip)
    session.flush()
    if port is not None:
        _associate(session, fip, port, fixed_ip_address)
    return to_dict(session, fip), [port] if port is not None else []


def _fixed_ip(port: dict[str, Any], wanted: str | None) -> dict[str, str]:
    if wanted is not None:
        found = next((ip for ip in port["fixed_ips"] if ip["ip_address"] == wanted), None)
        if found is None:
            raise l3_errors.bad_floatingip_request(f"Port {port['id']} does not have fixed ip {wanted}")
        return found
    ipv4 = [ip for ip in port["fixed_ips"] if ipaddress.ip_address(ip["ip_address"]).version == 4]
    if not ipv4:
        raise l3_errors.bad_floatingip_request(f"Cannot add floating IP to port {port['id']} that has no fixed IPv4 "
                                               "addresses")
    if len(ipv4) > 1:
        raise l3_errors.bad_floatingip_request(f"Port {port['id']} has multiple fixed IPv4 addresses.  Must provide "
                                               "a specific IPv4 address when assigning a floating IP")
    return ipv4[0]


def _associate(session: Session, fip: FloatingIP, port: dict[str, Any], wanted: str | None) -> None:
    fixed = _fixed_ip(port, wanted)
    reaching = routers.routers_reaching(session, fixed["subnet_id"], fip.floating_network_id)
    if not reaching:
        raise l3_errors.external_network_unreachable(fip.floating_network_id, fixed["subnet_id"], port["id"])
    other = session.scalar(sa.select(FloatingIP.id).where(
        FloatingIP.fixed_port_id == port["id"], FloatingIP.fixed_ip_address == fixed["ip_address"],
        FloatingIP.floating_network_id == fip.floating_network_id, FloatingIP.id != fip.id))
    if other is not None:
        raise l3_errors.floating_ip_port_already_associated(fip.floating_ip_address, fip.id, port["id"],
                                                            fixed["ip_address"], fip.floating_network_id)
    fip.fixed_port_id, fip.fixed_ip_address = port["id"], fixed["ip_address"]
    fip.router_id, fip.status = reaching[0], "ACTIVE"


def _disassociate(fip: FloatingIP) -> None:
    fip.fixed_port_id = fip.fixed_ip_address = fip.router_id = None
    fip.status = "DOWN"


def update(session: Session, floatingip_id: str, values: dict[str, Any], port: Any, fixed_ip_address: str | None
           ) -> tuple[dict[str, Any], list[dict]]:
    """``port``: the port to associate (None: disassociate; ``...``: leave the association as it is)."""
    fip = load(session, floatingip_id)
    changed = []
    for key, value in values.items():
        setattr(fip, key, value)
    if port is not ... or fixed_ip_address is not None:
        previous = fip.fixed_port_id
        if port is ...:
            if not previous:
                raise l3_errors.bad_floatingip_request("fixed_ip_address cannot be specified without a port_id")
            port = ports.get(session, previous)
        if port is None:
            _disassociate(fip)
        else:
            _associate(session, fip, port, fixed_ip_address)
        if previous and previous != fip.fixed_port_id:
            changed.append(ports.get(session, previous))
        if port is not None and previous != port["id"]:
            changed.append(port)
    fip.revision_number += 1
    fip.updated_at = utcnow()
    session.flush()
    return to_dict(session, fip), changed


def delete(session: Session, floatingip_id: str) -> list[dict]:
    """Delete the floating IP and its address port; the port it was associated with, if any."""
    fip = load(session, floatingip_id)
    associated = [ports.get(session, fip.fixed_port_id)] if fip.fixed_port_id else []
    own_port = fip.floating_port_id
    session.delete(fip)
    session.flush()
    ports.delete(session, own_port)
    return associated

