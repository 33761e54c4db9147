"""The RPC layer's contract, run over both transports: in-process and RabbitMQ (a throw-away vhost)."""
import asyncio

import pytest

from kilonova.common.rpc import (ExpectedError, InProcessTransport, NoSuchTarget, RemoteError, RPCClient,
                                 RPCTimeout, get_transport)


class Endpoint:
    def __init__(self):
        self.casts = []

    async def add(self, a, b):
        return a + b

    async def record(self, value):
        self.casts.append(value)

    async def fail(self):
        raise ExpectedError("no valid host", reason="filters")

    async def slow(self):
        await asyncio.sleep(5)

    def not_async(self):
        return 1


@pytest.fixture(scope="session")
def rabbit_url():
    from tests.distributed.infra import rabbit_vhost

    with rabbit_vhost("kn-rpc") as url:
        yield url


@pytest.fixture(params=["inproc", "rabbit"])
async def make_transport(request):
    """A factory of transports of one kind (in-process: always the same one); closed after the test."""
    made = []

    def make():
        if request.param == "inproc":
            if not made:
                made.append(InProcessTransport())
            return made[0]
        made.append(get_transport(request.getfixturevalue("rabbit_url")))
        return made[-1]

    yield make
    for transport in made:
        await transport.close()


async def _eventually(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_call_returns_result_and_cast_delivers(make_transport):
    server, caller = make_transport(), make_transport()
    endpoint = Endpoint()
    await server.serve("conductor", endpoint)
    client = RPCClient(caller, "conductor", timeout=5)
    assert await client.call("add", a=2, b=3) == 5
    await client.cast("record", value={"x": 1})
    await _eventually(lambda: endpoint.casts)
    assert endpoint.casts == [{"x": 1}]


async def test_remote_errors_carry_type_message_and_data(make_transport):
    server, caller = make_transport(), make_transport()
    await server.serve("scheduler", Endpoint())
    client = RPCClient(caller, "scheduler", timeout=5)
    with pytest.raises(RemoteError) as info:
        await client.call("fail")
    assert info.value.exc_type == "ExpectedError"
    assert info.value.data == {"reason": "filters"}
    with pytest.raises(RemoteError):
        await client.call("not_async")
    with pytest.raises(RemoteError):
        await client.call("_private")


async def test_timeouts_and_unknown_targets(make_transport):
    server, caller = make_transport(), make_transport()
    await server.serve("compute.host1", Endpoint())
    with pytest.raises(RPCTimeout):
        await RPCClient(caller, "compute.host1", timeout=0.2).call("slow")
    with pytest.raises(NoSuchTarget):
        await RPCClient(caller, "compute.host2").cast("record", value=1)


async def test_payloads_must_be_json_serialisable(make_transport):
    transport = make_transport()
    await transport.serve("conductor", Endpoint())
    with pytest.raises(TypeError):
        await RPCClient(transport, "conductor").call("record", value=object())


async def test_fanout_reaches_every_server_of_a_target(make_transport):
    endpoints = [Endpoint(), Endpoint()]
    servers = [make_transport(), make_transport()]
    distinct = servers[0] is not servers[1]
    for server, endpoint in zip(servers, endpoints if distinct else endpoints[:1]):
        await server.serve("scheduler", endpoint)
    await RPCClient(make_transport(), "scheduler").fanout_cast("record", value="refresh")
    expected = endpoints if distinct else endpoints[:1]
    await _eventually(lambda: all(e.casts for e in expected))
    assert [e.casts for e in expected] == [["refresh"]] * len(expected)
