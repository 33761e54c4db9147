"""Over RabbitMQ: a message carries the request ids of the work that sent it, and a server tells how many
messages wait in its queues (the kilonova_rpc_queue_depth gauge)."""
from __future__ import annotations

import asyncio

import pytest

from kilonova.common import metrics, request_ids
from kilonova.common.rpc import RPCClient, get_transport
from tests.distributed.infra import rabbit_vhost

GIVEN = "req-0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


class Probe:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def who(self) -> dict:
        ids = request_ids.current()
        return {} if ids is None else ids.to_rpc()

    async def hold(self) -> None:
        await self.release.wait()


@pytest.fixture
async def transports():
    with rabbit_vhost("kn-rpcctx") as url:
        made = []

        def make():
            made.append(get_transport(url))
            return made[-1]
        yield make
        for transport in made:
            await transport.close()


async def test_ids_travel_with_a_message_and_waiting_messages_are_counted(transports):
    server, sender = transports(), transports()
    probe = Probe()
    await server.serve("probe", probe, concurrency=1)
    client = RPCClient(sender, "probe", timeout=10)
    bound = request_ids.bind(request_ids.RequestIds("req-local", GIVEN, "user", "project"))
    try:
        assert await client.call("who") == {"request_id": "req-local", "global_request_id": GIVEN,
                                            "user_id": "user", "project_id": "project"}
    finally:
        request_ids.reset(bound)
    assert await client.call("who") == {}

    for _ in range(3):
        await client.cast("hold")   # the first holds the only worker; two wait in the queue
    for _ in range(50):
        if (await server.depths()).get("probe") == 2:
            break
        await asyncio.sleep(0.1)
    await metrics.queue_depths(server)()
    assert metrics.RPC_QUEUE_DEPTH.labels("probe")._value.get() == 2
    probe.release.set()
