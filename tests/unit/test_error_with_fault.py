"""An agent's ERROR comes with its fault in one write, also through a conductor pinned to an RPC version
older than the one that carries the fault with the update (it then writes the fault first).

The real conductor and compute agent over the in-process RPC transport, on real SQLite databases.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from kilonova.compute.db.cell_models import InstanceFault
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_recovery import (current, hosts, network, new_agent,  # noqa: F401 - fixtures
                                      server)
from tests.unit.test_scheduler import placement  # noqa: F401 - fixture


def fault_messages(stub, uuid) -> list[str]:  # noqa: F811
    return stub.cells.default.db.run_sync(lambda s: list(s.scalars(
        sa.select(InstanceFault.message).where(InstanceFault.instance_uuid == uuid))), write=False)


@pytest.mark.parametrize("conductor_pin", ["", "1.3"])
async def test_a_build_a_restart_interrupted_is_error_with_one_fault(stub, placement, new_agent,  # noqa: F811
                                                                     conductor_pin):
    stub.conf.set("upgrade_levels", "conductor", conductor_pin)
    first_life = new_agent()
    await first_life.init_host()
    await first_life.stop()
    spawning = await server(stub, placement, first_life.node_uuid, task_state="spawning")

    agent = new_agent()
    await agent.init_host()
    try:
        assert current(stub, spawning["uuid"])["vm_state"] == "error"
        assert fault_messages(stub, spawning["uuid"]) == ["Build was interrupted by a restart of the compute service."]
    finally:
        await agent.stop()
