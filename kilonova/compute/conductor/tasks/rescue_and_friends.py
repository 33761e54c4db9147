"""Deadlines of the short host operations: rescue, unrescue, restore, soft delete, admin password.

Each sets a task state that only its host clears. When the host dies or loses the message, nothing
would: after ``[compute] action_timeout`` without an update a conductor ends it (compare-and-set, so
one conductor acts, and a host that reports meanwhile wins), with a fault saying what to do:

* soft-deleting: ends SOFT_DELETED (what was asked; the guest is powered off at the reclaim or
  started again by a restore);
* restoring: stays SOFT_DELETED, to be restored again (a restore only starts the guest);
* updating_password: the server as it was (the password may or may not have changed);
* rescuing / unrescuing: ERROR, as the guest may be half-way; the fault names the way out.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kilonova.common.db import NotFound
from kilonova.compute.conductor.tasks import reconcile
from kilonova.compute.db import instances
from kilonova.compute.db.instances import UnexpectedTaskState

LOG = logging.getLogger(__name__)

# task state -> (values it ends with, fault message or None)
ENDINGS = {
    "soft-deleting": ({"vm_state": "soft-delete"}, None),
    "restoring": ({}, "The restore did not finish: its compute host did not report in time. The server is still "
                      "SOFT_DELETED: restore it again once its host is up, or delete it."),
    "updating_password": ({}, "Changing the admin password did not finish: its compute host did not report in time. "
                              "The password may not have changed: set it again."),
    "rescuing": ({"vm_state": "error"}, "The rescue did not finish: its compute host did not report in time and the "
                                        "guest may be half-way. Once the host is up, reset the state to active and "
                                        "rescue again, or rebuild or delete the server."),
    "unrescuing": ({"vm_state": "error"}, "The unrescue did not finish: its compute host did not report in time and "
                                          "the guest may still boot its rescue image. Once the host is up, reset "
                                          "the state and unrescue again, or rebuild or delete the server."),
}


def _end(session, uuid: str, task_state: str, horizon: datetime) -> bool:
    if not instances.claim_stale(session, uuid, task_state, horizon):
        return False
    values, message = ENDINGS[task_state]
    instances.update(session, uuid, {**values, "task_state": None}, expected_task_state=[task_state])
    if message:
        instances.add_fault(session, uuid, 500, message)
    return True


@reconcile
async def end_stuck_host_actions(conductor) -> int:
    timeout = conductor.conf.getfloat("compute", "action_timeout")
    horizon = datetime.utcnow() - timedelta(seconds=timeout)
    ended = 0
    for cell in conductor.cells.real():
        for task_state in ENDINGS:
            try:
                stuck = await cell.db.read(instances.find_stuck, None, horizon, task_state=task_state)
            except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
                LOG.warning("looking for stuck %s in cell %s failed", task_state, cell.name, exc_info=True)
                break
            for instance in stuck:
                try:
                    if await cell.db.write(_end, instance["uuid"], task_state, horizon):
                        LOG.warning("%s of %s on %s did not finish within %s s: ended", task_state,
                                    instance["uuid"], instance.get("host"), timeout)
                        ended += 1
                except (NotFound, UnexpectedTaskState):
                    continue
    return ended
