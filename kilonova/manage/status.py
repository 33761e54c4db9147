"""``kilonova manage status upgrade check`` (nova-status upgrade check): is this deployment ready to run?"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path

from kilonova.common.db import Database
from kilonova.compute import cells as cells_mod
from kilonova.compute import versions
from kilonova.compute.db import mappings, services
from kilonova.manage import load_conf

PACKAGE = Path(__file__).resolve().parents[1]

SUCCESS, WARNING, FAILURE = 0, 1, 2
NAMES = {SUCCESS: "Success", WARNING: "Warning", FAILURE: "Failure"}


@dataclass
class Result:
    code: int
    details: str | None = None


def register(groups) -> None:
    status = groups.add_parser("status", help="nova-status style checks").add_subparsers(dest="action", required=True)
    upgrade = status.add_parser("upgrade", help="upgrade readiness").add_subparsers(dest="what", required=True)
    upgrade.add_parser("check", help="run every check; exit 0 (ok), 1 (warnings) or 2 (failures)").set_defaults(
        func=upgrade_check)


def at_head(database: Database, migrations_dir) -> bool:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory(str(migrations_dir)).get_heads())
    with database.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads


@contextlib.contextmanager
def _deployment(conf):
    """The API database and the cells it maps (not loaded yet), closed afterwards."""
    api = Database(conf.get("api_database", "connection"), name="nova_api", workers=1)
    cells = cells_mod.Cells(api)
    try:
        yield api, cells
    finally:
        for cell in cells.all():
            cell.db.close()
        api.close()


def check_cells(conf) -> Result:
    with _deployment(conf) as (api, cells):
        try:
            cells.load()
        except Exception as exc:  # noqa: BLE001 - an unsynced API database is a finding, not a crash
            return Result(FAILURE, f"The API database cannot be read ({type(exc).__name__}). "
                                   "Run 'kilonova manage api_db sync'.")
        if cells_mod.CELL0_UUID not in {c.uuid for c in cells.all()}:
            return Result(FAILURE, "No cell0 mapping found. Run 'kilonova manage cell_v2 map_cell0'.")
        if not cells.real():
            return Result(FAILURE, "No cells are mapped besides cell0. Run 'kilonova manage cell_v2 create_cell'.")
        unmapped = []
        for cell in cells.real():
            try:
                rows = cell.db.run_sync(services.list_services, binary="nova-compute", write=False)
            except Exception as exc:  # noqa: BLE001
                return Result(FAILURE, f"Cell {cell.name} ({cell.uuid}) database cannot be read: "
                                       f"{type(exc).__name__}. Run 'kilonova manage db sync'.")
            unmapped += [row.host for row in rows
                         if api.run_sync(mappings.get_host_mapping, row.host, write=False) is None]
        if unmapped:
            return Result(WARNING, f"Compute hosts without a host mapping: {', '.join(sorted(unmapped))}. "
                                   "Run 'kilonova manage cell_v2 discover_hosts'.")
        return Result(SUCCESS)


# The stores of the services that migrate their own database when they start: section, name, migrations.
SERVICE_STORES = (
    ("placement_database", "Placement", PACKAGE / "placement" / "migrations"),
    ("identity_database", "identity", PACKAGE / "identity" / "migrations"),
    ("image_database", "image", PACKAGE / "image" / "migrations"),
    ("network_database", "network", PACKAGE / "network" / "migrations"),
)


def _absent_sqlite(url: str) -> bool:
    """A SQLite file that does not exist: that service does not keep its data here (not configured)."""
    if not url.startswith("sqlite"):
        return False
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    return not path or path == ":memory:" or not Path(path).exists()


def _store_behind(url: str, migrations_dir, name: str) -> str | None:
    """Why a store is not at the head of its migrations (None when it is)."""
    database = Database(url, name=name, workers=1)
    try:
        return None if at_head(database, migrations_dir) else "behind the code"
    except Exception as exc:  # noqa: BLE001 - unreachable or unreadable is a finding too
        return f"not readable ({type(exc).__name__})"
    finally:
        database.close()


def check_schemas(conf) -> Result:
    from kilonova.compute.api.service import API_MIGRATIONS

    behind = []
    with _deployment(conf) as (api, cells):
        try:
            if not at_head(api, API_MIGRATIONS):
                behind.append("API database (run 'kilonova manage api_db sync')")
            cells.load()
        except Exception:  # noqa: BLE001
            return Result(FAILURE, "The API database is not reachable or not synced.")
        for cell in cells.all():
            try:
                ok = at_head(cell.db, cells_mod.CELL_MIGRATIONS)
            except Exception:  # noqa: BLE001
                ok = False
            if not ok:
                behind.append(f"cell {cell.name} (run 'kilonova manage db sync')")
    for section, name, migrations_dir in SERVICE_STORES:
        url = conf.get(section, "connection")
        if _absent_sqlite(url):
            continue
        problem = _store_behind(url, migrations_dir, section)
        if problem:
            behind.append(f"{name} database {problem} (start the {name} service: it migrates its database)")
    if behind:
        return Result(FAILURE, "Databases behind the code: " + "; ".join(behind))
    return Result(SUCCESS)


def check_service_versions(conf) -> Result:
    """Compute services this release can no longer talk to (warning); computes newer than every conductor
    (failure: an older conductor refuses what they send)."""
    with _deployment(conf) as (_api, cells):
        try:
            cells.load()
        except Exception:  # noqa: BLE001 - reported by the cells check
            return Result(SUCCESS, "The API database cannot be read (see the cells check).")
        rows = []
        for cell in cells.real():
            try:
                rows += cell.db.run_sync(services.list_services, write=False)
            except Exception:  # noqa: BLE001 - reported by the cells check
                continue
    computes = {row.host: row.version for row in rows if row.binary == "nova-compute"}
    conductors = [row.version for row in rows if row.binary == "nova-conductor"]
    too_old = sorted(host for host, version in computes.items() if version < versions.OLDEST_COMPUTE_SERVICE_VERSION)
    newest_conductor = max(conductors, default=versions.SERVICE_VERSION)
    too_new = sorted(host for host, version in computes.items() if version > newest_conductor)
    if too_new:
        return Result(FAILURE, f"Compute services newer (version {max(computes[h] for h in too_new)}) than every "
                               f"conductor (version {newest_conductor}): {', '.join(too_new)}. Upgrade the "
                               "conductors first, then the compute hosts.")
    if too_old:
        return Result(WARNING, f"Compute services older than version {versions.OLDEST_COMPUTE_SERVICE_VERSION}, "
                               f"the oldest this release talks to: {', '.join(too_old)}. Upgrade them (or run "
                               "the previous release's controllers) before going on.")
    older = sorted(host for host, version in computes.items() if version < versions.SERVICE_VERSION)
    if older:
        return Result(SUCCESS, f"{len(older)} compute service(s) still run an older version; they are written "
                               f"for at their own RPC version until they are upgraded: {', '.join(older)}.")
    return Result(SUCCESS)


def check_placement(conf) -> Result:
    import httpx

    from kilonova.common.catalog import root_urls

    url = root_urls(conf)["placement"]
    try:
        response = httpx.get(url + "/", timeout=5)
        version = response.json()["versions"][0]
    except Exception as exc:  # noqa: BLE001
        return Result(FAILURE, f"Placement API at {url} is not reachable: {type(exc).__name__}.")
    maximum = tuple(int(p) for p in version.get("max_version", "1.0").split("."))
    if maximum < (1, 36):
        return Result(FAILURE, f"Placement API does not support 1.36 (max {version.get('max_version')}).")
    return Result(SUCCESS)


CHECKS = (("Cells v2", check_cells), ("Database schemas", check_schemas), ("Service versions", check_service_versions),
          ("Placement API", check_placement))


def upgrade_check(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    results = [(name, check(conf)) for name, check in CHECKS]
    width = max([36] + [len(f"Details: {r.details}") for _n, r in results if r.details])
    rule = "+" + "-" * (width + 2) + "+"
    lines = [rule, f"| {'Upgrade Check Results'.ljust(width)} |", rule]
    for name, result in results:
        for text in (f"Check: {name}", f"Result: {NAMES[result.code]}", f"Details: {result.details}"):
            lines.append(f"| {text.ljust(width)} |")
        lines.append(rule)
    print("\n".join(lines))
    return max(result.code for _n, result in results)
