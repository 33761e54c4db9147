"""The RabbitMQ transport: the ``Transport`` interface of ``kilonova.common.rpc`` over AMQP 0-9-1.

Selected by ``[DEFAULT] transport_url = rabbit://user:pass@host:port/vhost``.

Topology (every name starts with ``kilonova.``, so several deployments can
share a vhost only if they do not share that prefix):

* one queue per target — ``kilonova.conductor``, ``kilonova.scheduler``,
  ``kilonova.compute.<host>`` — on the default exchange. Queues and cast
  messages are durable/persistent: a cast to a conductor that is restarting
  waits in its queue instead of being lost. Several servers on one target
  (two conductors) are competing consumers: each message goes to one of them.
* one fan-out exchange per target, ``kilonova.<target>.fanout``; every server
  of the target binds its own exclusive queue to it, so ``fanout_cast``
  reaches all of them (e.g. every scheduler).
* one exclusive reply queue per transport, ``kilonova.reply.<uuid>``. A call
  carries ``reply_to`` and a ``correlation_id``; the caller waits for the
  reply with a timeout, and the request itself expires in the queue after
  that timeout, so a server that comes back late does not run stale calls.

Delivery: a call is acknowledged as soon as it is received (the caller's
timeout decides its fate); a cast is acknowledged only after its handler has
returned, so a server killed mid-way leaves the message to be delivered again
to another (or the restarted) server — casts are at-least-once and their
handlers must be idempotent. A cast whose handler fails because something it
needed was briefly unreachable (an RPC timeout, a dropped database connection)
is queued again with back-off, for up to CAST_RETRY_WINDOW after its first
failure; other failures are logged and dropped.

Envelopes are JSON: ``{"v": "1.0", "version": "1.1", "method": ..., "args": {...}}``.
``v`` is the envelope's own format (a server accepts every 1.x and ignores
fields it does not know; another major is refused with an error reply);
``version`` is the version of the target's interface the message is written
for, checked against the version the server serves the target at
(``kilonova.common.rpc.check_version``): a newer sender writes for an older
server by capping and backporting (``kilonova.common.rpc_versions``).

Replies are published as calls and casts are, with publisher confirms and ``mandatory``: one the broker
did not confirm (the connection dropped as it was sent) or returned (the caller's reply queue was being
declared again) is published again until the caller's timeout; the caller drops a duplicate.

Connections are aio-pika's robust connections: after the broker restarts (or
drops the connection) they reconnect with back-off and re-declare queues,
bindings and consumers, one channel after the other. Until every channel is
back, nothing is published: the publishing channel can be back before the reply
queue is, and a call published then would have its reply dropped by the broker
(no such queue). A publish (or a reply) attempted meanwhile waits for the whole
transport, up to its deadline; a call that waited its whole timeout fails with
an RPCTimeout that says the broker is unreachable.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import aio_pika
from aio_pika import exceptions as amqp_errors
from yarl import URL

from kilonova.common import request_ids
from kilonova.common.rpc import (NoSuchTarget, RemoteError, RPCError, RPCTimeout, _redelivered, check_version,
                                 dispatch, dumps, error_payload, loads)

LOG = logging.getLogger(__name__)

ENVELOPE_VERSION = "1.0"
PREFIX = "kilonova."
# Waits between reconnection attempts grow from the first to the last value.
BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)
# How long a cast waits for the broker to come back before it fails.
CAST_DEADLINE = 60.0

# A cast whose handler failed only because something it needed was briefly unreachable (an RPC
# call timed out, a database connection dropped) is run again, with back-off, for this long after
# its first failure; then it fails for good (and the periodic reconcilers take over).
CAST_RETRY_WINDOW = 120.0
FIRST_FAILURE = "x-kilonova-first-failure"
RETRIES = "x-kilonova-retries"
# Exception type names that mean "try again later", also when raised by the remote end (SQLAlchemy's
# are matched by name: this module does not depend on the database layer).
TRANSIENT = frozenset({"RPCTimeout", "RPCError", "NoSuchTarget", "OperationalError", "InterfaceError"})

_RETRYABLE = (amqp_errors.AMQPConnectionError, amqp_errors.ChannelInvalidStateError,
              amqp_errors.ChannelClosed, ConnectionError, asyncio.TimeoutError, RuntimeError)


def amqp_url(transport_url: str) -> str:
    """``rabbit://`` (oslo.messaging's scheme) -> ``amqp://``; of several hosts, the first one."""
    scheme, sep, rest = transport_url.partition("://")
    if not sep or scheme not in ("rabbit", "amqp"):
        raise RPCError(f"not a RabbitMQ transport_url: {transport_url!r}")
    authority, slash, tail = rest.partition("/")
    return f"amqp://{authority.split(',')[0]}/{tail if slash else ''}"


