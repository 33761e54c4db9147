"""The ``networks`` table: create, read, list, update, delete (with its automatic ports)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.network import errors
from kilonova.network.models import Network, Port, Subnet, utcnow

COLUMNS = ("id", "project_id", "name", "status", "admin_state_up", "shared", "external", "mtu",
           "port_security_enabled", "network_type", "physical_network", "segmentation_id",
           "availability_zone_hints", "description", "tags", "created_at", "updated_at", "revision_number")
# A router's interfaces and gateway and a floating IP's port hold their network and subnet as a server's
# port does (NetworkInUse, SubnetInUse); other ``network:*`` ports go with them.
L3_OWNERS = ("network:router_interface", "network:router_gateway", "network:floatingip")


def auto_deleted(device_owner: str) -> bool:
    return device_owner.startswith("network:") and device_owner not in L3_OWNERS


def to_dict(network: Network) -> dict[str, Any]:
    values = {column: getattr(network, column) for column in COLUMNS}
    values["subnets"] = [subnet.id for subnet in network.subnets]
    return values


def load(session: Session, network_id: str) -> Network:
    network = session.get(Network, network_id)
    if network is None:
        raise errors.not_found("network", network_id)
    return network


# Every server boot reads its network two or three times (API checks, port creation, binding): plain
# rows from statements built once, not ORM objects.
_ROW = sa.select(*(Network.__table__.c[column] for column in COLUMNS)).where(
    Network.__table__.c.id == sa.bindparam("network_id"))
_SUBNET_IDS = sa.select(Subnet.__table__.c.id).where(Subnet.__table__.c.network_id == sa.bindparam("network_id")
                                                     ).order_by(Subnet.__table__.c.created_at, Subnet.__table__.c.id)
prepare(_ROW, _SUBNET_IDS)  # on SQLite's cursor


def get(session: Session, network_id: str) -> dict[str, Any]:
    row = session.execute(_ROW, {"network_id": network_id}).mappings().first()
    if row is None:
        raise errors.not_found("network", network_id)
    values = dict(row)
    values["subnets"] = list(session.scalars(_SUBNET_IDS, {"network_id": network_id}))
    return values


def create(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    network = Network(**values)
    session.add(network)
    session.flush()
    return to_dict(network)


def list_networks(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Networks ``visible_to`` a project (None: all), narrowed by the filters SQL can answer."""
    query = sa.select(Network).order_by(Network.created_at, Network.id)
    if visible_to is not None:
        query = query.where(sa.or_(Network.project_id == visible_to, Network.shared, Network.external))
    for key in ("id", "name", "project_id"):
        if key in filters:
            query = query.where(getattr(Network, key).in_(filters[key]))
    return [to_dict(network) for network in session.scalars(query)]


def update(session: Session, network_id: str, values: dict[str, Any]) -> dict[str, Any]:
    network = load(session, network_id)
    if values.get("shared") is False and network.shared:
        _check_unshare(session, network)
    if values.get("external") is False and network.external:
        _check_unexternal(session, network)
    for key, value in values.items():
        setattr(network, key, value)
    network.revision_number += 1
    network.updated_at = utcnow()
    return to_dict(network)


def _check_unexternal(session: Session, network: Network) -> None:
    """Router gateways and floating IPs keep a network external (Neutron's ExternalNetworkInUse)."""
    held = session.scalar(sa.select(Port.id).where(Port.network_id == network.id, Port.device_owner.in_(
        ("network:router_gateway", "network:floatingip"))).limit(1))
    if held is not None:
        raise errors.fault(409, "ExternalNetworkInUse", f"External network {network.id} cannot be updated to be "
                                                        "made non-external, since it has existing gateway ports.")


def _check_unshare(session: Session, network: Network) -> None:
    """A network other projects have ports on stays shared (Neutron's InvalidSharedSetting)."""
    others = session.scalars(sa.select(Port.device_owner).where(Port.network_id == network.id,
                                                                Port.project_id != network.project_id)).all()
    if any(not auto_deleted(owner) for owner in others):
        raise errors.fault(409, "InvalidSharedSetting", f"Unable to reconfigure sharing settings for network "
                                                        f"{network.id}. Multiple tenants are using it.")


def delete(session: Session, network_id: str) -> None:
    """Delete the network, its subnets and its ``network:*`` ports; NetworkInUse if other ports remain."""
    network = load(session, network_id)
    ports = session.scalars(sa.select(Port).where(Port.network_id == network_id)).all()
    if any(not auto_deleted(port.device_owner) for port in ports):
        raise errors.network_in_use(network_id)
    for port in ports:
        session.delete(port)
    session.flush()
    for subnet in list(network.subnets):
        session.delete(subnet)
    session.delete(network)


def find(session: Session, name: str, project_id: str) -> dict[str, Any] | None:
    network = session.scalars(sa.select(Network).where(Network.name == name, Network.project_id == project_id)
                              .order_by(Network.created_at)).first()
    return to_dict(network) if network else None
