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
import functools
import json
from typing import Any, Awaitable, Callable, Generic, NamedTuple, TypeVar

from kilonova.compute.cells import CellDown
from kilonova.compute.db import aggregates, host_view
from kilonova.compute.scheduler.topology import parse_json

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


class Node(NamedTuple):
    """One compute node as the scheduler reads it, with what host states need already parsed."""
    uuid: str
    stamp: Any                # its updated_at, as the driver gives it (None: not read by stamps)
    host: str
    nodename: str
    hypervisor_type: str
    hypervisor_version: int | None
    host_ip: str | None
    cpu_info: str
    supported_instances: tuple
    failed_builds: int
    numa_topology: Any
    pci_stats: Any
    service_up: bool
    service_disabled: bool

    @classmethod
    def of(cls, row: dict[str, Any], stamp: Any = None) -> "Node":
        return cls(row["uuid"], stamp, row["host"], row["nodename"], row["hypervisor_type"],
                   row["hypervisor_version"], row["host_ip"], row["cpu_info"] or "", supported_instances(row["cpu_info"]),
                   failed_builds(row["stats"]), parse_json(row["numa_topology"]), parse_json(row["pci_stats"]),
                   row["service_up"], row["service_disabled"])


# Above this many changed nodes a read takes every row (an IN list this long costs more than it saves).
_MAX_CHANGED = 500


class KeptNodes:
    """A cell's compute nodes kept between reads, as upstream's HostManager keeps its host states: each read
    takes every node's updated_at and service state (a light statement) and reads again in full only the
    nodes that are new or whose updated_at changed; nodes gone from the database are gone from the answer.
    Each read returns a new list: one handed out earlier never changes."""

    def __init__(self, down_time: float) -> None:
        self.down_time = down_time
        # (node uuid -> node, node uuid -> its node_stamps row) as last read: one attribute, replaced whole, so
        # that reads on several database threads at once each see one consistent pair
        self._kept: tuple[dict[str, Node], dict[str, tuple]] = ({}, {})
        self.reread = 0   # nodes read in full (for tests and stats)

    def read(self, session) -> list[Node]:
        stamps = host_view.node_stamps(session, self.down_time)
        kept, last = self._kept
        changed = [row[0] for row in stamps if (before := last.get(row[0])) is None or before[1] != row[1]]
        fresh: dict[str, dict] = {}
        changed_set = set(changed)
        if changed:
            rows = host_view.compute_hosts(session, self.down_time, changed if len(changed) <= _MAX_CHANGED else None)
            fresh = {row["uuid"]: row for row in rows}
            self.reread += len(rows)
        nodes = []
        moved = bool(changed) or len(stamps) != len(last)
        for row in stamps:
            uuid = row[0]
            if last.get(uuid) == row and uuid not in changed_set:
                nodes.append(kept[uuid])   # the usual case: the same row, the same node
                continue
            moved = True
            full = fresh.get(uuid)
            if full is not None:
                node = Node.of(full, row[1])
            elif uuid in kept and uuid not in changed_set:
                node = kept[uuid]
            else:  # deleted between the two statements (read committed): gone
                continue
            up, disabled = bool(row[2]), bool(row[3])
            if node.service_up is not up or node.service_disabled is not disabled:
                node = node._replace(service_up=up, service_disabled=disabled)
            nodes.append(node)
        if moved:
            by_uuid = {node.uuid: node for node in nodes}
            self._kept = (by_uuid, {row[0]: row for row in stamps if row[0] in by_uuid})
        return nodes


class HostCache:
    """The scheduler's view of compute hosts (per cell) and of host zones, read fresh but shared."""

    def __init__(self, cells, down_time: float):
        self.cells = cells
        self.down_time = down_time
        self._hosts: dict[str, tuple[Any, KeptNodes]] = {}  # cell uuid -> (db, its nodes kept)
        self._per_cell: dict[tuple[str, str], tuple[Any, FreshRead[Any]]] = {}  # (read, cell uuid) -> (db, reader)
        self.sizes: dict[str, int] = {}  # cell uuid -> how many compute nodes its last full read found
        # The API database's part of a decision, in one transaction.
        self._api = FreshRead(lambda: self.cells.api_db.read(_api_view))

    async def api_view(self) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, dict[str, set[str]]]]:
        """(every aggregate with metadata: uuid, name, metadata -- the Placement pre-filters read them;
        host -> its zone; host -> its aggregates' metadata, key -> values -- the aggregate filters and the
        weighers' per-aggregate multipliers read it)."""
        return await self._api.get()

    def _kept(self, cell) -> KeptNodes:
        known = self._hosts.get(cell.uuid)
        if known is None or known[0] is not cell.db:
            known = self._hosts[cell.uuid] = (cell.db, KeptNodes(self.down_time))
        return known[1]

    async def hosts(self, cell) -> list[Node]:
        """Every compute node of ``cell`` with its service's state, in node id order."""
        kept = self._kept(cell)

        def read(session):
            return kept.read(session)
        read.__name__ = "hosts"
        found = await self._cell_read(cell, read, default=[])
        self.sizes[cell.uuid] = len(found)
        return found

    async def hosts_and_counts(self, cell) -> tuple[list[Node], dict[str, tuple[int, int]]]:
        """``hosts`` and, in the same transaction, host -> (instances, I/O-heavy instances) (IoOps and
        NumInstances weighers)."""
        kept = self._kept(cell)

        def read(session):
            return kept.read(session), host_view.instance_counts(session)
        read.__name__ = "hosts_and_counts"
        found = await self._cell_read(cell, read, default=([], {}))
        self.sizes[cell.uuid] = len(found[0])
        return found

    async def some_hosts(self, cell, uuids: list[str], counts: bool) -> tuple[list[Node], dict]:
        """Only the compute nodes ``uuids`` of ``cell`` (and its instance counts when ``counts``): for a cell
        with many more hosts than a request's candidates (not shared between requests: each has its own)."""
        def read(session):
            return ([Node.of(row) for row in host_view.compute_hosts(session, self.down_time, uuids)],
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


@functools.lru_cache(maxsize=4096)
def failed_builds(stats: str | None) -> int:
    """The consecutive failed builds a compute node's stats report (cached: most hosts report the same)."""
    parsed = parse_json(stats)
    try:
        return int(parsed.get("failed_builds") or 0) if isinstance(parsed, dict) else 0
    except (TypeError, ValueError):
        return 0


@functools.lru_cache(maxsize=4096)
def supported_instances(cpu_info: str | None) -> tuple:
    """(arch, hypervisor type, vm mode) triples; cached: a fleet's hosts report few distinct cpu_info."""
    try:
        return tuple(tuple(x) for x in json.loads(cpu_info or "{}").get("supported_instances", []))
    except (ValueError, TypeError, AttributeError):
        return ()
