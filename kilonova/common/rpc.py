"""The internal RPC layer: ``call`` and ``cast`` to named targets.

Targets are plain strings: ``conductor``, ``scheduler``, ``compute.<host>``.
A server exposes an *endpoint* object at a target; every public ``async``
method of the endpoint can be invoked remotely with keyword arguments.

The transport is chosen by ``[DEFAULT] transport_url``. ``inproc://`` (the
all-in-one default) delivers messages through asyncio queues inside the
process; a RabbitMQ transport implements the same ``Transport`` interface.
Payloads and results are round-tripped through JSON even in-process, so code
that works here cannot depend on sharing Python objects and will work over a
real broker unchanged.

Messages carry the version "X.Y" of the target's RPC interface they were written
for (``kilonova.common.rpc_versions``); a server that serves a target at a
version refuses, with ``UnsupportedVersion``, a message of another major or of
a newer minor than its own.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from typing import Any, Protocol

import orjson

from kilonova.common import metrics, request_ids

LOG = logging.getLogger(__name__)


class RPCError(Exception):
    pass


class RPCTimeout(RPCError):
    pass


class NoSuchTarget(RPCError):
    pass


class UnsupportedVersion(RPCError):
    """A message or a version cap that the other side's interface version cannot carry."""


class RemoteError(RPCError):
    """An exception raised by the remote endpoint, carried back to the caller."""

    def __init__(self, exc_type: str, message: str, data: dict | None = None):
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message
        self.data = data or {}


class ExpectedError(Exception):
    """Base for domain errors an endpoint raises on purpose; ``data`` travels to the caller."""

    def __init__(self, message: str, **data: Any):
        super().__init__(message)
        self.data = data


# True while an endpoint handles a message the broker delivered before (its first server died
# before acknowledging it): handlers that are not naturally idempotent clean up first.
_redelivered: contextvars.ContextVar[bool] = contextvars.ContextVar("rpc_redelivered", default=False)


def redelivered() -> bool:
    """Whether the message being handled was delivered before, to a server that died."""
    return _redelivered.get()


@functools.lru_cache(maxsize=256)  # every message's version is checked against its receiver's
def parse_version(text: str) -> tuple[int, int]:
    """ "X.Y" -> (X, Y); ValueError for anything else."""
    major, dot, minor = str(text).strip().partition(".")
    if not dot or not major.isdigit() or not minor.isdigit():
        raise ValueError(f"{text!r} is not an RPC version (X.Y)")
    return int(major), int(minor)


def check_version(target: str, speaks: str | None, method: str, version: str | None) -> None:
    """Refuse a message this server cannot understand: another major, or a newer minor than its own.

    A message without a version comes from a sender older than versioning: 1.0.
    """
    if speaks is None:
        return
    try:
        have, got = parse_version(speaks), parse_version(version or "1.0")
    except ValueError as exc:
        raise RemoteError("UnsupportedVersion", f"{target}: {method} at version {version!r}: {exc}") from None
    if got[0] != have[0]:
        raise RemoteError("UnsupportedVersion", f"{target} speaks RPC version {speaks}: {method} at version "
                                                f"{got[0]}.{got[1]} is of another major version it does not speak")
    if got[1] > have[1]:
        raise RemoteError("UnsupportedVersion", f"{target} speaks RPC version {speaks}: {method} at version "
                                                f"{got[0]}.{got[1]} is newer. Upgrade it, or cap what is sent to it "
                                                f"([upgrade_levels] in the sender's configuration)")


