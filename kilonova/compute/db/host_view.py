"""The scheduler's read of a cell: each compute node with its compute service's state."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.compute.db.cell_models import ComputeNode, Service


def compute_hosts(session: Session, down_time: float, uuids: list[str] | None = None) -> list[dict[str, Any]]:
    # Plain columns, not ORM objects: the scheduler reads every node of a large cell often.
    stmt = (sa.select(ComputeNode.uuid, ComputeNode.host, ComputeNode.hypervisor_hostname,
                      ComputeNode.hypervisor_type, ComputeNode.cpu_info, Service.forced_down, Service.disabled,
                      Service.last_seen_up, Service.updated_at, Service.created_at)
            .join(Service, sa.and_(Service.host == ComputeNode.host, Service.binary == "nova-compute",
                                   Service.deleted == 0))
            .where(ComputeNode.deleted == 0))
    if uuids is not None:
        stmt = stmt.where(ComputeNode.uuid.in_(uuids))
    horizon = datetime.utcnow() - timedelta(seconds=down_time)
    hosts = []
    for row in session.execute(stmt):
        seen = row.last_seen_up or row.updated_at or row.created_at
        hosts.append({
            "uuid": row.uuid, "host": row.host, "nodename": row.hypervisor_hostname,
            "hypervisor_type": row.hypervisor_type, "cpu_info": row.cpu_info,
            "service_up": (not row.forced_down) and seen is not None and seen >= horizon,
            "service_disabled": bool(row.disabled),
        })
    return hosts
