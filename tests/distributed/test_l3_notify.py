"""Router changes reach every L3 agent over RabbitMQ: the network service fans ``routers_updated`` out on target
``l3_agent`` after the commit, and two agents on connections of their own (as on two network nodes) each get it."""
from __future__ import annotations

import asyncio

import httpx

from kilonova.common.rpc import get_transport
from kilonova.common.testing import FakeValidator, service_env
from kilonova.network import bootstrap
from kilonova.network.service import NetworkService
from tests.distributed.infra import rabbit_vhost

ALICE = {"X-Auth-Token": "alice"}


class _Agent:
    def __init__(self):
        self.updated: list[str] = []
        self.arrived = asyncio.Event()

    async def routers_updated(self, router_ids):
        self.updated.extend(router_ids)
        self.arrived.set()


async def test_router_changes_fan_out_to_every_l3_agent(tmp_path):
    with rabbit_vhost() as url:
        env = service_env(tmp_path)
        env.transport = get_transport(url)
        service = NetworkService(env, validator=FakeValidator({"alice": ("alice", "p-alice", ["member", "reader"])}))
        agents = [_Agent(), _Agent()]
        transports = [get_transport(url) for _ in agents]
        try:
            for transport, agent in zip(transports, agents):
                await transport.serve("l3_agent", agent)
            service.prepare()
            await service.db.write(bootstrap.ensure_public_network, "p-admin")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://n") as api:
                created = await api.post("/v2.0/routers", headers=ALICE, json={"router": {
                    "name": "r", "external_gateway_info": {"network_id": bootstrap.PUBLIC_NETWORK_ID}}})
                assert created.status_code == 201, created.text
                router_id = created.json()["router"]["id"]
                for agent in agents:
                    await asyncio.wait_for(agent.arrived.wait(), 10)
                    assert agent.updated == [router_id]
                    agent.arrived.clear()
                assert (await api.delete(f"/v2.0/routers/{router_id}", headers=ALICE)).status_code == 204
                for agent in agents:
                    await asyncio.wait_for(agent.arrived.wait(), 10)
                    assert agent.updated == [router_id, router_id]
        finally:
            await service.stop()
            for transport in [*transports, env.transport]:
                await transport.close()
            service.db.close()