def dumps(value: Any) -> bytes:
    """An RPC payload as JSON, the same for every transport (orjson; non-string keys become strings, as
    the json module makes them)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


loads = orjson.loads


def _roundtrip(value: Any) -> Any:
    return loads(dumps(value))


class Transport(Protocol):
    """``version``: the interface version a message is written for (None: unversioned, read as 1.0);
    ``serve(..., version=)``: the version the endpoint speaks (None: it accepts every version)."""

    async def call(self, target: str, method: str, kwargs: dict, timeout: float, *,
                   version: str | None = None) -> Any: ...
    async def cast(self, target: str, method: str, kwargs: dict, *, version: str | None = None) -> None: ...
    async def fanout_cast(self, target: str, method: str, kwargs: dict, *, version: str | None = None) -> None: ...
    async def serve(self, target: str, endpoint: object, *, concurrency: int = 64,
                    version: str | None = None) -> None: ...
    async def stop_serving(self, target: str) -> None: ...
    async def close(self) -> None: ...


RPC_LOG = logging.getLogger("kilonova.rpc")


async def dispatch(endpoint: object, method: str, kwargs: dict, target: str = "") -> Any:
    """Invoke ``endpoint.method(**kwargs)``; shared by every transport's server side.

    Each message handled is one line of ``kilonova.rpc`` (target, method, outcome, time), under the request
    ids the message carried: the RPC side of the access log. INFO for the work of a request, DEBUG for
    periodic work (heartbeats, syncs: no request id), which would otherwise fill the log.
    """
    if method.startswith("_"):
        raise RemoteError("NoSuchMethod", f"{method} is not a remote method")
    func = getattr(endpoint, method, None)
    if func is None or not asyncio.iscoroutinefunction(func):
        raise RemoteError("NoSuchMethod", f"{type(endpoint).__name__} has no remote method {method}")
    level = logging.DEBUG if request_ids.current() is None else logging.INFO
    if not RPC_LOG.isEnabledFor(level):
        return await func(**kwargs)
    started = time.perf_counter()
    outcome = "failed"
    try:
        result = await func(**kwargs)
        outcome = "done"
        return result
    finally:
        RPC_LOG.log(level, "rpc %s %s %s in %.6fs", target or type(endpoint).__name__, method, outcome,
                     time.perf_counter() - started)


def error_payload(exc: BaseException) -> dict:
    if isinstance(exc, RemoteError):
        return {"type": exc.exc_type, "message": exc.message, "data": exc.data}
    return {"type": type(exc).__name__, "message": str(exc), "data": getattr(exc, "data", {}) or {}}


def _sent_ids() -> request_ids.RequestIds | None:
    """The ids a message carries, as a copy (the receiver may set its own user and project)."""
    return request_ids.from_rpc(request_ids.rpc_context())


class InProcessTransport:
    """Queues per target, a bounded set of worker tasks per served target."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue] = {}
        self._workers: dict[str, list[asyncio.Task]] = {}
        self._background: set[asyncio.Task] = set()

    async def serve(self, target: str, endpoint: object, *, concurrency: int = 64,
                    version: str | None = None) -> None:
        if target in self._queues:
            raise RPCError(f"target {target} is already served in this process")
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[target] = queue
        self._workers[target] = [asyncio.create_task(self._worker(target, endpoint, queue, version),
                                                     name=f"rpc-{target}-{i}") for i in range(concurrency)]

    async def stop_serving(self, target: str) -> None:
        for task in self._workers.pop(target, []):
            task.cancel()
        queue = self._queues.pop(target, None)
        if queue is not None:
            while not queue.empty():
                _method, _kwargs, _version, _ids, future = queue.get_nowait()
                if future is not None and not future.done():
                    future.set_exception(NoSuchTarget(f"{target} stopped serving"))

    async def _worker(self, target: str, endpoint: object, queue: asyncio.Queue, speaks: str | None) -> None:
        while True:
            method, kwargs, version, ids, future = await queue.get()
            bound = request_ids.bind(ids)   # the handler runs under the ids of the work that sent the message
            try:
                check_version(target, speaks, method, version)
                result = _roundtrip(await dispatch(endpoint, method, kwargs, target))
            except asyncio.CancelledError:
                if future is not None and not future.done():
                    future.set_exception(NoSuchTarget(f"{target} stopped serving"))
                raise
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                if future is None:
                    LOG.exception("cast %s.%s failed", target, method)
                elif not future.done():
                    payload = error_payload(exc)
                    future.set_exception(RemoteError(payload["type"], payload["message"], payload["data"]))
                continue
            finally:
                request_ids.reset(bound)
            if future is not None and not future.done():
                future.set_result(result)

    async def depths(self) -> dict[str, int]:
        """Messages waiting for a worker, per target served here."""
        return {target: queue.qsize() for target, queue in self._queues.items()}

    def _queue(self, target: str) -> asyncio.Queue:
        queue = self._queues.get(target)
        if queue is None:
            raise NoSuchTarget(f"no server listens on RPC target {target}")
        return queue

    async def call(self, target: str, method: str, kwargs: dict, timeout: float, *,
                   version: str | None = None) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue(target).put_nowait((method, _roundtrip(kwargs), version, _sent_ids(), future))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise RPCTimeout(f"no reply from {target}.{method} within {timeout}s") from None

    async def cast(self, target: str, method: str, kwargs: dict, *, version: str | None = None) -> None:
        self._queue(target).put_nowait((method, _roundtrip(kwargs), version, _sent_ids(), None))

    async def fanout_cast(self, target: str, method: str, kwargs: dict, *, version: str | None = None) -> None:
        """Every server of ``target``: in one process there is at most one; none is not an error."""
        queue = self._queues.get(target)
        if queue is not None:
            queue.put_nowait((method, _roundtrip(kwargs), version, _sent_ids(), None))

    async def close(self) -> None:
        for target in list(self._queues):
            await self.stop_serving(target)


