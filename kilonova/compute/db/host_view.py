"""The scheduler's read of a cell: each compute node with its compute service's state."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import plain_rows, prepare
from kilonova.compute.db.cell_models import ComputeNode, Instance, Service


_NODES, _SERVICES, _INSTANCES = ComputeNode.__table__, Service.__table__, Instance.__table__
# Built once from table columns (no ORM session, no cache key per call): the scheduler reads every node
# of a large cell often.
# The service is up when it was seen after the horizon: compared in SQL, so no row's timestamps are parsed.
_SEEN = sa.func.coalesce(_SERVICES.c.last_seen_up, _SERVICES.c.updated_at, _SERVICES.c.created_at)
_UP = sa.and_(_SERVICES.c.forced_down.is_(False), _SEEN >= sa.bindparam("horizon", type_=sa.DateTime()))
_HOSTS = (sa.select(_NODES.c.uuid, _NODES.c.host, _NODES.c.hypervisor_hostname, _NODES.c.hypervisor_type,
                    _NODES.c.hypervisor_version, _NODES.c.host_ip, _NODES.c.cpu_info,
                    _NODES.c.stats, _NODES.c.numa_topology, _NODES.c.pci_stats,
                    sa.case((_UP, True), else_=False).label("up"), _SERVICES.c.disabled)
          .join(_SERVICES, sa.and_(_SERVICES.c.host == _NODES.c.host, _SERVICES.c.binary == "nova-compute",
                                   _SERVICES.c.deleted == 0))
          .where(_NODES.c.deleted == 0))
_HOSTS_OF = _HOSTS.where(_NODES.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
# Node id order, stated (SQLite's plan scans the nodes in it anyway): the order host states are weighed in
# breaks ties, so the scheduler's kept rows (node_stamps) must come in the order of a full read.
_HOSTS = _HOSTS.order_by(_NODES.c.id)
# Per node: what says whether its row changed since it was last read -- its updated_at, which every report
# writes (compared for equality only, never parsed: type_coerce keeps the driver's value) -- and its
# service's state, which changes with time and heartbeats without the node's row changing.
# (The flags as integers too: no column to convert, so SQLite's rows are used as they come.)
_STAMPS = (sa.select(_NODES.c.uuid, sa.type_coerce(_NODES.c.updated_at, sa.String),
                     sa.type_coerce(sa.case((_UP, 1), else_=0), sa.Integer),
                     sa.type_coerce(_SERVICES.c.disabled, sa.Integer))
           .join(_SERVICES, sa.and_(_SERVICES.c.host == _NODES.c.host, _SERVICES.c.binary == "nova-compute",
                                    _SERVICES.c.deleted == 0))
           .where(_NODES.c.deleted == 0).order_by(_NODES.c.id))
prepare(_HOSTS, _HOSTS_OF, _STAMPS)  # on SQLite's cursor: every scheduling


def compute_hosts(session: Session, down_time: float, uuids: list[str] | None = None) -> list[dict[str, Any]]:
    horizon = datetime.utcnow() - timedelta(seconds=down_time)
    rows = session.execute(_HOSTS, {"horizon": horizon}) if uuids is None else \
        session.execute(_HOSTS_OF, {"uuids": list(uuids), "horizon": horizon})
    # Unpacked as tuples: a large cell's rows are read for every scheduling.
    return [{"uuid": uuid, "host": host, "nodename": node, "hypervisor_type": hv_type, "hypervisor_version": version,
             "host_ip": ip, "cpu_info": cpu_info, "stats": stats, "numa_topology": numa, "pci_stats": pci,
             "service_up": bool(up), "service_disabled": bool(disabled)}
            for uuid, host, node, hv_type, version, ip, cpu_info, stats, numa, pci, up, disabled in rows]


def node_stamps(session: Session, down_time: float) -> list[tuple[str, Any, Any, Any]]:
    """(uuid, updated_at as the driver gives it, service up, service disabled -- the flags as the driver gives
    them: 0/1 or booleans) of every compute node that ``compute_hosts`` returns, in the same order; plain tuples,
    compared whole by the scheduler's kept nodes."""
    horizon = datetime.utcnow() - timedelta(seconds=down_time)
    return plain_rows(session.execute(_STAMPS, {"horizon": horizon}))


# Upstream's io_workload states: an instance building, or in one of these tasks, keeps its host's disks busy.
IO_TASK_STATES = ("resize_migrating", "rebuilding", "resize_prep", "image_snapshot", "image_backup",
                  "rescuing", "unshelving")
_IO = sa.or_(_INSTANCES.c.vm_state == "building", _INSTANCES.c.task_state.in_(IO_TASK_STATES))
_COUNTS = (sa.select(_INSTANCES.c.host, sa.func.count(), sa.func.sum(sa.case((_IO, 1), else_=0)))
           .where(_INSTANCES.c.deleted == 0, _INSTANCES.c.host.is_not(None)).group_by(_INSTANCES.c.host))
_IMAGE_META = (sa.select(_INSTANCES.c.host, _INSTANCES.c.system_metadata)
               .where(_INSTANCES.c.deleted == 0, _INSTANCES.c.host.is_not(None)))
prepare(_COUNTS)


def instance_counts(session: Session) -> dict[str, tuple[int, int]]:
    """host -> (instances, instances in an I/O-heavy state), for the IoOps and NumInstances weighers."""
    return {host: (int(count), int(io or 0)) for host, count, io in session.execute(_COUNTS)}


def instance_image_properties(session: Session) -> dict[str, list[dict[str, str]]]:
    """host -> the image properties of each of its instances, for the ImagePropertiesWeigher: those a create
    records (system_metadata ``image_properties``), else upstream's ``image_<property>`` keys."""
    found: dict[str, list[dict[str, str]]] = {}
    for host, sysmeta in session.execute(_IMAGE_META):
        sysmeta = sysmeta or {}
        recorded = sysmeta.get("image_properties")
        if isinstance(recorded, dict):
            props = {key: str(value) for key, value in recorded.items() if value is not None}
        else:
            props = {key[6:]: str(value) for key, value in sysmeta.items() if key.startswith("image_")}
        found.setdefault(host, []).append(props)
    return found
