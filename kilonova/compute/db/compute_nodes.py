"""The compute_nodes table of a cell: each hypervisor's resources and usage, as its agent reports them."""
from __future__ import annotations

import json
import uuid as uuidlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import NotFound
from kilonova.common.prepared import prepare
from kilonova.compute.db.cell_models import ComputeNode, Service

FIELDS = ("hypervisor_hostname", "hypervisor_type", "hypervisor_version", "host_ip", "vcpus", "memory_mb",
          "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used", "running_vms", "cpu_info",
          "stats", "numa_topology", "pci_stats")
# What a first report must carry at least; a partial usage report creates a node with these blanks.
_BLANKS = {"hypervisor_type": "unknown", "vcpus": 0, "memory_mb": 0, "local_gb": 0}


def upsert(session: Session, host: str, nodename: str, values: dict[str, Any], service_id: int | None) -> str:
    """Create or update the node (host, nodename) from a full or partial report; its uuid."""
    node = session.scalar(sa.select(ComputeNode).where(ComputeNode.host == host,
                                                       ComputeNode.hypervisor_hostname == nodename,
                                                       ComputeNode.deleted == 0))
    clean = {k: v for k, v in values.items() if k in FIELDS}
    for key in ("cpu_info", "stats", "numa_topology", "pci_stats"):  # JSON text columns
        if isinstance(clean.get(key), (dict, list)):
            clean[key] = json.dumps(clean[key])
    if node is None:
        node = ComputeNode(uuid=str(uuidlib.uuid4()), host=host,
                           **{**_BLANKS, **clean, "hypervisor_hostname": nodename})
        session.add(node)
    else:
        clean.pop("hypervisor_hostname", None)
        for key, value in clean.items():
            setattr(node, key, value)
    if service_id is not None:
        node.service_id = service_id
    node.updated_at = datetime.utcnow()
    session.flush()
    return node.uuid


def list_with_services(session: Session) -> list[tuple[ComputeNode, Service | None]]:
    """Every live node with its nova-compute service record (None if the service is gone)."""
    stmt = (sa.select(ComputeNode, Service)
            .outerjoin(Service, sa.and_(Service.host == ComputeNode.host, Service.binary == "nova-compute",
                                        Service.deleted == 0))
            .where(ComputeNode.deleted == 0).order_by(ComputeNode.id))
    return [(node, service) for node, service in session.execute(stmt)]


def get_with_service(session: Session, ident: int | str) -> tuple[ComputeNode, Service | None]:
    """One node by integer id or uuid."""
    column = ComputeNode.id if isinstance(ident, int) else ComputeNode.uuid
    for node, service in list_with_services(session):
        if getattr(node, column.key) == ident:
            return node, service
    raise NotFound(f"Hypervisor {ident} could not be found.")


_NODES = ComputeNode.__table__
_SERVICES = Service.__table__
# A live migration reads the nodes of both its hosts: plain columns from a statement built once.
_NODE_OF_HOST = (
    sa.select(_NODES.c.uuid, _NODES.c.hypervisor_hostname, _NODES.c.hypervisor_type, _NODES.c.hypervisor_version,
              _NODES.c.host_ip, _SERVICES.c.disabled)
    .outerjoin(_SERVICES, sa.and_(_SERVICES.c.host == _NODES.c.host, _SERVICES.c.binary == "nova-compute",
                                  _SERVICES.c.deleted == 0))
    .where(_NODES.c.deleted == 0, _NODES.c.host == sa.bindparam("host")).order_by(_NODES.c.id).limit(1))
prepare(_NODE_OF_HOST)  # on SQLite's cursor


def node_of_host(session: Session, host: str) -> sa.Row | None:
    """(uuid, hypervisor_hostname, hypervisor_type, hypervisor_version, host_ip, disabled) of the live node of
    ``host`` (``disabled``: its nova-compute service's, None without one); None when the host has no node."""
    return session.execute(_NODE_OF_HOST, {"host": host}).first()


def get_by_host(session: Session, host: str) -> tuple[ComputeNode, Service | None] | None:
    """The live node of ``host`` with its nova-compute service record (None when the host has no node)."""
    stmt = (sa.select(ComputeNode, Service)
            .outerjoin(Service, sa.and_(Service.host == ComputeNode.host, Service.binary == "nova-compute",
                                        Service.deleted == 0))
            .where(ComputeNode.deleted == 0, ComputeNode.host == host).order_by(ComputeNode.id).limit(1))
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1])
