"""What only the RabbitMQ transport has to show: durable queues, competing servers, versions, reconnection."""
import asyncio
import json

import aio_pika
import pytest

from kilonova.common.rpc import RemoteError, RPCClient, RPCTimeout, get_transport, redelivered
from kilonova.common.rpc_rabbit import amqp_url
from kilonova.compute import versions
from tests.distributed.infra import rabbitmqctl, vhost_of
from tests.unit.test_rpc import Endpoint, _eventually, rabbit_url  # noqa: F401 - fixture reused


@pytest.fixture
async def transports(rabbit_url):  # noqa: F811
    made = []

    def make():
        made.append(get_transport(rabbit_url))
        return made[-1]

    yield make
    for transport in made:
        await transport.close()


def test_transport_urls():
    assert amqp_url("rabbit://u:p@h:5672/vh") == "amqp://u:p@h:5672/vh"
    assert amqp_url("rabbit://u:p@h1:5672,u:p@h2:5672/") == "amqp://u:p@h1:5672/"


async def test_a_cast_waits_in_its_durable_queue_for_a_server(transports):
    first, caller = transports(), transports()
    await first.serve("conductor", Endpoint())
    await first.stop_serving("conductor")          # the queue stays, nobody consumes it
    await RPCClient(caller, "conductor").cast("record", value="while-away")
    endpoint = Endpoint()
    await transports().serve("conductor", endpoint)  # a conductor (re)starts
    await _eventually(lambda: endpoint.casts)
    assert endpoint.casts == ["while-away"]


async def test_servers_of_one_target_share_the_work(transports):
    endpoints = [Endpoint(), Endpoint()]
    for endpoint in endpoints:
        await transports().serve("scheduler", endpoint)
    client = RPCClient(transports(), "scheduler", timeout=5)
    for i in range(20):
        await client.cast("record", value=i)
    await _eventually(lambda: sum(len(e.casts) for e in endpoints) == 20)
    assert sorted(endpoints[0].casts + endpoints[1].casts) == list(range(20))
    assert all(e.casts for e in endpoints), "both servers should have taken some of the casts"


async def test_a_server_refuses_versions_it_does_not_speak_and_a_capped_caller_backports(transports, rabbit_url):  # noqa: F811
    server = transports()
    await server.serve("compute.old", Endpoint(), version="1.0")
    connection = await aio_pika.connect(amqp_url(rabbit_url))
    try:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        answers: dict = {}

        async def collect(message):
            answers[message.correlation_id] = json.loads(message.body)

        await replies.consume(collect, no_ack=True)
        sent = {"1.0": {"v": "1.0", "version": "1.0"}, "1.1": {"v": "1.0", "version": "1.1"},
                "2.0": {"v": "1.0", "version": "2.0"}, "envelope 2.0": {"v": "2.0", "version": "1.0"},
                "unversioned": {"v": "1.0"}}
        for name, stamps in sent.items():
            body = json.dumps({**stamps, "method": "add", "args": {"a": 1, "b": 2}, "trace": "x"}).encode()
            await channel.default_exchange.publish(
                aio_pika.Message(body, reply_to=replies.name, correlation_id=name), routing_key="kilonova.compute.old")
        await _eventually(lambda: len(answers) == len(sent))

        # What a conductor capped at compute RPC 1.0 puts on the wire: a 1.0 build without the deadline.
        spy = await channel.declare_queue("kilonova.compute.spy", durable=True)
        capped = RPCClient(transports(), "compute.spy", interface=versions.COMPUTE, version_cap="1.0")
        await capped.cast("build_and_run_instance", instance={"uuid": "u1"}, request_spec={}, alternates=[],
                          attempt=1, deadline=1.0)
        message = await spy.get(timeout=5)
        await message.ack()
    finally:
        await connection.close()
    assert answers["1.0"] == answers["unversioned"] == {"v": "1.0", "result": 3}  # extra envelope fields ignored
    assert answers["1.1"]["error"]["type"] == "UnsupportedVersion"
    assert "speaks RPC version 1.0: add at version 1.1 is newer" in answers["1.1"]["error"]["message"]
    assert answers["2.0"]["error"]["type"] == "UnsupportedVersion"
    assert "another major version" in answers["2.0"]["error"]["message"]
    assert answers["envelope 2.0"]["error"]["type"] == "IncompatibleVersion"
    envelope = json.loads(message.body)
    assert (envelope["version"], envelope["method"]) == ("1.0", "build_and_run_instance")
    assert sorted(envelope["args"]) == ["alternates", "attempt", "instance", "request_spec"]


