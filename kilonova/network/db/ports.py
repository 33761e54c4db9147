"""The ``ports`` table and its IP allocations."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.network import errors, ipam, mac
from kilonova.network.db import allocation, networks, security_groups
from kilonova.network.l3_models import FloatingIP
from kilonova.network.models import IPAllocation, Network, Port, Subnet, utcnow

COLUMNS = ("id", "network_id", "project_id", "name", "mac_address", "admin_state_up", "status", "device_id",
           "device_owner", "binding_host_id", "binding_profile", "binding_vnic_type", "port_security_enabled",
           "description", "tags", "created_at", "updated_at", "revision_number")
SQL_FILTERS = ("id", "network_id", "device_id", "device_owner", "project_id", "name", "mac_address", "status")


def to_dict(port: Port, groups: list[str] | None = None) -> dict[str, Any]:
    values = {column: getattr(port, column) for column in COLUMNS}
    values["fixed_ips"] = [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in port.fixed_ips]
    if groups is None:
        groups = security_groups.groups_of_ports(Session.object_session(port), [port.id])[port.id]
    values["security_groups"] = groups
    return values


def load(session: Session, port_id: str) -> Port:
    port = session.get(Port, port_id)
    if port is None:
        raise errors.not_found("port", port_id)
    return port


# Every move of a server rebinds its ports (a read and an update each): plain rows from statements built
# once, not ORM objects with their addresses loaded by a second query.
_PORTS = Port.__table__
_IPS = IPAllocation.__table__
_ROW = sa.select(*(_PORTS.c[column] for column in COLUMNS)).where(_PORTS.c.id == sa.bindparam("port_id"))
_ADDRESSES = sa.select(_IPS.c.subnet_id, _IPS.c.ip_address).where(
    _IPS.c.port_id == sa.bindparam("port_id")).order_by(_IPS.c.id)
# The SET clause comes from the execute() parameters other than the WHERE clause's.
_UPDATE = _PORTS.update().where(_PORTS.c.id == sa.bindparam("port_id"))
prepare(_ROW, _ADDRESSES, _UPDATE)  # on SQLite's cursor


def get(session: Session, port_id: str) -> dict[str, Any]:
    row = session.execute(_ROW, {"port_id": port_id}).mappings().first()
    if row is None:
        raise errors.not_found("port", port_id)
    port = dict(row)
    port["fixed_ips"] = [{"subnet_id": subnet_id, "ip_address": address}
                         for subnet_id, address in session.execute(_ADDRESSES, {"port_id": port_id})]
    port["security_groups"] = security_groups.groups_of_ports(session, [port_id])[port_id]
    return port


def get_with_network(session: Session, port_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    port = get(session, port_id)
    return port, networks.get(session, port["network_id"])


def status_for(binding_host_id: str) -> str:
    return "ACTIVE" if binding_host_id else "DOWN"


_PORT_WITH_MAC = sa.select(Port.__table__.c.id).where(Port.__table__.c.mac_address == sa.bindparam("mac"))


def _mac(session: Session, network_id: str, wanted: str | None) -> str:
    def in_use(address: str) -> bool:
        return session.execute(_PORT_WITH_MAC, {"mac": address}).first() is not None

    if wanted is not None:
        if in_use(wanted):
            raise errors.mac_in_use(network_id, wanted)
        return wanted
    for _ in range(16):
        candidate = mac.random_mac()
        if not in_use(candidate):
            return candidate
    raise errors.fault(409, "MacAddressGenerationFailure",
                       f"Unable to generate unique mac on network {network_id}.")


_SUBNET_COLUMNS = [Subnet.__table__.c[name] for name in ("id", "ip_version", "cidr", "gateway_ip", "allocation_pools",
                                                          "ipv6_ra_mode", "ipv6_address_mode")]


_INSERT_PORT = Port.__table__.insert()
_INSERT_IP = IPAllocation.__table__.insert()


_PORT_NETWORK = sa.select(Network.__table__.c.id, Network.__table__.c.port_security_enabled).where(
    Network.__table__.c.id == sa.bindparam("network_id"))
_PORT_SUBNETS = sa.select(*_SUBNET_COLUMNS).where(Subnet.__table__.c.network_id == sa.bindparam("network_id")
                                                  ).order_by(Subnet.__table__.c.created_at, Subnet.__table__.c.id)


def _network_for_port(session: Session, network_id: str) -> tuple[str, bool, list]:
    """(id, port_security_enabled, subnets) of a network: plain rows, as every port creation reads them."""
    params = {"network_id": network_id}
    found = session.execute(_PORT_NETWORK, params).first()
    if found is None:
        raise errors.not_found("network", network_id)
    return found.id, found.port_security_enabled, session.execute(_PORT_SUBNETS, params).all()


def create(session: Session, values: dict[str, Any], fixed_ips: list | None, mac_address: str | None,
           groups: list[str] | None = None, privileged: bool = True) -> dict[str, Any]:
    """A new port; ``groups`` are its security groups (None: its project's default group)."""
    network_id, port_security, subnets = _network_for_port(session, values["network_id"])
    values.setdefault("port_security_enabled", port_security)
    groups = security_groups.for_new_port(session, values, groups, privileged)
    row = {**values, "mac_address": _mac(session, network_id, mac_address),
           "status": status_for(values.get("binding_host_id", ""))}
    chosen = allocation.choose(session, network_id, subnets, fixed_ips, values.get("device_owner", ""),
                               mac=row["mac_address"])
    # Table-level inserts (one per server boot): the inserted parameters, column defaults included,
    # are the new port's columns.
    port = session.execute(_INSERT_PORT, row).last_inserted_params()
    if chosen:
        session.execute(_INSERT_IP, [{"port_id": port["id"], "subnet_id": s, "network_id": network_id,
                                      "ip_address": ip} for s, ip in chosen])
    security_groups.bind_port(session, port["id"], groups)
    created = {column: port.get(column) for column in COLUMNS}
    created["fixed_ips"] = [{"subnet_id": s, "ip_address": ip} for s, ip in chosen]
    created["security_groups"] = groups
    return created


def update(session: Session, current: dict[str, Any], values: dict[str, Any], fixed_ips: list | None,
           mac_address: str | None, groups: list[str] | None = None, privileged: bool = True) -> dict[str, Any]:
    """Change port ``current`` (as ``get`` read it in this transaction); the port as it is now.
    ``groups``: its new security groups (None: unchanged)."""
    groups = security_groups.for_port_update(session, current, values, groups, privileged)
    if groups is not None:
        security_groups.bind_port(session, current["id"], groups)
    new_mac = mac_address is not None and mac_address != current["mac_address"]
    if fixed_ips is not None or (new_mac and current["fixed_ips"]):
        # A new MAC gives the port new EUI-64 addresses on its SLAAC / DHCPv6-stateless subnets.
        return _update_with_addresses(session, current["id"], values, fixed_ips, mac_address)
    port = {**current, **values}
    if groups is not None:
        port["security_groups"] = groups
    if mac_address is not None and mac_address != current["mac_address"]:
        port["mac_address"] = _mac(session, current["network_id"], mac_address)
    port["status"] = status_for(port["binding_host_id"])
    port["revision_number"] = current["revision_number"] + 1
    port["updated_at"] = utcnow()
    changed = {**values, "mac_address": port["mac_address"], "status": port["status"],
               "revision_number": port["revision_number"], "updated_at": port["updated_at"]}
    session.execute(_UPDATE, {"port_id": current["id"], **changed})
    return port


def _update_with_addresses(session: Session, port_id: str, values: dict[str, Any], fixed_ips: list | None,
                           mac_address: str | None) -> dict[str, Any]:
    """An update that also changes the port's addresses (rare: through the ORM's collection handling).
    ``fixed_ips`` None: the same ones (a new MAC changes only the automatic ones)."""
    port = load(session, port_id)
    for key, value in values.items():
        setattr(port, key, value)
    if mac_address is not None and mac_address != port.mac_address:
        port.mac_address = _mac(session, port.network_id, mac_address)
    network = networks.load(session, port.network_id)
    if fixed_ips is None:
        automatic = {s.id for s in network.subnets if ipam.is_auto_address(s)}
        fixed_ips = [{"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in port.fixed_ips
                     if a.subnet_id not in automatic]
    chosen = allocation.choose(session, network.id, list(network.subnets), fixed_ips, port.device_owner,
                               current=list(port.fixed_ips), mac=port.mac_address)
    port.fixed_ips.clear()
    session.flush()
    port.fixed_ips.extend(IPAllocation(subnet_id=s, network_id=network.id, ip_address=ip) for s, ip in chosen)
    port.status = status_for(port.binding_host_id)
    port.revision_number += 1
    port.updated_at = utcnow()
    session.flush()
    return to_dict(port)


def delete(session: Session, port_id: str) -> list[str]:
    """Delete the port; its floating IPs lose their association and stay, DOWN, for reuse (as Neutron's).
    Returns the routers those floating IPs went through."""
    routers = session.scalars(sa.select(FloatingIP.router_id).where(FloatingIP.fixed_port_id == port_id,
                                                                  FloatingIP.router_id.is_not(None))).all()
    session.execute(sa.update(FloatingIP).where(FloatingIP.fixed_port_id == port_id).values(
        fixed_port_id=None, fixed_ip_address=None, router_id=None, status="DOWN", updated_at=utcnow(),
        revision_number=FloatingIP.revision_number + 1))
    port = load(session, port_id)
    security_groups.bind_port(session, port_id, [])
    session.delete(port)
    return sorted(set(routers))


def list_ports(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Ports of project ``visible_to`` or on its networks (None: all), narrowed in SQL where possible."""
    query = sa.select(Port).order_by(Port.created_at, Port.id)
    if visible_to is not None:
        owned_networks = sa.select(Network.id).where(Network.project_id == visible_to)
        query = query.where(sa.or_(Port.project_id == visible_to, Port.network_id.in_(owned_networks)))
    for key in SQL_FILTERS:
        if key in filters:
            query = query.where(getattr(Port, key).in_(filters[key]))
    for spec in filters.get("fixed_ips", []):
        key, _, value = spec.partition("=")
        if key not in ("ip_address", "subnet_id"):
            raise errors.bad_request(f"Invalid input for fixed_ips filter: '{spec}'")
        query = query.where(Port.id.in_(sa.select(IPAllocation.port_id)
                                        .where(getattr(IPAllocation, key) == value)))
    found = list(session.scalars(query))
    groups = security_groups.groups_of_ports(session, [port.id for port in found])
    return [to_dict(port, groups[port.id]) for port in found]


# What a compute API asks of ports for every server list (their groups): answered without loading ports.
LIGHT_FIELDS = frozenset({"id", "device_id", "security_groups"})


def list_port_groups(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """``id``, ``device_id`` and ``security_groups`` of the ports ``list_ports`` would return (same visibility,
    SQL filters and order), read as plain rows: the compute API's server lists ask for just these."""
    table = Port.__table__
    query = sa.select(table.c.id, table.c.device_id).order_by(table.c.created_at, table.c.id)
    if visible_to is not None:
        owned_networks = sa.select(Network.__table__.c.id).where(Network.__table__.c.project_id == visible_to)
        query = query.where(sa.or_(table.c.project_id == visible_to, table.c.network_id.in_(owned_networks)))
    for key in SQL_FILTERS:
        if key in filters:
            query = query.where(table.c[key].in_(filters[key]))
    rows = session.execute(query).all()
    groups = security_groups.groups_of_ports(session, [row.id for row in rows])
    return [{"id": row.id, "device_id": row.device_id, "security_groups": groups[row.id]} for row in rows]


def network_owner(session: Session, network_id: str) -> str | None:
    return session.scalar(sa.select(Network.project_id).where(Network.id == network_id))
