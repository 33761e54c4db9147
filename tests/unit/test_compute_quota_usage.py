"""Quota usage at server create: instances/cores/ram summed in SQL per cell plus pending build requests."""
import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from kilonova.common.context import RequestContext
from kilonova.common.db import Database, migrate
from kilonova.common.http import HTTPError
from kilonova.compute.api.create import allowed_count
from kilonova.compute.cells import CELL_MIGRATIONS
from kilonova.compute.db import build_requests, instances, quotas
from kilonova.compute.db.cell_models import CellBase
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture

SMALL = {"vcpus": 1, "memory_mb": 512}
LARGE = {"vcpus": 4, "memory_mb": 4096}


def _instance(project: str, flavor: dict) -> dict:
    return {"uuid": str(uuid.uuid4()), "project_id": project, "user_id": "u", "vm_state": "active",
            "flavor": flavor, "created_at": "2026-11-23T10:00:00"}


def test_usage_sums_live_instances_of_the_project(stub):
    db = stub.cells.default.db
    for flavor in (SMALL, LARGE, LARGE):
        db.run_sync(instances.create, _instance("p1", flavor))
    gone = db.run_sync(instances.create, _instance("p1", LARGE))
    db.run_sync(instances.soft_delete, gone["uuid"])
    db.run_sync(instances.create, _instance("p2", LARGE))
    assert db.run_sync(quotas.count_usage, "p1") == {"instances": 3, "cores": 9, "ram": 8704}
    assert db.run_sync(quotas.count_usage, "nobody") == {"instances": 0, "cores": 0, "ram": 0}
    # Instance dicts keep their shape: the size columns only serve the sums.
    assert "vcpus" not in db.run_sync(instances.get, gone["uuid"], True)


async def test_create_stops_at_the_cores_limit_counting_cells_and_build_requests(stub):
    stub.api_db.run_sync(quotas.set_limits, "p1", {"cores": 10})
    stub.cells.default.db.run_sync(instances.create, _instance("p1", LARGE))
    pending = _instance("p1", LARGE)
    stub.api_db.run_sync(build_requests.create, pending, {})
    ctx = RequestContext(user_id="u", project_id="p1", roles=["member"])
    # 8 of 10 cores used (4 in the cell, 4 waiting in a build request): two 1-vCPU servers fit, not three.
    assert await allowed_count(stub, ctx, {**SMALL, "vcpus": 1}, 1, 5) == 2
    with pytest.raises(HTTPError) as refused:
        await allowed_count(stub, ctx, LARGE, 1, 1)
    assert refused.value.status == 403
    assert "Quota exceeded for cores: Requested 4, but already used 8 of 10 cores" in str(refused.value)


def test_migration_copies_sizes_of_existing_instances(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/cell.sqlite", name="cell-test")
    try:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(CELL_MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", db.url)
        with db.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0001")
            connection.execute(sa.text(
                "INSERT INTO instances (uuid, project_id, user_id, vm_state, flavor, power_state, locked, metadata, "
                "system_metadata, network_info, security_groups, tags, created_at, deleted) VALUES ('u1', 'p1', "
                "'u', 'active', '{\"vcpus\": 2, \"memory_mb\": 2048}', 0, 0, '{}', '{}', '[]', '[]', '[]', "
                "'2026-11-23 10:00:00', 0)"))
        migrate(db, CELL_MIGRATIONS, CellBase.metadata)
        assert db.run_sync(quotas.count_usage, "p1") == {"instances": 1, "cores": 2, "ram": 2048}
    finally:
        db.close()
