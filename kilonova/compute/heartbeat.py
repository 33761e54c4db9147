"""A service's heartbeat: report through the conductor every ``report_interval`` seconds."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from kilonova.common.rpc import RPCClient, RPCError

LOG = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, conductor: RPCClient, host: str, binary: str, interval: float):
        self.conductor = conductor
        self.host = host
        self.binary = binary
        self.interval = interval
        self.service: dict | None = None
        self._task: asyncio.Task | None = None

    async def beat(self) -> dict | None:
        try:
            self.service = await self.conductor.call("service_report", host=self.host, binary=self.binary,
                                                     topic=self.binary.replace("nova-", ""))
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
