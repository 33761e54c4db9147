"""What only the RabbitMQ transport has to show: durable queues, competing servers, versions, reconnection."""
import asyncio
import json
import time

import aio_pika
import pytest
from yarl import URL

from kilonova.common.rpc import RemoteError, RPCClient, RPCTimeout, get_transport, redelivered
from kilonova.common.rpc_rabbit import amqp_url
from kilonova.compute import versions
from tests.distributed.forwarder import Forwarder
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


def _reconnected(url: str, vhost: str, dropped: set[str], count: int, timeout: float) -> None:
    """Wait until the broker has ``count`` connections to ``vhost`` again, none of them one of ``dropped``."""
    deadline = time.monotonic() + timeout
    while not ((now := connections(url, vhost)).isdisjoint(dropped) and len(now) >= count):
        assert time.monotonic() < deadline, "the transports did not reconnect in time"
        time.sleep(0.1)


async def _calls_while_reconnecting(client, url: str, vhost: str, dropped: set[str], count: int) -> list:
    """A call every 2 ms (some land between the return of the publishing channel and of the reply queue) from
    now until the broker sees the new connections, and for a second more (the transports are still restoring
    their queues and consumers then); every call's outcome, in order."""
    loop = asyncio.get_running_loop()
    back = asyncio.ensure_future(asyncio.to_thread(_reconnected, url, vhost, dropped, count, 90))
    calls, ends = [], None
    while ends is None or loop.time() < ends:
        calls.append(asyncio.create_task(client.call("add", a=len(calls), b=1)))
        await asyncio.sleep(0.002)
        if ends is None and back.done():
            await back
            ends = loop.time() + 1.0
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_calls_made_while_the_broker_drops_every_connection_all_get_their_replies(transports, rabbit_url):  # noqa: F811
    server, caller = transports(), transports()
    await server.serve("conductor", Endpoint())
    client = RPCClient(caller, "conductor", timeout=30)
    assert await client.call("add", a=1, b=1) == 2
    vhost = vhost_of(rabbit_url)  # only this test's connections: other tests use the machine's broker meanwhile
    for _ in range(2):  # each drop loses a reply only sometimes
        dropped = connections(rabbit_url, vhost)
        assert len(dropped) == 2
        rabbitmqctl(rabbit_url, "close_all_connections", "-p", vhost, "test: broker restart")
        # Calls made from the drop on wait for the whole transport (its reply queue and consumer included) to
        # be back: none publishes into the gap and loses its reply.
        results = await _calls_while_reconnecting(client, rabbit_url, vhost, dropped, count=2)
        assert results == [n + 1 for n in range(len(results))]
    with pytest.raises(RemoteError):
        await client.call("fail")


async def test_calls_made_while_only_the_caller_reconnects_all_get_their_replies(transports, rabbit_url):  # noqa: F811
    # The server stays connected and answers at once: a call published before the caller has declared its
    # reply queue again would have its reply dropped by the broker.
    server, caller = transports(), transports()
    await server.serve("conductor", Endpoint())
    vhost = vhost_of(rabbit_url)
    servers = connections(rabbit_url, vhost)
    client = RPCClient(caller, "conductor", timeout=30)
    assert await client.call("add", a=1, b=1) == 2
    for _ in range(2):
        callers = connections(rabbit_url, vhost) - servers
        assert len(callers) == 1
        rabbitmqctl(rabbit_url, "close_connection", *callers, "test: caller dropped")
        results = await _calls_while_reconnecting(client, rabbit_url, vhost, callers, count=2)
        assert results == [n + 1 for n in range(len(results))]
    assert servers <= connections(rabbit_url, vhost), "the server kept its connection"


class LosesItsFirstReply:
    """Answers a call, and the network then loses everything the server sends until the connection is cut a
    second later: the reply goes out just before the connection drops."""

    def __init__(self, link: Forwarder):
        self.link = link
        self.calls = 0

    async def add(self, a, b):
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.3)  # the call's acknowledgement reaches the broker first: it is not redelivered
            self.link.blackhole()
            asyncio.get_running_loop().call_later(1.0, self.link.cut)
        return a + b


async def test_a_reply_sent_just_before_the_connection_drops_is_published_again(transports, rabbit_url):  # noqa: F811
    broker = URL(amqp_url(rabbit_url))
    with Forwarder((broker.host, broker.port)) as link:
        server = get_transport(rabbit_url.replace(f":{broker.port}/", f":{link.port}/"))
        try:
            endpoint = LosesItsFirstReply(link)
            await server.serve("conductor", endpoint)
            client = RPCClient(transports(), "conductor", timeout=20)
            started = time.monotonic()
            # Unconfirmed, the reply is published again once the server's connection is back.
            assert await client.call("add", a=2, b=3) == 5
            assert time.monotonic() - started < 15
            assert await client.call("add", a=1, b=1) == 2 and endpoint.calls == 2
        finally:
            await server.close()


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


async def test_a_call_while_the_broker_stays_away_fails_at_its_timeout_saying_so(transports, rabbit_url):  # noqa: F811
    server, caller = transports(), transports()
    await server.serve("conductor", Endpoint())
    client = RPCClient(caller, "conductor", timeout=3)
    assert await client.call("add", a=1, b=1) == 2
    vhost = vhost_of(rabbit_url)
    rabbitmqctl(rabbit_url, "clear_permissions", "-p", vhost, "guest")  # reconnecting is refused meanwhile
    try:
        rabbitmqctl(rabbit_url, "close_all_connections", "-p", vhost, "test: broker away")
        with pytest.raises(RPCTimeout, match="no reply from conductor.add within 3s: RabbitMQ at .* is unreachable"):
            await client.call("add", a=2, b=2)
    finally:
        rabbitmqctl(rabbit_url, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    assert await RPCClient(caller, "conductor", timeout=60).call("add", a=3, b=3) == 6
