"""Reclaiming soft-deleted servers: ``[DEFAULT] reclaim_instance_interval`` after their delete, for real.

Upstream's compute hosts reclaim their own servers periodically; here one reconcile pass of the
conductors does it for every host (each reclaim is a compare-and-set from SOFT_DELETED to DELETING,
so of several conductors one acts). The server then goes the way of any delete: its host's agent
destroys the guest and gives back ports and allocations; a host that is down leaves it to the
stuck-delete pass (kilonova/compute/conductor/deletes.py), which finishes it without the host.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from kilonova.common.db import NotFound
from kilonova.common.rpc import RPCError
from kilonova.compute.conductor.tasks import reconcile
from kilonova.compute.db import instances, mappings, server_groups
from kilonova.compute.db.cell_models import Instance
from kilonova.compute.db.instances import UnexpectedTaskState

LOG = logging.getLogger(__name__)


def _due(session, older_than: datetime) -> list[dict]:
    rows = session.scalars(sa.select(Instance).where(
        Instance.deleted == 0, Instance.vm_state == "soft-delete", Instance.task_state.is_(None),
        Instance.deleted_at.is_not(None), Instance.deleted_at < older_than))
    return [instances.to_dict(row) for row in rows]


def _queue_for_delete(session, uuid: str) -> None:
    mapping = mappings.get_instance_mapping(session, uuid)
    if mapping is not None:
        mapping.queued_for_delete = True
    server_groups.remove_member(session, uuid)  # no longer in its server group


@reconcile
async def reclaim_soft_deleted(conductor) -> int:
    interval = conductor.conf.getfloat("DEFAULT", "reclaim_instance_interval")
    if interval <= 0:
        return 0
    older_than = datetime.utcnow() - timedelta(seconds=interval)
    reclaimed = 0
    for cell in conductor.cells.real():
        try:
            due = await cell.db.read(_due, older_than)
        except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
            LOG.warning("looking for servers to reclaim in cell %s failed", cell.name, exc_info=True)
            continue
        for server in due:
            uuid = server["uuid"]
            try:
                server = await cell.db.write(instances.update, uuid, {"task_state": "deleting"},
                                             expected_task_state=[None], expected_vm_state=["soft-delete"])
            except (UnexpectedTaskState, NotFound):
                continue  # restored, deleted or taken by another conductor meanwhile
            LOG.info("reclaiming soft-deleted server %s", uuid)
            await conductor.cells.api_db.write(_queue_for_delete, uuid)
            with contextlib.suppress(RPCError):  # an unreachable host: the stuck-delete pass finishes it
                await conductor.compute_rpc(server["host"]).cast("terminate_instance", instance=server)
            reclaimed += 1
    return reclaimed
