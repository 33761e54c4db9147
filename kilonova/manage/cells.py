"""Database syncs and cells v2 mappings (``nova-manage db``, ``api_db`` and ``cell_v2``)."""
from __future__ import annotations

import argparse
import re
import sys
import uuid as uuidlib

from kilonova.common.db import Database, migrate
from kilonova.compute import cells as cells_mod
from kilonova.compute.db import mappings
from kilonova.compute.db.api_models import APIBase
from kilonova.compute.db.cell_models import CellBase
from kilonova.manage import load_conf, table
from kilonova.manage.progress import Progress


def register(groups) -> None:
    db = groups.add_parser("db", help="cell databases").add_subparsers(dest="action", required=True)
    db.add_parser("sync", help="migrate cell0, the [database] cell and every mapped cell").set_defaults(
        func=db_sync)
    api_db = groups.add_parser("api_db", help="the API database").add_subparsers(dest="action", required=True)
    api_db.add_parser("sync", help="migrate the API database").set_defaults(func=api_db_sync)

    cell_v2 = groups.add_parser("cell_v2", help="cells v2 mappings").add_subparsers(dest="action", required=True)
    map0 = cell_v2.add_parser("map_cell0", help="map cell0 (builds that could not be scheduled)")
    map0.add_argument("--database_connection", "--database-connection", dest="database_connection")
    map0.set_defaults(func=map_cell0)
    create = cell_v2.add_parser("create_cell", help="map a new cell")
    create.add_argument("--name", required=True)
    create.add_argument("--database_connection", "--database-connection", dest="database_connection")
    create.add_argument("--transport-url", "--transport_url", dest="transport_url")
    create.add_argument("--disabled", action="store_true")
    create.add_argument("--verbose", action="store_true", help="print the new cell's uuid")
    create.set_defaults(func=create_cell)
    listing = cell_v2.add_parser("list_cells", help="list the mapped cells")
    listing.add_argument("--verbose", action="store_true", help="show passwords in URLs")
    listing.set_defaults(func=list_cells)
    discover = cell_v2.add_parser("discover_hosts", help="map compute hosts that have no host mapping yet")
    discover.add_argument("--cell_uuid", "--cell-uuid", dest="cell_uuid")
    discover.add_argument("--verbose", action="store_true")
    discover.add_argument("--by-service", action="store_true", help="accepted for compatibility (always)")
    discover.set_defaults(func=discover_hosts)
    hosts = cell_v2.add_parser("list_hosts", help="list the compute hosts mapped to cells")
    hosts.add_argument("--cell_uuid", "--cell-uuid", dest="cell_uuid")
    hosts.set_defaults(func=list_hosts)


def api_database(conf) -> Database:
    return Database(conf.get("api_database", "connection"), name="nova_api", workers=1)


