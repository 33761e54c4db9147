"""Per-cell transports on the real RabbitMQ: the conductor serves each cell's vhost, hosts are reached on theirs.

The top-level transport and cell2's are two throw-away vhosts; cell3's broker does not exist
(a closed port): the conductor still starts and serves the others.
"""
from __future__ import annotations

import pytest

from kilonova.common.db import Database, migrate
from kilonova.common.rpc import RPCClient, TransportPool, get_transport
from kilonova.common.testing import service_env
from kilonova.compute import cells as cells_mod
from kilonova.compute.api.service import API_MIGRATIONS
from kilonova.compute.cell_rpc import CellRouter
from kilonova.compute.conductor.service import ConductorService
from kilonova.compute.db import mappings
from kilonova.compute.db.api_models import APIBase
from kilonova.compute.db.cell_models import CellBase
from tests.distributed.infra import rabbit_vhost

CELL2 = "2b7c0a4e-1c1d-4d55-9b0e-6a2f3c4d5e02"
CELL3 = "3c8d1b5f-2d2e-4e66-8c1f-7b3a4d5e6f03"


class Pong:
    def __init__(self, name: str):
        self.name = name

    async def ping(self) -> str:
        return self.name


@pytest.fixture
def vhosts():
    with rabbit_vhost("kn-unit-top") as top, rabbit_vhost("kn-unit-cell2") as cell2:
        yield top, cell2


async def test_conductor_serves_every_reachable_cell_and_hosts_are_reached_on_their_cell(tmp_path, vhosts):
    top, cell2_url = vhosts
    env = service_env(tmp_path, {"DEFAULT": {"transport_url": top, "report_interval": "60"}})
    env.transport = get_transport(top)
    api_db = Database.shared(env.conf.get("api_database", "connection"), name="nova_api")
    migrate(api_db, API_MIGRATIONS, APIBase.metadata)
    cells_mod.setup_cells(env.conf, api_db)
    for uuid, name, url in ((CELL2, "cell2", cell2_url), (CELL3, "cell3", "rabbit://guest:guest@127.0.0.1:1/none")):
        connection = f"sqlite:///{tmp_path}/{name}.db"
        migrate(Database.shared(connection, name=name), cells_mod.CELL_MIGRATIONS, CellBase.metadata)
        api_db.run_sync(mappings.ensure_cell, uuid, name, url, connection)
    api_db.run_sync(mappings.map_host, "host-in-cell2", CELL2)

    conductor = ConductorService(env)
    cell2 = get_transport(cell2_url)
    try:
        await conductor.start()  # cell3's broker is away: logged, retried later, not fatal
        stats = await RPCClient(cell2, "conductor", timeout=10).call("get_stats")
        assert "select_destinations" in stats

        # A host of cell2 listens on cell2's vhost only; the router finds it there.
        await cell2.serve("compute.host-in-cell2", Pong("cell2's host"))
        router = CellRouter(conductor.cells, TransportPool(env.transport, top), timeout=10)
        assert await router.client("host-in-cell2").call("ping") == "cell2's host"
        with pytest.raises(Exception, match="no server listens"):
            await RPCClient(env.transport, "compute.host-in-cell2", timeout=5).call("ping")
        await router.pool.close()
    finally:
        await conductor.stop()
        await cell2.close()
        await env.transport.close()
        for cell in conductor.cells.all():
            cell.db.close()
        api_db.close()
