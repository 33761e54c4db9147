"""The server list's database filters on SQLite, PostgreSQL and MariaDB alike: regular expressions on a
column's text (Python's re.search, ``~``, REGEXP), exact columns, and the tag filters on the JSON list of
tags (json_each, jsonb ``@>``, JSON_CONTAINS), with a limit applied by the database."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from kilonova.common.db import Database, migrate
from kilonova.compute.db import instances
from kilonova.compute.db.cell_models import CellBase
from tests.distributed.infra import Databases

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 12, 0, 0)
SERVERS = [("web-1", ["blue", "red"], "k1", 1), ("web-2", ["blue"], "k2", 4), ("db-1", [], None, 1),
           ("Web-3", ["red", "a,b"], "k1", 1)]
GONE = "00000000-0000-4000-8000-0000000000d1"  # deleted
RECLAIMABLE = "00000000-0000-4000-8000-0000000000d2"  # soft-deleted


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def cell(request, tmp_path_factory):
    server = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('cell') / 'cell.sqlite'}"
    else:
        server = Databases(request.param)
        url = server.url("cell")
    database = Database(url, name="cell", workers=1)
    migrate(database, ROOT / "kilonova/compute/db/cell_migrations", CellBase.metadata)
    for index, (name, tags, key, power) in enumerate(SERVERS):
        database.run_sync(instances.create, {
            "uuid": f"00000000-0000-4000-8000-00000000000{index}", "display_name": name, "project_id": "p1",
            "user_id": "u1", "flavor": {"vcpus": 1, "memory_mb": 64}, "vm_state": "active", "power_state": power,
            "key_name": key, "tags": tags, "created_at": T0.replace(minute=index).isoformat()})
    for uuid, name in ((GONE, "gone"), (RECLAIMABLE, "reclaimable")):
        database.run_sync(instances.create, {"uuid": uuid, "display_name": name, "project_id": "p1", "user_id": "u1",
                                             "flavor": {"vcpus": 1, "memory_mb": 64}, "vm_state": "active",
                                             "created_at": T0.isoformat()})
    database.run_sync(instances.soft_delete, GONE)
    database.run_sync(instances.update, RECLAIMABLE, {"vm_state": "soft-delete"})
    yield database
    database.close()
    if server is not None:
        server.drop_all()


def names(cell, limit=None, deleted=False, **filters) -> list[str]:
    order = (("display_name", "asc"), ("uuid", "asc"))
    rows = cell.run_sync(instances.query, project_id="p1", filters=filters, limit=limit, order=order,
                         deleted=deleted)
    return [row["display_name"] for row in rows]


def test_regular_expressions(cell):
    assert names(cell, **{"regex:display_name": "^web"}) == ["web-1", "web-2"]  # case matters, as re.search
    assert names(cell, **{"regex:display_name": "-[12]$"}) == ["db-1", "web-1", "web-2"]
    assert names(cell, **{"regex:display_name": "b-"}) == ["Web-3", "db-1", "web-1", "web-2"]
    assert names(cell, **{"regex:key_name": "^k1$"}) == ["Web-3", "web-1"]
    assert names(cell, **{"regex:power_state": "^4$"}) == ["web-2"]  # an integer column's text
    assert names(cell, **{"regex:created_at": "12:01"}) == ["web-2"]


def test_tag_filters(cell):
    assert names(cell, **{"tags:all": ["blue", "red"]}) == ["web-1"]
    assert names(cell, **{"tags:all": ["blue"]}) == ["web-1", "web-2"]
    assert names(cell, **{"tags:any": ["red", "green"]}) == ["Web-3", "web-1"]
    assert names(cell, **{"tags:not-all": ["blue", "red"]}) == ["Web-3", "db-1", "web-2"]
    assert names(cell, **{"tags:not-any": ["red"]}) == ["db-1", "web-2"]
    assert names(cell, **{"tags:all": ["a,b"]}) == ["Web-3"]  # a whole tag, not a substring of the JSON
    assert names(cell, **{"tags:all": ["b"]}) == []
    assert names(cell, **{"tags:any": ["blue", "red"], "regex:display_name": "^web"}) == ["web-1", "web-2"]
    assert names(cell, limit=1, **{"tags:any": ["blue", "red"]}) == ["Web-3"]  # the database's limit


def test_deleted_and_soft_deleted(cell):
    assert "reclaimable" not in names(cell) and "gone" not in names(cell)
    assert "reclaimable" in names(cell, soft_deleted=True) and "gone" not in names(cell, soft_deleted=True)
    assert names(cell, deleted=True) == ["gone", "reclaimable"]
    assert names(cell, deleted=True, soft_deleted=False) == ["gone"]
