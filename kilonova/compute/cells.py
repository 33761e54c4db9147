"""The cells of this deployment and a database handle for each (cells v2).

cell0 holds the servers that could not be scheduled; cell1..N hold the rest.
Mappings live in the API database; every compute service that needs a cell's
database (API, conductor, scheduler) resolves it here.
"""
from __future__ import annotations

from dataclasses import dataclass

from kilonova.common.db import Database, migrate
from kilonova.compute.db import mappings
from kilonova.compute.db.cell_models import CellBase
from kilonova.config import Config

CELL0_UUID = mappings.CELL0_UUID
# The first real cell of an all-in-one deployment has a fixed uuid so restarts find it again.
CELL1_UUID = "5a3e8c1e-0c2b-4e55-9a57-3f0d2c0b0c01"
CELL_MIGRATIONS = __import__("pathlib").Path(__file__).parent / "db" / "cell_migrations"


@dataclass
class Cell:
    uuid: str
    name: str
    db: Database

    @property
    def is_cell0(self) -> bool:
        return self.uuid == CELL0_UUID


class Cells:
    def __init__(self, api_db: Database):
        self.api_db = api_db
        self._cells: dict[str, Cell] = {}
        self._by_id: dict[int, Cell] = {}

    def load(self) -> None:
        """Read the cell mappings; called again it adds cells created since (``create_cell``)."""
        for mapping in self.api_db.run_sync(mappings.list_cells, write=False):
            cell = Cell(mapping.uuid, mapping.name or mapping.uuid,
                        Database.shared(mapping.database_connection, name=f"cell-{mapping.name}"))
            self._cells[mapping.uuid] = cell
            self._by_id[mapping.id] = cell

    def get(self, uuid: str) -> Cell:
        return self._cells[uuid]

    def by_id(self, cell_id: int | None) -> Cell | None:
        return None if cell_id is None else self._by_id.get(cell_id)

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