def api_db_sync(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    from kilonova.compute.api.service import API_MIGRATIONS

    database = api_database(conf)
    try:
        migrate(database, API_MIGRATIONS, APIBase.metadata)
    finally:
        database.close()
    return 0


def db_sync(args: argparse.Namespace) -> int:
    """Migrate cell0 and the [database] cell, plus every cell the API database maps (when it exists)."""
    conf = load_conf(args)
    urls = [conf.get("cell0_database", "connection"), conf.get("database", "connection")]
    api = api_database(conf)
    try:
        try:
            urls += [cell.database_connection for cell in api.run_sync(mappings.list_cells, write=False)]
        except Exception:  # noqa: BLE001 - the API database may not be synced yet
            pass
    finally:
        api.close()
    targets = [url for url in dict.fromkeys(urls) if not url.startswith("none:")]
    with Progress("migrating cell databases", len(targets)) as progress:
        for url in targets:
            database = Database(url, name="cell", workers=1)
            try:
                migrate(database, cells_mod.CELL_MIGRATIONS, CellBase.metadata)
            finally:
                database.close()
            progress.advance()
    return 0


def map_cell0(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    connection = args.database_connection or conf.get("cell0_database", "connection")
    api = api_database(conf)
    try:
        api.run_sync(mappings.ensure_cell, cells_mod.CELL0_UUID, "cell0", "none:///", connection)
    finally:
        api.close()
    return 0


def create_cell(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    connection = args.database_connection or conf.get("database", "connection")
    transport_url = args.transport_url or conf.get("DEFAULT", "transport_url")
    api = api_database(conf)
    try:
        for cell in api.run_sync(mappings.list_cells, write=False):
            if cell.database_connection == connection and cell.transport_url == transport_url:
                print(f"The specified transport_url and/or database_connection combination already "
                      f"exists for another cell with uuid {cell.uuid}.", file=sys.stderr)
                return 2
        new_uuid = str(uuidlib.uuid4())
        api.run_sync(_create, new_uuid, args.name, transport_url, connection, args.disabled)
    finally:
        api.close()
    if args.verbose:
        print(new_uuid)
    return 0


def _create(session, uuid: str, name: str, transport_url: str, connection: str, disabled: bool) -> None:
    cell = mappings.ensure_cell(session, uuid, name, transport_url, connection)
    cell.disabled = disabled


def mask(url: str) -> str:
    """Hide the password of each ``user:password@`` in a URL, as list_cells does without --verbose."""
    return re.sub(r"(://[^:/@,]*:)[^@/]*@", r"\1****@", re.sub(r"(,[^:/@,]*:)[^@/]*@", r"\1****@", url))


def list_cells(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    api = api_database(conf)
    try:
        rows = api.run_sync(mappings.list_cells, write=False)
    finally:
        api.close()
    shown = sorted(rows, key=lambda c: (c.name or "", c.uuid))
    show = (lambda u: u) if args.verbose else mask
    print(table(["Name", "UUID", "Transport URL", "Database Connection", "Disabled"],
                [[c.name, c.uuid, show(c.transport_url), show(c.database_connection), c.disabled]
                 for c in shown]))
    return 0


def _host_mappings(session) -> list[tuple[str, str, str]]:
    """(cell name, cell uuid, host) of every host mapping."""
    import sqlalchemy as sa

    from kilonova.compute.db.api_models import CellMapping, HostMapping

    return [tuple(row) for row in session.execute(
        sa.select(CellMapping.name, CellMapping.uuid, HostMapping.host)
        .join(CellMapping, HostMapping.cell_id == CellMapping.id))]


def list_hosts(args: argparse.Namespace) -> int:
    """As ``nova-manage cell_v2 list_hosts``: one row per mapped compute host, by cell then host."""
    conf = load_conf(args)
    api = api_database(conf)
    try:
        rows = api.run_sync(_host_mappings, write=False)
        known = {cell.uuid for cell in api.run_sync(mappings.list_cells, write=False)}
    finally:
        api.close()
    if args.cell_uuid and args.cell_uuid not in known:
        print(f"Cell with uuid {args.cell_uuid} was not found.", file=sys.stderr)
        return 2
    shown = sorted(row for row in rows if not args.cell_uuid or row[1] == args.cell_uuid)
    print(table(["Cell Name", "Cell UUID", "Hostname"], [list(row) for row in shown]))
    return 0


def discover_hosts(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    api = api_database(conf)
    cells = cells_mod.Cells(api)
    try:
        cells.load()
        chosen = cells.real()
        if args.cell_uuid:
            chosen = [cell for cell in chosen if cell.uuid == args.cell_uuid]
            if not chosen:
                print(f"Cell with uuid {args.cell_uuid} was not found.", file=sys.stderr)
                return 2
        mapped = cells_mod.discover_hosts(api, chosen)
        if args.verbose:
            for cell in chosen:
                print(f"Found {len([1 for _h, c in mapped if c is cell])} unmapped computes in cell: {cell.uuid}")
            for host, cell in mapped:
                print(f"Checking host mapping for compute host '{host}': {host}")
                print(f"Creating host mapping for compute host '{host}' in cell {cell.uuid}")
    finally:
        for cell in cells.all():
            cell.db.close()
        api.close()
    return 0
