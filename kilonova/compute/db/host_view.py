"""The scheduler's read of a cell: each compute node with its compute service's state."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.compute.db.cell_models import ComputeNode, Service


def compute_hosts(session: Session, down_time: float, uuids: list[str] | None = None) -> list[dict[str, Any]]:
    stmt = (sa.select(ComputeNode, Service)
            .join(Service, sa.and_(Service.host == ComputeNode.host, Service.binary == "nova-compute",
                                   Service.deleted == 0))
            .where(ComputeNode.deleted == 0))
    if uuids is not None:
        stmt = stmt.where(ComputeNode.uuid.in_(uuids))
    horizon = datetime.utcnow() - timedelta(seconds=down_time)
    hosts = []
    for node, service in session.execute(stmt):
        seen = service.last_seen_up or service.updated_at or service.created_at
        hosts.append({
            "uuid": node.uuid, "host": node.host, "nodename": node.hypervisor_hostname,
            "hypervisor_type": node.hypervisor_type, "cpu_info": node.cpu_info,
            "service_up": (not service.forced_down) and seen is not None and seen >= horizon,
            "service_disabled": service.disabled,
        })
    return hosts
