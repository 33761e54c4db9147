"""The cells of this deployment and a database handle for each (cells v2).

cell0 holds the servers that could not be scheduled; cell1..N hold the rest.
Mappings live in the API database; every compute service that needs a cell's
database (API, conductor, scheduler) resolves it here.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import sqlalchemy as sa

from kilonova.common.db import Database, migrate
from kilonova.compute.db import mappings
from kilonova.compute.db.cell_models import CellBase
from kilonova.config import Config

CELL0_UUID = mappings.CELL0_UUID
# The first real cell of an all-in-one deployment has a fixed uuid so restarts find it again.
CELL1_UUID = "5a3e8c1e-0c2b-4e55-9a57-3f0d2c0b0c01"
CELL_MIGRATIONS = __import__("pathlib").Path(__file__).parent / "db" / "cell_migrations"

LOG = logging.getLogger(__name__)
T = TypeVar("T")

# A cell database that does not answer must not make every request slow: connecting gives up
# after CONNECT_TIMEOUT, a query after QUERY_TIMEOUT, and a cell found unreachable is reported
# down without trying again for DOWN_SECONDS.
CONNECT_TIMEOUT = 3
QUERY_TIMEOUT = 20.0
DOWN_SECONDS = 10.0


class CellDown(Exception):
    """The cell's database cannot be reached (now, or it failed a moment ago)."""

    def __init__(self, cell: "Cell", reason: str):
        super().__init__(f"cell {cell.name} ({cell.uuid}) is not responding: {reason}")
        self.cell = cell


# MySQL client errors that mean the server cannot be reached (can't connect, gone away, lost
# connection, too many connections, shutting down).
_MYSQL_UNREACHABLE = {1040, 1053, 2002, 2003, 2005, 2006, 2013}


def _unreachable(exc: BaseException) -> bool:
    """Whether a database error means "cannot reach the database" rather than "bad statement"."""
    if isinstance(exc, (asyncio.TimeoutError, ConnectionError)):
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:  # PostgreSQL: connection exceptions, server shutting down or starting up
        return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_UNREACHABLE
    if isinstance(exc, sa.exc.OperationalError):  # psycopg's failed connect, SQLite's unopenable file
        return "locked" not in str(exc.orig)  # SQLite's busy lock is contention, not an outage
    return isinstance(exc, sa.exc.InterfaceError)


