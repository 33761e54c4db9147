"""Shared reads of what the scheduler needs from the databases: compute hosts per cell, host zones.

With many requests deciding at once, each used to read every compute node of
every cell for itself, and the scheduler spent its time waiting on the
database. A ``FreshRead`` lets concurrent requests share one read, without ever
giving a request data read before it asked: a request that arrives while a
read is running waits for the next one, which starts as soon as the running
one ends and serves every request that arrived in the meantime.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generic, TypeVar

from kilonova.compute.cells import CellDown
from kilonova.compute.db import aggregates, host_view

T = TypeVar("T")


class FreshRead(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]]):
        self._read = read
        self._running: asyncio.Future | None = None   # the read under way
        self._next: asyncio.Future | None = None      # the one that starts after it
        self.reads = 0                                 # how many reads ran (for tests and stats)

    async def get(self) -> T:
        if self._next is not None:       # not started yet: it will read after this call
            future = self._next
        elif self._running is None:
            future = self._start()
        else:                            # began before this call: wait for the one after it
            self._next = asyncio.ensure_future(self._after(self._running))
            future = self._next
        # shield: a caller that gives up must not cancel the read other callers wait for
        return await asyncio.shield(future)

    def _start(self) -> asyncio.Future:
        self.reads += 1
        task = asyncio.ensure_future(self._read())
        self._running = task
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Future) -> None:
        if self._running is task:
            self._running = None
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone

    async def _after(self, previous: asyncio.Future) -> T:
        await asyncio.wait([previous])
        self._next = None
        return await self._start()


class HostCache:
    """The scheduler's view of compute hosts (per cell) and of host zones, read fresh but shared."""

    def __init__(self, cells, down_time: float):
        self.cells = cells
        self.down_time = down_time
        self._hosts: dict[str, tuple[Any, FreshRead[list[dict[str, Any]]]]] = {}  # cell uuid -> (db, reader)
        self._per_cell: dict[tuple[str, str], tuple[Any, FreshRead[Any]]] = {}  # (read, cell uuid) -> (db, reader)
        self._zones = FreshRead(lambda: self.cells.api_db.read(aggregates.host_zones))
        self._metadata = FreshRead(lambda: self.cells.api_db.read(aggregates.host_metadata))
        self._aggregates = FreshRead(lambda: self.cells.api_db.read(aggregates.with_metadata))

    async def zones(self) -> dict[str, str]:
        return await self._zones.get()

    async def aggregate_metadata(self) -> dict[str, dict[str, set[str]]]:
        """host -> its aggregates' metadata (key -> values), for the filters that read it."""
        return await self._metadata.get()

    async def aggregates(self) -> list[dict[str, Any]]:
        """Every aggregate with metadata: uuid, name, metadata (the Placement pre-filters read them)."""
        return await self._aggregates.get()

    async def hosts(self, cell) -> list[dict[str, Any]]:
        """Every compute node of ``cell`` with its service's state (host_view.compute_hosts rows)."""
        db = cell.db
        known = self._hosts.get(cell.uuid)
        if known is None or known[0] is not db:
            known = self._hosts[cell.uuid] = (db, FreshRead(lambda: cell.read(host_view.compute_hosts,
                                                                              self.down_time)))
        try:
            return await known[1].get()
        except CellDown:
            return []  # a cell whose database is down offers no host, as upstream's host manager skips it

    async def instance_counts(self, cell) -> dict[str, tuple[int, int]]:
        """host -> (instances, I/O-heavy instances) in ``cell`` (IoOps and NumInstances weighers)."""
        return await self._cell_read(cell, host_view.instance_counts)

    async def image_properties(self, cell) -> dict[str, list[dict[str, str]]]:
        """host -> its instances' image properties in ``cell`` (ImagePropertiesWeigher)."""
        return await self._cell_read(cell, host_view.instance_image_properties)

    async def _cell_read(self, cell, read) -> Any:
        key = (read.__name__, cell.uuid)
        known = self._per_cell.get(key)
        if known is None or known[0] is not cell.db:
            known = self._per_cell[key] = (cell.db, FreshRead(lambda: cell.read(read)))
        try:
            return await known[1].get()
        except CellDown:
            return {}
