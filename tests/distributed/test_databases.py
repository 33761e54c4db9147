"""Every store migrates on PostgreSQL and MariaDB (throw-away databases) and ends up matching its models."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from kilonova.common.db import Database, migrate
from tests.distributed.infra import Databases

# store -> (migrations directory, "module:Base")
STORES = {
    "nova_api": ("kilonova/compute/db/api_migrations", "kilonova.compute.db.api_models:APIBase"),
    "cell": ("kilonova/compute/db/cell_migrations", "kilonova.compute.db.cell_models:CellBase"),
    "placement": ("kilonova/placement/migrations", "kilonova.placement.objects.models:PlacementBase"),
    "identity": ("kilonova/identity/migrations", "kilonova.identity.models:IdentityBase"),
    "image": ("kilonova/image/migrations", "kilonova.image.models:ImageBase"),
    "network": ("kilonova/network/migrations", "kilonova.network.models:NetworkBase"),
}
ROOT = Path(__file__).resolve().parents[2]


def _metadata(spec: str) -> sa.MetaData:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name).metadata


def schema_differences(database: Database, metadata: sa.MetaData) -> list:
    """What Alembic's autogenerate would still change: nothing, when migrations and models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    # Server defaults and comments are not part of the models' contract.
    return [d for d in diffs if not (isinstance(d, list) and d and d[0][0] in ("modify_default", "modify_comment"))]


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def server(request):
    databases = Databases(request.param)
    yield databases
    databases.drop_all()


@pytest.mark.parametrize("store", sorted(STORES))
def test_migrations_run_and_match_the_models(server, store):
    migrations, base = STORES[store]
    database = Database(server.url(store), name=store, workers=1)
    try:
        metadata = _metadata(base)
        migrate(database, ROOT / migrations, metadata)
        migrate(database, ROOT / migrations, metadata)  # idempotent: a second sync changes nothing
        assert schema_differences(database, metadata) == []
    finally:
        database.close()
