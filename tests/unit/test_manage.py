"""``kilonova manage`` on SQLite: syncs, cell mappings, host discovery, upgrade checks."""
import contextlib
import io

from kilonova.cli import main
from kilonova.common.db import Database
from kilonova.compute.db import services
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


def test_upgrade_check_names_what_to_run(tmp_path):
    code, report = run(tmp_path, "status", "upgrade", "check")
    assert code == 2
    assert "kilonova manage api_db sync" in report


def test_passwords_are_masked():
    assert mask("mysql+pymysql://root:pw@db/nova") == "mysql+pymysql://root:****@db/nova"
    assert mask("rabbit://a:x@h1:5672,b:y@h2:5672/") == "rabbit://a:****@h1:5672,b:****@h2:5672/"
    assert mask("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"
