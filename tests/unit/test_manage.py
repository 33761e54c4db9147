"""``kilonova manage`` on SQLite: syncs, cell mappings, host discovery, upgrade checks."""
import contextlib
import io

import sqlite3

from kilonova.cli import main
from kilonova.common.db import Database
from kilonova.compute import versions
from kilonova.compute.db import services
from kilonova.manage import status
from kilonova.manage.cells import mask


def run(state_dir, *args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--state-dir", str(state_dir), "manage", *args])
    return code, out.getvalue()


def test_cells_syncs_and_discovery(tmp_path):
    cell2 = f"sqlite:///{tmp_path}/cell2.sqlite"
    assert run(tmp_path, "api_db", "sync")[0] == 0
    assert run(tmp_path, "cell_v2", "map_cell0")[0] == 0
    assert run(tmp_path, "cell_v2", "create_cell", "--name", "cell1")[0] == 0
    code, uuid = run(tmp_path, "cell_v2", "create_cell", "--name", "cell2", "--database_connection", cell2,
                     "--transport-url", "rabbit://u:secret@h:5672/v", "--verbose")
    assert code == 0
    assert run(tmp_path, "cell_v2", "create_cell", "--name", "again", "--database_connection", cell2,
               "--transport-url", "rabbit://u:secret@h:5672/v")[0] == 2
    assert run(tmp_path, "db", "sync")[0] == 0
    code, listed = run(tmp_path, "cell_v2", "list_cells")
    assert "| cell2 " in listed and "u:****@h" in listed and "secret" not in listed
    assert "secret" in run(tmp_path, "cell_v2", "list_cells", "--verbose")[1]

    database = Database(cell2, name="cell2", workers=1)
    try:
        database.run_sync(services.report, "newhost", "nova-compute", "compute")
    finally:
        database.close()
    code, found = run(tmp_path, "cell_v2", "discover_hosts", "--verbose")
    assert code == 0 and f"Creating host mapping for compute host 'newhost' in cell {uuid.strip()}" in found
    assert "newhost" not in run(tmp_path, "cell_v2", "discover_hosts", "--verbose")[1]
    code, hosts = run(tmp_path, "cell_v2", "list_hosts")
    assert code == 0 and f"| cell2     | {uuid.strip()} | newhost  |" in hosts, hosts
    assert "newhost" in run(tmp_path, "cell_v2", "list_hosts", "--cell_uuid", uuid.strip())[1]
    assert "newhost" not in run(tmp_path, "cell_v2", "list_hosts", "--cell_uuid",
                                "00000000-0000-0000-0000-000000000000")[1]  # cell0
    assert run(tmp_path, "cell_v2", "list_hosts", "--cell_uuid", "no-such-cell")[0] == 2


def test_upgrade_check_names_what_to_run(tmp_path):
    code, report = run(tmp_path, "status", "upgrade", "check")
    assert code == 2
    assert "kilonova manage api_db sync" in report


def _deployed_with_services(tmp_path, monkeypatch, records: dict[tuple[str, str], int]) -> None:
    """Synced databases, one cell, the given (host, binary) -> version service records, hosts mapped.

    The Placement API check needs a running Placement: left out here (the distributed tests run it).
    """
    for command in (("api_db", "sync"), ("cell_v2", "map_cell0"), ("cell_v2", "create_cell", "--name", "cell1"),
                    ("db", "sync")):
        assert run(tmp_path, *command)[0] == 0
    cell1 = Database(f"sqlite:///{tmp_path}/cell1.sqlite", name="cell1", workers=1)
    try:
        for (host, binary), version in records.items():
            cell1.run_sync(services.report, host, binary, binary.replace("nova-", ""), version)
    finally:
        cell1.close()
    assert run(tmp_path, "cell_v2", "discover_hosts")[0] == 0
    monkeypatch.setattr(status, "CHECKS", tuple(c for c in status.CHECKS if c[0] != "Placement API"))


def test_upgrade_check_passes_mid_upgrade_and_warns_about_computes_too_old_to_talk_to(tmp_path, monkeypatch):
    _deployed_with_services(tmp_path, monkeypatch, {("ctl", "nova-conductor"): versions.SERVICE_VERSION,
                                                    ("new-host", "nova-compute"): versions.SERVICE_VERSION,
                                                    ("old-host", "nova-compute"): 1})
    code, report = run(tmp_path, "status", "upgrade", "check")
    assert code == 0, report
    assert "still run an older version" in report and "old-host" in report
    # A later release that no longer writes for service version 1: the old host needs upgrading first.
    monkeypatch.setattr(versions, "OLDEST_COMPUTE_SERVICE_VERSION", 2)
    code, report = run(tmp_path, "status", "upgrade", "check")
    assert code == 1, report
    assert "Result: Warning" in report and "the oldest this release talks to: old-host" in report


def test_upgrade_check_fails_on_computes_newer_than_the_conductors_and_on_unmigrated_stores(tmp_path, monkeypatch):
    _deployed_with_services(tmp_path, monkeypatch, {("ctl", "nova-conductor"): 1,
                                                    ("early-host", "nova-compute"): versions.SERVICE_VERSION})
    code, report = run(tmp_path, "status", "upgrade", "check")
    assert code == 2, report
    assert "than every conductor (version 1): early-host" in report and "Upgrade the conductors first" in report
    assert "Placement database" not in report  # no Placement database here: not checked
    sqlite3.connect(tmp_path / "placement.sqlite").close()  # one that was never migrated
    code, report = run(tmp_path, "status", "upgrade", "check")
    assert code == 2 and "Placement database behind the code" in report, report


def test_passwords_are_masked():
    assert mask("mysql+pymysql://root:pw@db/nova") == "mysql+pymysql://root:****@db/nova"
    assert mask("rabbit://a:x@h1:5672,b:y@h2:5672/") == "rabbit://a:****@h1:5672,b:****@h2:5672/"
    assert mask("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"
