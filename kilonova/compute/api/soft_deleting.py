"""Soft delete: with ``[DEFAULT] reclaim_instance_interval`` > 0 a DELETE keeps the server SOFT_DELETED.

Its guest is powered off and everything it holds (ports, Placement allocations, quota) is kept
until a conductor's reclaim pass deletes it for real once the interval has passed since the delete
(kilonova/compute/conductor/tasks/reclaim.py), or ``restore`` brings it back, or ``forceDelete``
deletes it at once. As upstream, a server that never ran (no launched_at), one without a host or
whose host is down is deleted at once instead, and a delete of a server already soft-deleted or
being deleted changes nothing. The instance action recorded is "delete", as upstream.
"""
from __future__ import annotations

import logging
from datetime import datetime

from kilonova.common.context import RequestContext
from kilonova.common.db import NotFound
from kilonova.common.rpc import NoSuchTarget
from kilonova.compute.api import lookup
from kilonova.compute.db import instance_actions, instances, services
from kilonova.compute.db.instances import UnexpectedTaskState

LOG = logging.getLogger(__name__)
_DELETING = ("deleting", "soft-deleting")


def _start(session, uuid: str, ctx: dict) -> dict:
    """SOFT_DELETING from whatever task the server is doing (a delete wins over it, as upstream), unless
    a delete is already under way; and the "delete" action."""
    current = instances.get(session, uuid)
    if current.get("task_state") in _DELETING or current["vm_state"] == "soft-delete":
        raise UnexpectedTaskState(f"Instance {uuid} is already being deleted")
    server = instances.update(session, uuid, {"task_state": "soft-deleting", "deleted_at": datetime.utcnow()},
                              expected_task_state=[current.get("task_state")])
    instance_actions.start(session, uuid, "delete", ctx.get("request_id"), ctx.get("user_id"), ctx.get("project_id"))
    return server


async def soft_delete(svc, ctx: RequestContext, ref: lookup.ServerRef) -> bool:
    """Soft-delete the server if it is one to soft-delete: True when done (or nothing was to do)."""
    if svc.conf.getfloat("DEFAULT", "reclaim_instance_interval") <= 0:
        return False
    server = ref.server
    if ref.cell.is_cell0 or not server.get("host") or not server.get("launched_at"):
        return False
    if server["vm_state"] == "soft-delete" or server.get("task_state") in _DELETING:
        return True
    if server.get("task_state") is not None or server["vm_state"] == "resized":
        # A server in the middle of an operation (a move's claims on two hosts...): deleted for real, so
        # that the operation's own delete handling gives everything back (upstream soft-deletes it anyway).
        return False
    if not await ref.cell.db.read(services.compute_is_up, server["host"],
                                  svc.conf.getfloat("DEFAULT", "service_down_time")):
        return False  # as upstream: a down host's server is deleted locally, for real
    try:
        server = await ref.cell.db.write(_start, ref.uuid, ctx.to_dict())
    except NotFound:
        return True
    except UnexpectedTaskState:
        return True  # another delete won the race
    try:
        await svc.compute_rpc(server["host"]).cast("soft_delete_instance", instance=server,
                                                   request_id=ctx.request_id)
    except NoSuchTarget:
        LOG.warning("compute host %s is not reachable; deleting %s for real", server["host"], ref.uuid)
        return False
    return True
