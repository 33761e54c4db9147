"""Deletes no compute agent finishes (its host is down, or the delete is past its deadline): finished here."""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from kilonova.common.rpc import RPCError
from kilonova.compute.cells import Cell
from kilonova.compute.cleanup import delete_locally
from kilonova.compute.conductor.part import ConductorPart
from kilonova.compute.db import instances, services

LOG = logging.getLogger(__name__)


class StuckDeletes(ConductorPart):
    async def reconcile_stuck_deletes(self) -> int:
        """Finish here the deletes no compute agent finishes: its host is down, or ``[compute] delete_timeout``
        has passed (the message was lost, the agent gave up on a dead conductor, the API died before
        sending it). Ports, claims, then the row, as the agent would; a live host is told again, so
        that it destroys the guest when it can."""
        finished = 0
        for cell in self.cells.real():
            try:
                finished += await self._finish_stuck_deletes(cell)
            except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
                LOG.warning("finishing stuck deletes in cell %s failed; next pass retries", cell.name, exc_info=True)
        return finished

    async def _finish_stuck_deletes(self, cell: Cell) -> int:
        timeout = self.conf.getfloat("compute", "delete_timeout")
        down_time = self.conf.getfloat("DEFAULT", "service_down_time")
        now = datetime.utcnow()
        deadline = now - timedelta(seconds=timeout)
        quiet = now - timedelta(seconds=min(timeout, down_time))  # a down host had this long to report
        finished = 0
        for instance in await cell.db.read(instances.find_stuck, None, quiet, task_state="deleting"):
            uuid, host = instance["uuid"], instance["host"]
            overdue = datetime.fromisoformat(instance["updated_at"] or instance["created_at"]) < deadline
            host_up = bool(host) and await cell.db.read(services.compute_is_up, host, down_time)
            if host_up and not overdue:
                continue
            if not await cell.db.write(instances.claim_stale, uuid, "deleting", quiet):
                continue  # another conductor is finishing it
            LOG.warning("finishing the delete of %s without its compute host %s (%s)", uuid, host,
                        "past its deadline" if host_up else "the host is down")
            if host_up:
                with contextlib.suppress(RPCError):
                    await self.compute_rpc(host).cast("terminate_instance", instance=instance)
            if await delete_locally(cell, self.placement, self.network, instance, self.volumes):
                finished += 1
            self._cell_of.pop(uuid, None)
        return finished

