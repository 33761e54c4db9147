"""What every API answers for its operators: ``/healthcheck``, ``/metrics``, ``/openapi.json`` (its routes,
kilonova/common/openapi.py) and an access log line per request.

``/healthcheck`` is oslo.middleware's: ``200 OK`` (text) while every check of the service passes, else
``503`` with one line per failing check (its name and why). Checks are the service's database and, when
the process talks over a broker, the broker connection (``kilonova.aio`` gives each API its checks).
Neither path needs a token, and neither shows anything secret.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

from kilonova.common import metrics

ACCESS_LOG = logging.getLogger("kilonova.access")
PATHS = frozenset(("/healthcheck", "/metrics", "/openapi.json"))
# A check answers None when all is well, else a short reason; it is given this long.
CHECK_TIMEOUT = 3.0

HealthCheck = tuple[str, Callable[[], Awaitable[str | None]]]


async def health(checks: list[HealthCheck]) -> list[str]:
    """'<name>: <reason>' for every check that fails (none: healthy); the checks run together."""
    async def run(name: str, check: Callable[[], Awaitable[str | None]]) -> str | None:
        try:
            reason = await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except asyncio.TimeoutError:
            reason = f"no answer within {CHECK_TIMEOUT:g}s"
        except Exception as exc:  # noqa: BLE001 - a failing check is an answer, not an error
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return None if reason is None else f"{name}: {reason}"
    results = await asyncio.gather(*(run(name, check) for name, check in checks))
    return [result for result in results if result is not None]


async def answer(app: Any, scope: dict, receive: Callable, send: Callable) -> None:
    """``/healthcheck`` or ``/metrics`` of ``app`` (a ``ServiceApp``)."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        await _send(send, 405, b"Method not allowed.\n", "text/plain; charset=UTF-8", [(b"allow", b"GET, HEAD")])
        return
    if scope["path"] == "/metrics":
        body, content_type = await metrics.exposition()
        status = 200
    elif scope["path"] == "/openapi.json":
        body, content_type, status = _openapi(app), "application/json", 200
    else:
        failures = await health(getattr(app, "health_checks", []))
        status = 503 if failures else 200
        body = ("\n".join(failures) if failures else "OK").encode() + b"\n"
        content_type = "text/plain; charset=UTF-8"
    await _send(send, status, b"" if method == "HEAD" else body, content_type, [])


def _openapi(app: Any) -> bytes:
    """The app's OpenAPI document (kilonova/common/openapi.py), built on first request."""
    cached = app.state.get("openapi")
    if cached is None:
        from kilonova.common import openapi

        cached = app.state["openapi"] = json.dumps(openapi.document(app), sort_keys=True).encode()
    return cached


async def _send(send: Callable, status: int, body: bytes, content_type: str, extra: list) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def finished(service: str, scope: dict, route: str | None, response: Any, seconds: float) -> None:
    """Count an answered request and log its access line (``kilonova.access``, INFO)."""
    metrics.observe_request(service, scope["method"], route, response.status_code, seconds)
    if ACCESS_LOG.isEnabledFor(logging.INFO):
        query = scope.get("query_string") or b""
        path = scope.get("raw_path") or scope["path"].encode()
        target = (path + b"?" + query if query else path).decode("latin-1")
        length = response.headers.get("content-length", "0")
        client = (scope.get("client") or ("-",))[0]
        # The record is made directly: Logger.info would also walk the stack to find its caller, unused here.
        record = ACCESS_LOG.makeRecord(
            ACCESS_LOG.name, logging.INFO, "", 0, '%s %s "%s %s" status: %d len: %s time: %.6f',
            (service, client, scope["method"], target, response.status_code, length, seconds), None)
        record.http = {"service": service, "method": scope["method"], "path": target, "status": response.status_code,
                       "length": int(length) if length.isdigit() else None, "duration": seconds,
                       "client": client}
        ACCESS_LOG.handle(record)
