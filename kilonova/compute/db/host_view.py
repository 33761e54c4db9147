"""The scheduler's read of a cell: each compute node with its compute service's state."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.compute.db.cell_models import ComputeNode, Service


_NODES, _SERVICES = ComputeNode.__table__, Service.__table__
# Built once from table columns (no ORM session, no cache key per call): the scheduler reads every node
# of a large cell often.
_HOSTS = (sa.select(_NODES.c.uuid, _NODES.c.host, _NODES.c.hypervisor_hostname, _NODES.c.hypervisor_type,
                    _NODES.c.hypervisor_version, _NODES.c.host_ip, _NODES.c.cpu_info, _SERVICES.c.forced_down, _SERVICES.c.disabled, _SERVICES.c.last_seen_up,
                    _SERVICES.c.updated_at, _SERVICES.c.created_at)
          .join(_SERVICES, sa.and_(_SERVICES.c.host == _NODES.c.host, _SERVICES.c.binary == "nova-compute",
                                   _SERVICES.c.deleted == 0))
          .where(_NODES.c.deleted == 0))
_HOSTS_OF = _HOSTS.where(_NODES.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
prepare(_HOSTS, _HOSTS_OF)  # on SQLite's cursor: every scheduling


def compute_hosts(session: Session, down_time: float, uuids: list[str] | None = None) -> list[dict[str, Any]]:
    rows = session.execute(_HOSTS) if uuids is None else session.execute(_HOSTS_OF, {"uuids": list(uuids)})
    horizon = datetime.utcnow() - timedelta(seconds=down_time)
    hosts = []
    for row in rows:
        seen = row.last_seen_up or row.updated_at or row.created_at
        hosts.append({
            "uuid": row.uuid, "host": row.host, "nodename": row.hypervisor_hostname,
            "hypervisor_type": row.hypervisor_type, "hypervisor_version": row.hypervisor_version,
            "host_ip": row.host_ip, "cpu_info": row.cpu_info,
            "service_up": (not row.forced_down) and seen is not None and seen >= horizon,
            "service_disabled": bool(row.disabled),
        })
    return hosts
