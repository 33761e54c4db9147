"""The fixed life of a long-running operation (a task on the conductor, its steps on the agents).

    class Resize(Operation):
        def check_arguments(self): ...   # the request's own sense; no state read
        async def prechecks(self): ...   # read states, hosts, quotas; change nothing
        async def claim(self): ...       # Placement (and the migration record)
        async def execute(self): ...     # the steps, each recorded (``self.step``)
        async def rollback(self, exc): ...  # undo what ``execute`` (and ``claim``) did

``await Resize(...).run()``: a precheck that fails raises before anything changed (the caller turns
that into the server's previous state and a fault); a failure after the claim runs ``rollback`` and
re-raises. Each operation module also has a reconcile pass for its own stuck states (the conductor's
``@reconcile``), so a crash between two steps ends, within a deadline, in a server that is ACTIVE on
exactly one host or in ERROR with a fault -- never stuck, nothing leaked.
"""
from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


class PrecheckFailed(Exception):
    """The operation cannot start; nothing was changed. The message says why (it becomes the fault)."""


class Operation:
    name = "operation"

    def check_arguments(self) -> None:
        """Refuse arguments that make no sense on their own (no state is read)."""

    async def prechecks(self) -> None:
        """Read what the operation depends on and refuse (PrecheckFailed) when it cannot succeed."""

    async def claim(self) -> None:
        """Take what the operation needs (Placement allocations, records)."""

    async def execute(self) -> None:
        raise NotImplementedError

    async def rollback(self, exc: BaseException) -> None:
        """Undo what ``claim`` and ``execute`` did, after ``exc``."""

    async def run(self) -> None:
        self.check_arguments()
        await self.prechecks()
        await self.claim()
        try:
            await self.execute()
        except BaseException as exc:
            LOG.warning("%s failed: %s; rolling back", self.name, exc)
            try:
                await self.rollback(exc)
            except Exception:  # noqa: BLE001 - the reconcile pass finishes what the rollback could not
                LOG.exception("rollback of %s failed; its reconcile pass will finish it", self.name)
            raise
