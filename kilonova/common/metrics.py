"""Prometheus metrics of a Kilonova process (``prometheus-client``), served at ``/metrics`` by each API.

One registry per process: in the all-in-one every API's ``/metrics`` answers the same (the ``service``
label tells the APIs apart). Requests are counted per route template, never per raw path, so ids do not
make new series. Gauges read from databases (hosts up, Placement usage) are refreshed by the services that
own those databases when ``/metrics`` is asked for (``add_refresher``).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LOG = logging.getLogger(__name__)

# 1 ms .. 10 s: API answers, scheduler decisions and candidate queries all fall in it.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter("kilonova_http_requests", "API requests answered, per service, method, route template "
                        "and status", ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("kilonova_http_request_duration_seconds", "Time to answer an API request, per service, "
                         "method and route template", ["service", "method", "route"], buckets=_BUCKETS)
SERVER_ACTIONS = Counter("kilonova_server_actions", "Server lifecycle operations (instance actions: create is a "
                         "boot) finished, by outcome", ["action", "outcome"])
SCHEDULER_DECISION = Histogram("kilonova_scheduler_decision_seconds", "Time the scheduler took to choose hosts "
                               "(select_destinations), by outcome", ["outcome"], buckets=_BUCKETS)
PLACEMENT_CANDIDATES = Histogram("kilonova_placement_allocation_candidates_seconds", "Time Placement took to "
                                 "answer GET /allocation_candidates, by outcome", ["outcome"], buckets=_BUCKETS)
RPC_MESSAGES = Counter("kilonova_rpc_messages", "RPC messages sent, per kind (call, cast, fanout), target "
                       "(compute hosts as 'compute') and method", ["kind", "target", "method"])
RPC_FAILURES = Counter("kilonova_rpc_call_failures", "RPC calls that failed or timed out, per target and "
                       "method", ["target", "method"])
RPC_QUEUE_DEPTH = Gauge("kilonova_rpc_queue_depth", "RPC messages waiting in the queue of each target this "
                        "process serves (compute hosts as 'compute')", ["target"])
COMPUTE_HOSTS = Gauge("kilonova_compute_hosts", "Compute services by state (up: heartbeat within "
                      "service_down_time)", ["state"])
PLACEMENT_USAGE = Gauge("kilonova_placement_usage", "Resources allocated in Placement, per resource class",
                        ["resource_class"])
PLACEMENT_CAPACITY = Gauge("kilonova_placement_capacity", "Usable capacity in Placement ((total - reserved) "
                           "* allocation_ratio), per resource class", ["resource_class"])

_http_children: dict[tuple, tuple] = {}
_refreshers: list[Callable[[], Awaitable[None]]] = []


def observe_request(service: str, method: str, route: str | None, status: int, seconds: float) -> None:
    """One answered request (a few hundred nanoseconds: the labelled children are kept)."""
    key = (service, method, route, status)
    children = _http_children.get(key)
    if children is None:
        label = route or "unmatched"
        children = _http_children[key] = (HTTP_REQUESTS.labels(service, method, label, str(status)),
                                          HTTP_LATENCY.labels(service, method, label))
    children[0].inc()
    children[1].observe(seconds)


def timed(histogram: Histogram):
    """Decorates a coroutine function: its duration observed in ``histogram`` by outcome (success, failure)."""
    def decorator(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            outcome = "failure"
            try:
                result = await func(*args, **kwargs)
                outcome = "success"
                return result
            finally:
                histogram.labels(outcome).observe(time.perf_counter() - started)
        return wrapper
    return decorator


def action_finished(action: str, failed: bool) -> None:
    SERVER_ACTIONS.labels(action, "error" if failed else "success").inc()


def rpc_target(target: str) -> str:
    """``compute.<host>`` -> ``compute``: one series per interface, not per host."""
    return target.split(".", 1)[0]


def queue_depths(transport) -> Callable[[], Awaitable[None]]:
    """A refresher of RPC_QUEUE_DEPTH from ``transport.depths()``."""
    async def refresh() -> None:
        depths: dict[str, int] = {}
        for target, depth in (await transport.depths()).items():
            depths[rpc_target(target)] = depths.get(rpc_target(target), 0) + depth
        for target, depth in depths.items():
            RPC_QUEUE_DEPTH.labels(target).set(depth)
    return refresh


def add_refresher(refresh: Callable[[], Awaitable[None]]) -> None:
    """``refresh()`` runs before each scrape of this process (it sets gauges from a database)."""
    _refreshers.append(refresh)


def remove_refresher(refresh: Callable[[], Awaitable[None]]) -> None:
    if refresh in _refreshers:
        _refreshers.remove(refresh)


async def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, gauges refreshed first (a refresher that fails leaves its last values)."""
    for refresh in list(_refreshers):
        try:
            await asyncio.wait_for(refresh(), 5.0)
        except Exception:  # noqa: BLE001 - a scrape answers with what it has
            LOG.warning("metrics: refreshing %s failed", getattr(refresh, "__qualname__", refresh), exc_info=True)
    return generate_latest(), CONTENT_TYPE_LATEST