class RPCClient:
    """A handle on one target: ``await client.call("method", arg=...)``.

    With an ``interface`` (``kilonova.common.rpc_versions.Interface``) every message is stamped
    with its version, and written down to ``version_cap`` when the target runs an older release.
    """

    def __init__(self, transport: Transport, target: str, timeout: float = 60.0, *, interface=None,
                 version_cap: str | None = None):
        self.transport = transport
        self.target = target
        self.timeout = timeout
        self.interface = interface
        self.version_cap = version_cap
        if interface is not None:
            interface.cap(version_cap)  # a bad pin fails here, when the service starts

    def prepare(self, target: str | None = None, timeout: float | None = None) -> "RPCClient":
        return RPCClient(self.transport, target or self.target, timeout or self.timeout, interface=self.interface,
                         version_cap=self.version_cap)

    def _message(self, method: str, kwargs: dict) -> tuple[str | None, dict]:
        if self.interface is None:
            return None, kwargs
        return self.interface.prepare(method, kwargs, self.version_cap)

    async def call(self, method: str, **kwargs: Any) -> Any:
        version, kwargs = self._message(method, kwargs)
        target = metrics.rpc_target(self.target)
        metrics.RPC_MESSAGES.labels("call", target, method).inc()
        try:
            return await self.transport.call(self.target, method, kwargs, self.timeout, version=version)
        except RPCError:
            metrics.RPC_FAILURES.labels(target, method).inc()
            raise

    async def cast(self, method: str, **kwargs: Any) -> None:
        version, kwargs = self._message(method, kwargs)
        metrics.RPC_MESSAGES.labels("cast", metrics.rpc_target(self.target), method).inc()
        await self.transport.cast(self.target, method, kwargs, version=version)

    async def fanout_cast(self, method: str, **kwargs: Any) -> None:
        """A cast to every server of the target (e.g. all schedulers), not just one of them."""
        version, kwargs = self._message(method, kwargs)
        metrics.RPC_MESSAGES.labels("fanout", metrics.rpc_target(self.target), method).inc()
        await self.transport.fanout_cast(self.target, method, kwargs, version=version)


def get_transport(url: str) -> Transport:
    if url.startswith("inproc"):
        return InProcessTransport()
    if url.startswith(("rabbit://", "amqp://")):
        from kilonova.common.rpc_rabbit import RabbitTransport

        return RabbitTransport(url)
    raise RPCError(f"unsupported transport_url {url!r}: use inproc:// or rabbit://user:pass@host:port/vhost")


def _same_transport(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class TransportPool:
    """The process's own transport, plus one per other transport URL, created on first use.

    Cells v2: every cell has its own ``transport_url`` (its compute hosts listen on that broker
    or vhost). Services at the top (API, conductor) reach a host through its cell's transport;
    a URL that is the process's own, empty, ``none:///`` (cell0) or in-process maps to the
    process's transport.
    """

    def __init__(self, default: Transport, default_url: str):
        self.default = default
        self.default_url = default_url
        self._others: dict[str, Transport] = {}

    def is_default(self, url: str | None) -> bool:
        return (not url or _same_transport(url, self.default_url) or url.startswith(("none:", "inproc"))
                or self.default_url.startswith("inproc"))

    def get(self, url: str | None) -> Transport:
        if self.is_default(url):
            return self.default
        key = url.rstrip("/")
        transport = self._others.get(key)
        if transport is None:
            transport = self._others[key] = get_transport(url)
        return transport

    async def close(self) -> None:
        """Close the transports this pool created (the process's own belongs to its runner)."""
        others, self._others = list(self._others.values()), {}
        for transport in others:
            await transport.close()