def connections(url: str, vhost: str) -> set[str]:
    """The broker's ids (Erlang pids) of the connections open to ``vhost``."""
    rows = (line.split() for line in rabbitmqctl(url, "list_connections", "-q", "vhost", "pid").splitlines())
    return {row[1] for row in rows if row[:1] == [vhost]}  # (-q still prints a header)


def consumers(url: str, vhost: str) -> dict[str, int]:
    """How many consumers each queue of ``vhost`` has."""
    rows = (line.split() for line in rabbitmqctl(url, "list_queues", "-q", "-p", vhost, "name", "consumers")
            .splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


async def _eventually_async(predicate, timeout: float) -> None:
    """``_eventually`` for a predicate that blocks (runs in a thread: the event loop must go on reconnecting)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(predicate):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_calls_work_again_after_the_broker_drops_every_connection(transports, rabbit_url):  # noqa: F811
    server, caller = transports(), transports()
    await server.serve("conductor", Endpoint())
    client = RPCClient(caller, "conductor", timeout=20)
    assert await client.call("add", a=1, b=1) == 2
    vhost = vhost_of(rabbit_url)  # only this test's connections: other tests use the machine's broker meanwhile
    dropped = connections(rabbit_url, vhost)
    assert dropped
    rabbitmqctl(rabbit_url, "close_all_connections", "-p", vhost, "test: broker restart")
    # Once both sides have their queues and consumers back (a call made before that can lose its reply: the
    # publishing channel comes back before the reply queue does), calls work again.
    back = (f"{server.prefix}conductor", caller.reply_queue_name)
    await _eventually_async(lambda: all(consumers(rabbit_url, vhost).get(name) for name in back), timeout=60)
    assert await client.call("add", a=2, b=2) == 4
    now = connections(rabbit_url, vhost)
    assert now and not now & dropped, "the calls went over new connections"
    with pytest.raises(RemoteError):
        await client.call("fail")


class Interrupted:
    def __init__(self):
        self.started = asyncio.Event()
        self.seen = []

    async def build(self, n):
        self.seen.append((n, redelivered()))
        self.started.set()
        await asyncio.sleep(30)


async def test_a_cast_whose_server_dies_is_redelivered_and_says_so(transports):
    first, second = Interrupted(), Interrupted()
    dying = transports()
    await dying.serve("conductor", first)
    await RPCClient(transports(), "conductor").cast("build", n=1)
    await asyncio.wait_for(first.started.wait(), 5)
    await dying.close()                       # dies before acknowledging the cast
    await transports().serve("conductor", second)
    await asyncio.wait_for(second.started.wait(), 5)
    assert first.seen == [(1, False)] and second.seen == [(1, True)]


class Flaky:
    """A cast that fails ``failures`` times the way a lost dependency does, then succeeds."""

    def __init__(self, failures, error):
        self.failures = failures
        self.error = error
        self.attempts = 0
        self.done = []

    async def work(self, n):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        self.done.append(n)


async def test_a_cast_that_lost_a_dependency_runs_again_until_it_succeeds(transports):
    # e.g. a compute's terminate_instance whose call to a restarting conductor timed out
    flaky = Flaky(2, RPCTimeout("no reply from conductor.instance_get within 10s"))
    await transports().serve("compute.h1", flaky)
    await RPCClient(transports(), "compute.h1").cast("work", n=7)
    await _eventually(lambda: flaky.done, timeout=15)
    assert flaky.done == [7] and flaky.attempts == 3
    remote_db = Flaky(1, RemoteError("OperationalError", "server closed the connection unexpectedly"))
    await transports().serve("compute.h2", remote_db)
    await RPCClient(transports(), "compute.h2").cast("work", n=8)
    await _eventually(lambda: remote_db.done, timeout=15)
    assert remote_db.attempts == 2


async def test_a_cast_refused_for_a_reason_is_not_run_again(transports):
    refused = Flaky(1, RemoteError("NotFound", "Instance x could not be found."))
    await transports().serve("compute.h3", refused)
    await RPCClient(transports(), "compute.h3").cast("work", n=9)
    await _eventually(lambda: refused.attempts, timeout=5)
    await asyncio.sleep(2)
    assert refused.attempts == 1 and refused.done == []