def transient(exc: BaseException) -> bool:
    """Whether a failed cast is worth running again: a lost call or connection, not a refusal."""
    if isinstance(exc, RemoteError):
        return exc.exc_type in TRANSIENT
    return isinstance(exc, RPCError) or type(exc).__name__ in TRANSIENT


def encode(method: str, kwargs: dict, version: str | None = None) -> bytes:
    """A message's envelope; ``ctx``: the request ids, user and project of the work that sends it."""
    envelope = {"v": ENVELOPE_VERSION, "method": method, "args": kwargs}
    if version is not None:
        envelope["version"] = version
    context = request_ids.rpc_context()
    if context is not None:
        envelope["ctx"] = context
    return dumps(envelope)


def decode(body: bytes) -> tuple[str, dict, str | None]:
    """(method, arguments, interface version) of a message; the ids it carried are bound to the handler's
    context (``kilonova.common.request_ids``)."""
    envelope = loads(body)
    major = str(envelope.get("v", "1.0")).split(".")[0]
    if major != ENVELOPE_VERSION.split(".")[0]:
        raise RemoteError("IncompatibleVersion",
                          f"message envelope version {envelope.get('v')} is not supported "
                          f"(this server speaks {ENVELOPE_VERSION})")
    request_ids.bind(request_ids.from_rpc(envelope.get("ctx")))
    return envelope["method"], envelope.get("args") or {}, envelope.get("version")


