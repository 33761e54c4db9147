"""One conductor call for the periodic reports of all the hosts of a compute process.

A process running hundreds of fake hosts used to send each host's heartbeat
(``service_report``) and usage (``compute_node_update``) as a call of its own:
a thousand hosts made the conductor and its database spend their time on
reports. ``ReportBatcher`` stands in for the conductor's RPC client: those two
methods wait up to ``window`` seconds and go together as one ``report_many``
call (each caller still gets its own result or error); every other method
passes straight through. A conductor without ``report_many`` (older version)
gets the reports one by one, as before. Under ``[upgrade_levels] conductor``
each report inside the batch is written down to that version, as it would be
on its own (an older conductor's ``service_report`` takes no ``version``).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from kilonova.common.rpc import RemoteError, RPCClient

LOG = logging.getLogger(__name__)

BATCHED = ("service_report", "compute_node_update")


class ReportBatcher:
    def __init__(self, conductor: RPCClient, window: float = 1.0, max_batch: int = 500):
        self.conductor = conductor
        self.window = window
        self.max_batch = max_batch
        self._queue: list[tuple[str, dict, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._batching = True   # False once the conductor turned out not to know report_many
        self.calls = 0          # report_many calls sent (for tests)

    async def call(self, method: str, **kwargs: Any) -> Any:
        if method not in BATCHED or not self._batching:
            return await self.conductor.call(method, **kwargs)
        future = asyncio.get_running_loop().create_future()
        self._queue.append((method, kwargs, future))
        if len(self._queue) >= self.max_batch:
            self._send_now()
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later(), name="compute-report-batch")
        return await future

    async def cast(self, method: str, **kwargs: Any) -> None:
        await self.conductor.cast(method, **kwargs)

    def __getattr__(self, name: str) -> Any:  # timeout, target, prepare, ...: the wrapped client's
        return getattr(self.conductor, name)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.window)
        self._flusher = None
        self._send_now()

    def _send_now(self) -> None:
        batch, self._queue = self._queue, []
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if batch:
            task = asyncio.create_task(self._send(batch), name="compute-report-send")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _written(self, method: str, kwargs: dict) -> dict:
        """The arguments of one batched report as the (maybe older) conductor takes them."""
        interface = getattr(self.conductor, "interface", None)
        if interface is None:
            return kwargs
        return interface.prepare(method, kwargs, self.conductor.version_cap)[1]

    async def _send(self, batch: list[tuple[str, dict, asyncio.Future]]) -> None:
        try:
            self.calls += 1
            replies = await self.conductor.call("report_many", reports=[{"method": m, "args": self._written(m, a)}
                                                                        for m, a, _ in batch])
        except RemoteError as exc:
            if exc.exc_type != "NoSuchMethod":
                _fail(batch, exc)
                return
            LOG.info("the conductor does not take batched reports; sending them one by one")
            self._batching = False
            await asyncio.gather(*(self._one(method, kwargs, future) for method, kwargs, future in batch))
            return
        except Exception as exc:  # noqa: BLE001 - timeouts, transport errors: every caller sees it
            _fail(batch, exc)
            return
        for (_, _, future), reply in zip(batch, replies):
            if future.done():
                continue
            if "error" in reply:
                error = reply["error"]
                future.set_exception(RemoteError(error.get("type", "Exception"), error.get("message", ""),
                                                 error.get("data")))
            else:
                future.set_result(reply.get("result"))

    async def _one(self, method: str, kwargs: dict, future: asyncio.Future) -> None:
        try:
            result = await self.conductor.call(method, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)


def _fail(batch: list[tuple[str, dict, asyncio.Future]], exc: BaseException) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(exc)
