import asyncio

import pytest

from kilonova.common.rpc import (ExpectedError, InProcessTransport, NoSuchTarget, RemoteError, RPCClient,
                                 RPCTimeout)


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


async def test_call_returns_result_and_cast_delivers():
    transport = InProcessTransport()
    endpoint = Endpoint()
    await transport.serve("conductor", endpoint)
    client = RPCClient(transport, "conductor", timeout=2)
    assert await client.call("add", a=2, b=3) == 5
    await client.cast("record", value={"x": 1})
    for _ in range(50):
        if endpoint.casts:
            break
        await asyncio.sleep(0.01)
    assert endpoint.casts == [{"x": 1}]
    await transport.close()


async def test_remote_errors_carry_type_message_and_data():
    transport = InProcessTransport()
    await transport.serve("scheduler", Endpoint())
    client = RPCClient(transport, "scheduler", timeout=2)
    with pytest.raises(RemoteError) as info:
        await client.call("fail")
    assert info.value.exc_type == "ExpectedError"
    assert info.value.data == {"reason": "filters"}
    with pytest.raises(RemoteError):
        await client.call("not_async")
    with pytest.raises(RemoteError):
        await client.call("_private")
    await transport.close()


async def test_timeouts_and_unknown_targets():
    transport = InProcessTransport()
    await transport.serve("compute.host1", Endpoint())
    with pytest.raises(RPCTimeout):
        await RPCClient(transport, "compute.host1", timeout=0.05).call("slow")
    with pytest.raises(NoSuchTarget):
        await RPCClient(transport, "compute.host2").cast("record", value=1)
    await transport.close()


async def test_payloads_must_be_json_serialisable():
    transport = InProcessTransport()
    await transport.serve("conductor", Endpoint())
    with pytest.raises(TypeError):
        await RPCClient(transport, "conductor").call("record", value=object())
    await transport.close()
