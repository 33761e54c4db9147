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
        self.sizes: dict[str, int] = {}  # cell uuid -> how many compute nodes its last full read found
        # The API database's part of a decision, in one transaction.
        self._api = FreshRead(lambda: self.cells.api_db.read(_api_view))

    async def api_view(self) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, set[str]]]]:
        """(every aggregate with metadata: uuid, name, metadata -- the Placement pre-filters read them;
        host -> its zone; host -> its aggregates' metadata, key -> values -- the aggregate filters and the
        weighers' per-aggregate multipliers read it)."""
        return await self._api.get()

    async def hosts(self, cell) -> list[dict[str, Any]]:
        """Every compute node of ``cell`` with its service's state (host_view.compute_hosts rows)."""
        db = cell.db
        known = self._hosts.get(cell.uuid)
        if known is None or known[0] is not db:
            known = self._hosts[cell.uuid] = (db, FreshRead(lambda: cell.read(host_view.compute_hosts,
                                                                              self.down_time)))
        try:
            found = await known[1].get()
        except CellDown:
            return []  # a cell whose database is down offers no host, as upstream's host manager skips it
        self.sizes[cell.uuid] = len(found)
        return found

    async def hosts_and_counts(self, cell) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]:
        """``hosts`` and, in the same transaction, host -> (instances, I/O-heavy instances) (IoOps and
        NumInstances weighers)."""
        down_time = self.down_time

        def read(session):
            return host_view.compute_hosts(session, down_time), host_view.instance_counts(session)
        read.__name__ = "hosts_and_counts"
        found = await self._cell_read(cell, read, default=([], {}))
        self.sizes[cell.uuid] = len(found[0])
        return found

    async def some_hosts(self, cell, uuids: list[str], counts: bool) -> tuple[list[dict[str, Any]], dict]:
        """Only the compute nodes ``uuids`` of ``cell`` (and its instance counts when ``counts``): for a cell
        with many more hosts than a request's candidates (not shared between requests: each has its own)."""
        def read(session):
            return (host_view.compute_hosts(session, self.down_time, uuids),
                    host_view.instance_counts(session) if counts else {})
        try:
            return await cell.read(read)
        except CellDown:
            return [], {}

    async def image_properties(self, cell) -> dict[str, list[dict[str, str]]]:
        """host -> its instances' image properties in ``cell`` (ImagePropertiesWeigher)."""
        return await self._cell_read(cell, host_view.instance_image_properties)

    async def _cell_read(self, cell, read, default: Any = None) -> Any:
        """A read of ``cell`` shared by the requests that ask at once; ``default`` ({}) when the cell is down."""
        key = (read.__name__, cell.uuid)
        known = self._per_cell.get(key)
        if known is None or known[0] is not cell.db:
            known = self._per_cell[key] = (cell.db, FreshRead(lambda: cell.read(read)))
        try:
            return await known[1].get()
        except CellDown:
            return {} if default is None else default


def _api_view(session) -> tuple:
    return aggregates.with_metadata(session), aggregates.host_zones(session), aggregates.host_metadata(session)
