"""A service's heartbeat: report through the conductor every ``report_interval`` seconds."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from kilonova.common.rpc import RPCClient, RPCError
from kilonova.compute.versions import SERVICE_VERSION

LOG = logging.getLogger(__name__)

# The cell a new compute host of this process asks to join ([compute] cell); set by the process runner.
_cell_hint: str | None = None


def set_cell_hint(cell: str | None) -> None:
    global _cell_hint
    _cell_hint = cell or None


class Heartbeat:
    def __init__(self, conductor: RPCClient, host: str, binary: str, interval: float, *,
                 version: int = SERVICE_VERSION):
        self.conductor = conductor
        self.version = version  # the service version announced in the service record
        self.host = host
        self.binary = binary
        self.interval = interval
        self.service: dict | None = None
        self._task: asyncio.Task | None = None

    async def beat(self) -> dict | None:
        try:
            extra = {"cell": _cell_hint} if _cell_hint and self.binary == "nova-compute" else {}
            self.service = await self.conductor.call("service_report", host=self.host, binary=self.binary,
                                                     topic=self.binary.replace("nova-", ""), version=self.version,
                                                     **extra)
        except RPCError as exc:
            LOG.warning("%s on %s could not report its heartbeat: %s", self.binary, self.host, exc)
        return self.service

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._loop(), name=f"heartbeat-{self.binary}-{self.host}")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
