"""The default network every Kilonova has: ``private`` (shared) with ``private-subnet`` 10.0.0.0/24.

Fixed ids make every start, and every network API process, converge on one network and one subnet.
"""
from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy.orm import Session

from kilonova.network import ipam
from kilonova.network.db import networks, subnets
from kilonova.network.models import Network, Subnet

NETWORK_NAME = "private"
SUBNET_NAME = "private-subnet"
CIDR = "10.0.0.0/24"
NETWORK_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/networks/private"))
SUBNET_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/subnets/private-subnet"))


def ensure_default_network(session: Session, owner: str) -> dict[str, Any]:
    """Create what is missing of the default network and subnet; returns the network."""
    if session.get(Network, NETWORK_ID) is None:
        networks.create(session, {"id": NETWORK_ID, "name": NETWORK_NAME, "project_id": owner, "shared": True,
                                  "description": "Kilonova's default network, shared with every project"})
    if session.get(Subnet, SUBNET_ID) is None:
        cidr = ipaddress.ip_network(CIDR)
        gateway = ipam.default_gateway(cidr)
        subnets.create(session, {"id": SUBNET_ID, "network_id": NETWORK_ID, "project_id": owner,
                                 "name": SUBNET_NAME, "ip_version": 4, "cidr": CIDR, "gateway_ip": gateway,
                                 "allocation_pools": ipam.default_pools(cidr, gateway),
                                 "dns_nameservers": [], "host_routes": []})
    session.expire_all()
    return networks.get(session, NETWORK_ID)