class RabbitTransport:
    def __init__(self, transport_url: str, *, prefix: str = PREFIX):
        self.url = amqp_url(transport_url)
        self.prefix = prefix
        self.reply_queue_name = f"{prefix}reply.{uuid.uuid4().hex}"
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publish_channel: aio_pika.abc.AbstractChannel | None = None
        self._serve_channel: aio_pika.abc.AbstractChannel | None = None
        self._connect_lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future] = {}
        self._reply_ready = False
        # Set while the connection and every channel, queue and consumer of it are up (cleared when the
        # connection drops, set again once aio-pika has restored them all).
        self._restored = asyncio.Event()
        self._consumers: dict[str, list[tuple[aio_pika.abc.AbstractQueue, str]]] = {}
        self._tasks: dict[str, set[asyncio.Task]] = {}
        self._speaks: dict[str, str | None] = {}  # target -> the interface version it is served at
        self._fanout_declared: set[str] = set()
        self._closing = False

    # ------------------------------------------------------------------ connection

    async def _connect(self) -> None:
        if self._connection is not None:
            return
        async with self._connect_lock:
            if self._connection is not None:
                return
            attempt = 0
            while True:
                try:
                    connection = await aio_pika.connect_robust(
                        self.url, reconnect_interval=1.0, client_properties={"connection_name": "kilonova"})
                    break
                except (amqp_errors.AMQPConnectionError, ConnectionError, OSError) as exc:
                    wait = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                    attempt += 1
                    if attempt > 8:
                        raise RPCError(f"cannot connect to RabbitMQ at {URL(self.url).with_password(None)}: "
                                       f"{exc}") from exc
                    LOG.warning("RabbitMQ not reachable (%s); retrying in %.1fs", exc, wait)
                    await asyncio.sleep(wait)
            self._publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._serve_channel = await connection.channel(publisher_confirms=False)
            connection.close_callbacks.add(lambda *_: self._restored.clear())
            connection.reconnect_callbacks.add(lambda *_: self._restored.set())
            self._restored.set()
            self._connection = connection

    def broker_problem(self) -> str | None:
        """Why the broker is not usable now (None: connected; also before the first connection, made on use)."""
        if self._connection is not None and not self._restored.is_set():
            return self._unreachable()
        return None

    async def _wait_restored(self, deadline: float) -> None:
        """Wait for the whole transport to be back after the broker dropped it; RPCTimeout at ``deadline``."""
        if self._restored.is_set():
            return
        try:
            await asyncio.wait_for(self._restored.wait(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RPCTimeout(self._unreachable()) from None

    def _unreachable(self) -> str:
        return f"RabbitMQ at {URL(self.url).with_password(None)} is unreachable (the connection is being restored)"

    async def _ensure_reply_queue(self) -> None:
        if self._reply_ready:
            return
        await self._connect()
        async with self._connect_lock:
            if self._reply_ready:
                return
            assert self._serve_channel is not None
            queue = await self._serve_channel.declare_queue(self.reply_queue_name, exclusive=True,
                                                            auto_delete=True)
            await queue.consume(self._on_reply, no_ack=True)
            self._reply_ready = True

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is None or future.done():
            return  # the caller gave up already
        try:
            reply = loads(message.body)
        except ValueError:
            future.set_exception(RPCError("unreadable reply"))
            return
        if "error" in reply:
            error = reply["error"]
            future.set_exception(RemoteError(error.get("type", "Exception"), error.get("message", ""),
                                             error.get("data")))
        else:
            future.set_result(reply.get("result"))

    async def _publish(self, message: aio_pika.Message, routing_key: str, *, exchange: str = "",
                       deadline: float) -> None:
        """Publish with retries while the broker is away; NoSuchTarget when nobody has the queue."""
        await self._connect()
        attempt = 0
        while True:
            await self._wait_restored(deadline)
            try:
                assert self._publish_channel is not None
                target = (self._publish_channel.default_exchange if not exchange
                          else await self._publish_channel.get_exchange(exchange, ensure=False))
                await target.publish(message, routing_key=routing_key, mandatory=not exchange, timeout=30)
                return
            except amqp_errors.PublishError as exc:
                raise NoSuchTarget(f"no server listens on RPC target {routing_key[len(self.prefix):]}") from exc
            except amqp_errors.DeliveryError as exc:
                raise RPCError(f"the broker refused a message to {routing_key}: {exc}") from exc
            except _RETRYABLE as exc:
                if self._closing or time.monotonic() >= deadline:
                    raise RPCError(f"could not publish to {routing_key}: {exc!r}") from exc
                wait = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                attempt += 1
                LOG.warning("publishing to %s failed (%r); retrying in %.1fs", routing_key, exc, wait)
                await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------------ client side

    async def call(self, target: str, method: str, kwargs: dict, timeout: float, *,
                   version: str | None = None) -> Any:
        await self._ensure_reply_queue()
        correlation_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        body = encode(method, kwargs, version)
        deadline = time.monotonic() + timeout
        try:
            message = aio_pika.Message(body, content_type="application/json", correlation_id=correlation_id,
                                       reply_to=self.reply_queue_name, expiration=max(timeout, 0.001),
                                       delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT)
            await asyncio.wait_for(self._publish(message, self.prefix + target, deadline=deadline), timeout)
            remaining = max(0.0, deadline - time.monotonic())
            return await asyncio.wait_for(future, remaining)
        except asyncio.TimeoutError:
            why = "" if self._restored.is_set() else f": {self._unreachable()}"
            raise RPCTimeout(f"no reply from {target}.{method} within {timeout}s{why}") from None
        finally:
            self._pending.pop(correlation_id, None)

    async def cast(self, target: str, method: str, kwargs: dict, *, version: str | None = None) -> None:
        message = aio_pika.Message(encode(method, kwargs, version), content_type="application/json",
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self._publish(message, self.prefix + target, deadline=time.monotonic() + CAST_DEADLINE)

    async def fanout_cast(self, target: str, method: str, kwargs: dict, *, version: str | None = None) -> None:
        exchange = await self._declare_fanout(target)
        message = aio_pika.Message(encode(method, kwargs, version), content_type="application/json")
        await self._publish(message, "", exchange=exchange, deadline=time.monotonic() + CAST_DEADLINE)

    async def _declare_fanout(self, target: str) -> str:
        name = f"{self.prefix}{target}.fanout"
        if name not in self._fanout_declared:
            await self._connect()
            assert self._publish_channel is not None
            await self._publish_channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
            self._fanout_declared.add(name)
        return name

    # ------------------------------------------------------------------ server side

    async def serve(self, target: str, endpoint: object, *, concurrency: int = 64,
                    version: str | None = None) -> None:
        if target in self._consumers:
            raise RPCError(f"target {target} is already served in this process")
        self._speaks[target] = version
        await self._connect()
        assert self._serve_channel is not None
        channel = await self._connection.channel(publisher_confirms=False)  # type: ignore[union-attr]
        await channel.set_qos(prefetch_count=concurrency)
        queue = await channel.declare_queue(self.prefix + target, durable=True)
        exchange_name = await self._declare_fanout(target)
        fanout_queue = await channel.declare_queue(f"{self.prefix}{target}.fanout.{uuid.uuid4().hex[:12]}",
                                                   exclusive=True, auto_delete=True)
        await fanout_queue.bind(exchange_name)
        self._tasks[target] = set()
        handler = self._make_handler(target, endpoint)
        self._consumers[target] = [(queue, await queue.consume(handler)),
                                   (fanout_queue, await fanout_queue.consume(handler))]
        self._consumers[target].append((channel, ""))  # type: ignore[arg-type]

    async def depths(self) -> dict[str, int]:
        """Messages ready in the broker's queue of each target served here (its declaration again, which
        answers the count; aio-pika's robust channel would answer a passive one from its cache)."""
        found = {}
        for target, consumers in list(self._consumers.items()):
            result = await consumers[0][0].declare()
            found[target] = int(result.message_count or 0)
        return found

    def _make_handler(self, target: str, endpoint: object):
        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            task = asyncio.create_task(self._handle(target, endpoint, message), name=f"rpc-{target}")
            tasks = self._tasks.setdefault(target, set())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return on_message

    async def _handle(self, target: str, endpoint: object, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        is_call = bool(message.reply_to)
        if is_call:
            await message.ack()
        try:
            try:
                method, kwargs, version = decode(message.body)
                check_version(target, self._speaks.get(target), method, version)
                _redelivered.set(bool(message.redelivered) and not is_call)
                result = await dispatch(endpoint, method, kwargs, target)
                reply = {"v": ENVELOPE_VERSION, "result": result}
                dumps(reply)
            except asyncio.CancelledError:
                if not is_call:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
                raise
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                if not is_call:
                    if transient(exc) and await self._retry_later(target, message, exc):
                        return
                    LOG.exception("cast %s failed", target)
                reply = {"v": ENVELOPE_VERSION, "error": error_payload(exc)}
            if is_call:
                await self._reply(message, reply)
            else:
                await message.ack()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken channel must not kill the consumer
            LOG.exception("handling a message for %s failed", target)

    async def _retry_later(self, target: str, message: aio_pika.abc.AbstractIncomingMessage,
                           exc: Exception) -> bool:
        """Queue a copy of a failed cast after a back-off and acknowledge this delivery.

        False when the cast has been failing for longer than CAST_RETRY_WINDOW (or is a fan-out,
        which is not retried): the caller then gives up on it.
        """
        headers = dict(message.headers or {})
        now = time.time()
        first = float(headers.get(FIRST_FAILURE) or now)
        retries = int(headers.get(RETRIES) or 0)
        if message.exchange or now - first > CAST_RETRY_WINDOW:
            return False
        wait = BACKOFF[min(retries, len(BACKOFF) - 1)]
        LOG.warning("cast to %s failed (%r); running it again in %.1fs", target, exc, wait)
        await asyncio.sleep(wait)
        headers.update({FIRST_FAILURE: int(first), RETRIES: retries + 1})
        copy = aio_pika.Message(message.body, content_type=message.content_type, headers=headers,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await self._publish(copy, message.routing_key or self.prefix + target,
                                deadline=time.monotonic() + CAST_DEADLINE)
        except RPCError:
            await message.nack(requeue=True)  # keep it: the broker hands it out again
            return True
        await message.ack()
        return True

    async def _reply(self, message: aio_pika.abc.AbstractIncomingMessage, reply: dict) -> None:
        """Publish the reply until the broker confirms it has it, or the caller has stopped waiting.

        Confirmed and mandatory: a reply written just before the connection dropped is published again
        once the transport is back (the caller ignores a second copy), and one the broker returns (the
        caller's reply queue is being declared again after its own reconnection) is tried again.
        """
        body = dumps(reply)
        # The caller waits no longer than its request's expiration.
        deadline = time.monotonic() + (message.expiration or CAST_DEADLINE)
        attempt = 0
        while True:
            out = aio_pika.Message(body, content_type="application/json", correlation_id=message.correlation_id,
                                   delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT)
            try:
                await self._wait_restored(deadline)
                assert self._publish_channel is not None
                await self._publish_channel.default_exchange.publish(
                    out, routing_key=message.reply_to or "", mandatory=True,
                    timeout=max(0.1, deadline - time.monotonic()))
                return
            except RPCTimeout as exc:
                LOG.warning("reply to %s lost: %s", message.correlation_id, exc)
                return
            except (amqp_errors.PublishError, *_RETRYABLE) as exc:
                if self._closing or time.monotonic() >= deadline:
                    LOG.warning("reply to %s lost: %r", message.correlation_id, exc)
                    return
                wait = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                attempt += 1
                LOG.info("reply to %s not confirmed (%r); publishing it again in %.1fs", message.correlation_id,
                         exc, wait)
                await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))

    async def stop_serving(self, target: str) -> None:
        consumers = self._consumers.pop(target, [])
        channel = None
        for queue, tag in consumers:
            if not tag:
                channel = queue
                continue
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        tasks = self._tasks.pop(target, set())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    async def close(self) -> None:
        self._closing = True
        for target in list(self._consumers):
            await self.stop_serving(target)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RPCError("transport closed"))
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