def with_connect_timeout(url: str) -> str:
    """The URL with a short connect timeout for PostgreSQL and MySQL, unless it sets one already."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "mysql") or "connect_timeout" in parsed.query:
        return url
    return parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)}).render_as_string(
        hide_password=False)


@dataclass
class Cell:
    uuid: str
    name: str
    db: Database
    transport_url: str = "none:///"
    _down_until: float = field(default=0.0, compare=False, repr=False)

    @property
    def is_cell0(self) -> bool:
        return self.uuid == CELL0_UUID

    @property
    def is_down(self) -> bool:
        """Known unreachable a moment ago (the next ``read`` fails fast instead of waiting again)."""
        return time.monotonic() < self._down_until

    def mark_down(self, reason: str) -> None:
        if not self.is_down:
            LOG.warning("cell %s is down: %s", self.name, reason)
        self._down_until = time.monotonic() + DOWN_SECONDS

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``db.read`` that raises ``CellDown`` when the cell's database cannot be reached."""
        if self.is_down:
            raise CellDown(self, "it failed less than a few seconds ago")
        for attempt in (1, 2):
            try:
                # A read that finishes at once (SQLite on the loop) needs no timeout task around it.
                done, result = self.db.read_now(fn, *args, **kwargs)
                if done:
                    return result
                return await asyncio.wait_for(self.db.read(fn, *args, **kwargs), QUERY_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - classified below; others propagate unchanged
                if not _unreachable(exc):
                    raise
                # A connection the server closed (a restart, a proxy, pg_terminate_backend) says nothing of
                # the next one: the pool has been renewed, so a read (idempotent) is tried once more before
                # the whole cell counts as down.
                if attempt == 1 and getattr(exc, "connection_invalidated", False):
                    continue
                reason = str(getattr(exc, "orig", None) or exc or type(exc).__name__).strip().splitlines()[0]
                self.mark_down(reason)
                raise CellDown(self, reason) from exc
        raise AssertionError("unreachable")


class Cells:
    def __init__(self, api_db: Database):
        self.api_db = api_db
        self._cells: dict[str, Cell] = {}
        self._by_id: dict[int, Cell] = {}

    def load(self) -> None:
        """Read the cell mappings; called again it adds cells created since (``create_cell``)."""
        for mapping in self.api_db.run_sync(mappings.list_cells, write=False):
            url = with_connect_timeout(mapping.database_connection)
            cell = self._cells.get(mapping.uuid)
            if cell is None or cell.db.url != url:
                cell = Cell(mapping.uuid, mapping.name or mapping.uuid,
                            Database.shared(url, name=f"cell-{mapping.name}"), mapping.transport_url)
            else:  # keep the object (and what is known of its health), refresh what may have changed
                cell.name = mapping.name or mapping.uuid
                cell.transport_url = mapping.transport_url
            self._cells[mapping.uuid] = cell
            self._by_id[mapping.id] = cell

    def get(self, uuid: str) -> Cell:
        return self._cells[uuid]

    def by_id(self, cell_id: int | None) -> Cell | None:
        return None if cell_id is None else self._by_id.get(cell_id)

    def ids_of(self, cells: list[Cell]) -> list[int]:
        """The API database ids of these cells' mappings."""
        wanted = {cell.uuid for cell in cells}
        return [cell_id for cell_id, cell in self._by_id.items() if cell.uuid in wanted]

    @property
    def cell0(self) -> Cell:
        return self._cells[CELL0_UUID]

    def all(self) -> list[Cell]:
        return list(self._cells.values())

    def real(self) -> list[Cell]:
        return [cell for cell in self._cells.values() if not cell.is_cell0]

    def named(self, name: str) -> Cell | None:
        return next((cell for cell in self._cells.values() if cell.name == name or cell.uuid == name), None)

    @property
    def default(self) -> Cell:
        """Where new hosts are mapped in the all-in-one deployment."""
        return self._cells.get(CELL1_UUID) or self.real()[0]


def setup_cells(conf: Config, api_db: Database) -> None:
    """Map cell0 and cell1 from the configuration and migrate their databases (simple_cell_setup)."""
    transport_url = conf.get("DEFAULT", "transport_url")
    specs = [(CELL0_UUID, "cell0", "none:///", conf.get("cell0_database", "connection")),
             (CELL1_UUID, "cell1", transport_url, conf.get("database", "connection"))]
    existing = {cell.database_connection: cell.uuid for cell in api_db.run_sync(mappings.list_cells, write=False)}
    for uuid, name, url, connection in specs:
        if existing.get(connection, uuid) != uuid:
            continue  # the operator mapped this database already (cell_v2 create_cell)
        api_db.run_sync(mappings.ensure_cell, uuid, name, url, connection)
        migrate(Database.shared(connection, name=f"cell-{name}"), CELL_MIGRATIONS, CellBase.metadata)


def discover_hosts(api_db: Database, cells: list[Cell]) -> list[tuple[str, Cell]]:
    """Map every compute host found in a cell's services table that no host mapping names yet.

    ``nova-manage cell_v2 discover_hosts`` by service: returns the (host, cell) pairs it mapped.
    """
    from kilonova.compute.db import services

    mapped = []
    for cell in cells:
        if cell.is_cell0:
            continue
        hosts = {row.host for row in cell.db.run_sync(services.list_services, binary="nova-compute", write=False)}
        for host in sorted(hosts):
            if api_db.run_sync(mappings.get_host_mapping, host, write=False) is None:
                api_db.run_sync(mappings.map_host, host, cell.uuid)
                mapped.append((host, cell))
    return mapped
