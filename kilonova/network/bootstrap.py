"""The networks every Kilonova has, named as DevStack names them: ``private`` (shared) with ``private-subnet``
10.0.0.0/24; the external network ``public`` with ``public-subnet`` 172.24.4.0/24 (DevStack's floating range,
no DHCP); and ``router1``, with its gateway on ``public`` and an interface on ``private-subnet``, so that
floating IPs from ``public`` reach servers on ``private``.

Fixed ids make every start, and every network API process, converge on one of each.
"""
from __future__ import annotations

import ipaddress
import logging
import uuid
from typing import Any

from sqlalchemy.orm import Session

from kilonova.common.http import HTTPError
from kilonova.network import ipam
from kilonova.network.db import networks, routers, subnets
from kilonova.network.l3_models import Router
from kilonova.network.models import Network, Subnet

NETWORK_NAME = "private"
SUBNET_NAME = "private-subnet"
CIDR = "10.0.0.0/24"
NETWORK_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/networks/private"))
SUBNET_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/subnets/private-subnet"))
PUBLIC_NETWORK_NAME = "public"
PUBLIC_SUBNET_NAME = "public-subnet"
PUBLIC_CIDR = "172.24.4.0/24"
PUBLIC_NETWORK_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/networks/public"))
PUBLIC_SUBNET_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/subnets/public-subnet"))
ROUTER_NAME = "router1"
ROUTER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/routers/router1"))
LOG = logging.getLogger(__name__)


def _ensure_subnet(session: Session, subnet_id: str, network_id: str, owner: str, name: str, cidr_text: str,
                   enable_dhcp: bool = True) -> None:
    if session.get(Subnet, subnet_id) is not None:
        return
    cidr = ipaddress.ip_network(cidr_text)
    gateway = ipam.default_gateway(cidr)
    subnets.create(session, {"id": subnet_id, "network_id": network_id, "project_id": owner, "name": name,
                             "ip_version": 4, "cidr": cidr_text, "gateway_ip": gateway, "enable_dhcp": enable_dhcp,
                             "allocation_pools": ipam.default_pools(cidr, gateway),
                             "dns_nameservers": [], "host_routes": []})


def ensure_default_network(session: Session, owner: str) -> dict[str, Any]:
    """Create what is missing of the default network and subnet; returns the network."""
    if session.get(Network, NETWORK_ID) is None:
        networks.create(session, {"id": NETWORK_ID, "name": NETWORK_NAME, "project_id": owner, "shared": True,
                                   "description": "Kilonova's default network, shared with every project"})
    _ensure_subnet(session, SUBNET_ID, NETWORK_ID, owner, SUBNET_NAME, CIDR)
    session.expire_all()
    return networks.get(session, NETWORK_ID)


def ensure_public_network(session: Session, owner: str) -> dict[str, Any]:
    """Create what is missing of ``public``, ``public-subnet`` and ``router1``; returns the network.

    The router is made only with the network (an operator may have removed it since), and not when
    ``private-subnet`` cannot take it (its gateway address held by another router): the network is made
    all the same."""
    new = session.get(Network, PUBLIC_NETWORK_ID) is None
    if new:
        networks.create(session, {"id": PUBLIC_NETWORK_ID, "name": PUBLIC_NETWORK_NAME, "project_id": owner,
                                  "external": True, "description": "Kilonova's external network: floating IPs"})
    _ensure_subnet(session, PUBLIC_SUBNET_ID, PUBLIC_NETWORK_ID, owner, PUBLIC_SUBNET_NAME, PUBLIC_CIDR,
                   enable_dhcp=False)
    session.flush()
    if new and session.get(Router, ROUTER_ID) is None and session.get(Subnet, SUBNET_ID) is not None:
        try:
            with session.begin_nested():
                routers.create(session, {"id": ROUTER_ID, "name": ROUTER_NAME, "project_id": owner},
                               {"network_id": PUBLIC_NETWORK_ID})
                routers.add_interface_by_subnet(session, ROUTER_ID, subnets.get(session, SUBNET_ID))
        except HTTPError as exc:
            LOG.warning("%s was not created: %s", ROUTER_NAME, exc.message)
    session.expire_all()
    return networks.get(session, PUBLIC_NETWORK_ID)
