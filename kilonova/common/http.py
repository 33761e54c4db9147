"""A small ASGI layer shared by every Kilonova HTTP service.

Each service declares a routes table (method + path template -> handler) and an
error formatter that shapes errors the way its upstream project does (Nova,
Keystone, Placement, Glance and Neutron all differ). The layer gives:

* automatic 404 for unknown paths and 405 (with ``Allow``) for known paths
  with the wrong method;
* ``HTTPError`` raised anywhere in a handler becomes a formatted response;
* any other exception becomes a formatted 500 without a traceback in the body;
* bounded JSON body parsing with clear 400/413 errors;
* oversized headers (431) or URLs (414) and NUL characters in the path (404) or query string (400) refused
  before any routing, authentication or handler work.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from kilonova.common import operations, request_ids
from kilonova.common.cpu_pool import CpuPool, Overloaded

LOG = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# No OpenStack body nests anywhere near this deep; deeper ones would exhaust the recursion of the
# parser, of jsonschema or of the JSON encoder that stores them (orjson stops at 254).
MAX_JSON_DEPTH = 32
# Upstream's WSGI servers refuse a header line over 16 KiB; the whole block is bounded too, and the URL
# (414). uvicorn reads up to H11_MAX_HEADER_BYTES (kilonova/aio.py) so that these limits are answered in
# each API's own format.
MAX_HEADER_LINE_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
H11_MAX_HEADER_BYTES = 1024 * 1024

Handler = Callable[..., Awaitable[Response]]


class HTTPError(Exception):
    """An error answer: status, human message, and optional extras for the formatter."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra


# Convenience constructors keep handlers short.
def bad_request(message: str, **kw: Any) -> HTTPError:
    return HTTPError(400, message, **kw)


def unauthorized(message: str = "The request you have made requires authentication.", **kw: Any) -> HTTPError:
    return HTTPError(401, message, **kw)


def forbidden(message: str, **kw: Any) -> HTTPError:
    return HTTPError(403, message, **kw)


def not_found(message: str, **kw: Any) -> HTTPError:
    return HTTPError(404, message, **kw)


def conflict(message: str, **kw: Any) -> HTTPError:
    return HTTPError(409, message, **kw)


ErrorFormatter = Callable[[Request, HTTPError], Response]


def default_error_formatter(request: Request, error: HTTPError) -> Response:
    return JSONResponse({"error": {"code": error.status, "message": error.message}},
                        status_code=error.status, headers=error.headers)


_PARAM = re.compile(r"\{(\w+)\}")


@dataclass
class _Route:
    template: str
    pattern: re.Pattern
    handlers: dict[str, Handler] = field(default_factory=dict)


class Router:
    """Maps (method, path) to handlers; answers 404/405 itself."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._by_template: dict[str, _Route] = {}
        # Routes that can match a path with a given first segment, in declaration order: those whose
        # template starts with that literal segment or with a parameter (most of a long table is skipped).
        self._by_first: dict[str, list[_Route]] = {}

    def add(self, method: str, template: str, handler: Handler) -> None:
        route = self._by_template.get(template)
        if route is None:
            regex = "^" + _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template.rstrip("/") or "/") + "$"
            route = _Route(template, re.compile(regex))
            self._by_template[template] = route
            self._routes.append(route)
            self._by_first.clear()
        route.handlers[method.upper()] = handler
        if method.upper() == "GET":
            route.handlers.setdefault("HEAD", handler)

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def decorator(func: Handler) -> Handler:
            self.add(method, template, func)
            return func
        return decorator

    def endpoints(self) -> list[tuple[str, str]]:
        """Every (method, path template) routed, in declaration order."""
        return [(method, route.template) for route in self._routes for method in route.handlers]

    def handler(self, method: str, template: str) -> Handler:
        """The handler routed for ``method`` on ``template`` (as ``add`` was given them)."""
        return self._by_template[template].handlers[method.upper()]

    def _routes_for(self, path: str) -> list[_Route]:
        if not self._by_first:
            firsts = {_first_segment(route.template) for route in self._routes}
            for first in firsts:   # None: a path whose first segment no template starts with
                self._by_first[first] = [route for route in self._routes
                                         if _first_segment(route.template) in (first, None)]
        routes = self._by_first.get(path.lstrip("/").split("/", 1)[0])
        return self._by_first.get(None, []) if routes is None else routes

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        handler, params, _template = self.match_route(method, path)
        return handler, params

    def match_route(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        """(handler, path parameters, the route's template): the template names the route in logs and metrics."""
        path = path.rstrip("/") or "/"
        allowed: set[str] = set()
        for route in self._routes_for(path):
            found = route.pattern.match(path)
            if not found:
                continue
            handler = route.handlers.get(method)
            if handler is not None:
                return handler, found.groupdict(), route.template
            allowed.update(route.handlers)
        if allowed:
            allow = ", ".join(sorted(allowed))
            raise HTTPError(405, f"The method {method} is not allowed for this resource.",
                            headers={"Allow": allow})
        raise HTTPError(404, "The resource could not be found.")


def _first_segment(template: str) -> str | None:
    """A template's literal first path segment; None when it starts with a parameter."""
    first = template.rstrip("/").lstrip("/").split("/", 1)[0]
    return None if "{" in first else first


Middleware = Callable[[Request, Handler, dict[str, str]], Awaitable[Response]]


class ServiceApp:
    """An ASGI application made of a router, an error formatter and a request hook.

    ``before`` runs for every matched request before its handler (authentication,
    version negotiation) and may raise ``HTTPError``.
    """

    def __init__(self, name: str, router: Router, *, error_formatter: ErrorFormatter = default_error_formatter,
                 before: Callable[[Request, Handler], Awaitable[None]] | None = None,
                 after: Callable[[Request, Response], None] | None = None,
                 prefix: str = "") -> None:
        self.name = name
        self.router = router
        self.error_formatter = error_formatter
        self.before = before
        self.after = after
        self.prefix = prefix.rstrip("/")
        self.state: dict[str, Any] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] in operations.PATHS:
            await operations.answer(self, scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope, receive)
        ids = request_ids.for_request(_header(scope, b"x-openstack-request-id"))
        request.state.request_id = ids.request_id
        request.state.app = self
        bound = request_ids.bind(ids)
        template = None
        try:
            try:
                _refuse_malformed_request(scope)
                path = scope["path"]
                if self.prefix and path.startswith(self.prefix):
                    path = path[len(self.prefix):] or "/"
                handler, params, template = self.router.match_route(scope["method"], path)
                if self.before is not None:
                    await self.before(request, handler)
                    context = getattr(request.state, "context", None)
                    if context is not None:
                        ids.user_id, ids.project_id = context.user_id, context.project_id
                response = await handler(request, **params)
            except HTTPError as error:
                response = self.error_formatter(request, error)
            except ClientDisconnect:
                # The client went away before sending its whole body (an interrupted upload, a dropped
                # connection): no one is left to answer, and nothing went wrong here.
                LOG.info("%s: client disconnected during %s %s", self.name, scope["method"], scope["path"])
                return
            except Exception:  # noqa: BLE001 - the last line of defence: never leak a traceback
                LOG.exception("%s: unexpected error handling %s %s", self.name, scope["method"], scope["path"])
                error = HTTPError(500, "An unexpected error prevented the server from fulfilling your request.")
                response = self.error_formatter(request, error)
            response.headers.setdefault("x-openstack-request-id", ids.request_id)
            if self.after is not None:
                self.after(request, response)
            if scope["method"] == "HEAD":
                response.body = b""
            await response(scope, receive, send)
            operations.finished(self.name, scope, template, response, time.perf_counter() - started)
        finally:
            request_ids.reset(bound)


def _header(scope: dict, name: bytes) -> str | None:
    """A request header's value (the first one; ``name`` in lower case), without building a Request's Headers."""
    for key, value in scope.get("headers") or ():
        if key == name or key.lower() == name:
            return value.decode("latin-1")
    return None


async def _lifespan(receive: Callable, send: Callable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _refuse_malformed_request(scope: dict) -> None:
    """Headers or URL too large, or a NUL in the path or query string (no database stores one), refused
    up front."""
    headers = scope.get("headers") or ()
    if (sum(len(name) + len(value) + 4 for name, value in headers) > MAX_HEADER_BYTES
            or any(len(name) + len(value) + 2 > MAX_HEADER_LINE_BYTES for name, value in headers)):
        raise HTTPError(431, "Request header fields too large.")
    query = scope.get("query_string") or b""
    if len(scope.get("raw_path") or scope["path"]) + len(query) > MAX_HEADER_LINE_BYTES:
        raise HTTPError(414, "The request URL is too long.")
    if "\x00" in scope["path"]:
        raise HTTPError(404, "The resource could not be found.")
    if b"%00" in query or b"\x00" in query:
        raise bad_request("The query string may not contain NUL characters.")


async def read_body(request: Request, *, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, or a 413 as soon as it is known to pass ``max_bytes`` (nothing more is read)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise HTTPError(413, "Request is too large.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPError(413, "Request is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, max_bytes: int = MAX_BODY_BYTES, required: bool = True) -> Any:
    """The request body as JSON, or a 400/413 that says what is wrong with it."""
    raw = await read_body(request, max_bytes=max_bytes)
    if not raw.strip():
        if required:
            raise bad_request("The request body is empty; a JSON document is required.")
        return None
    return await decode_json(raw)


async def decode_json(raw: bytes, malformed: str = "Malformed request body") -> Any:
    """``parse_json``, on a thread for a large document (503 when too many already wait there)."""
    if len(raw) <= OFF_LOOP_JSON_BYTES:
        return parse_json(raw, malformed)
    # A big document takes milliseconds to parse and check (the checks walk it in Python): on a thread,
    # so that the event loop, which answers every API of the process, is not held meanwhile.
    try:
        return await _json_pool().run(parse_json, raw, malformed)
    except Overloaded:
        raise HTTPError(503, "The service is busy reading large requests; try again shortly.",
                        headers={"Retry-After": "1"}) from None


# Bodies above this are parsed off the event loop; below it parsing costs well under a millisecond.
OFF_LOOP_JSON_BYTES = 64 * 1024
_JSON_POOL: CpuPool | None = None


def _json_pool() -> CpuPool:
    """One small pool per process for large JSON bodies (at most 16 of them waiting or parsed at once)."""
    global _JSON_POOL
    if _JSON_POOL is None:
        _JSON_POOL = CpuPool("json", workers=1, queue_limit=16)
    return _JSON_POOL


_BIG_NUMBER = re.compile(rb"\d{19}")   # 2 ** 63 has 19 digits


def parse_json(raw: bytes, malformed: str = "Malformed request body") -> Any:
    """A JSON document that every layer behind can handle, or a 400 saying why not.

    orjson refuses what no database or encoder takes (lone UTF-16 surrogates, invalid UTF-8, NaN
    and Infinity); nesting is bounded; NUL characters and integers past 64 bits (which no column or
    RPC message holds) are refused. orjson reads the latter as floats: a document that may have one is
    read again by ``json`` to see it.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"{malformed}: {_json_error(raw, exc)}") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth_exceeds(value, MAX_JSON_DEPTH):
        raise bad_request(f"{malformed}: JSON nested deeper than {MAX_JSON_DEPTH} levels.")
    if b"\\u0000" in raw and _has_nul(value):
        raise bad_request(f"{malformed}: strings may not contain NUL characters.")
    if _BIG_NUMBER.search(raw):
        value = json.loads(raw)
        if any(isinstance(leaf, int) and not -2 ** 63 <= leaf < 2 ** 63 for leaf in _leaves(value)):
            raise bad_request(f"{malformed}: integers must fit in 64 bits.")
    return value


def _json_error(raw: bytes, refused: Exception) -> str:
    """Python's json message for a document neither parser takes (upstream's wording); else orjson's."""
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError) as plain:
        return str(plain)
    except RecursionError:
        pass
    return str(refused)


def _containers(value: Any):
    """(depth, item) for every list and dict in a parsed document, without recursion."""
    stack = [(1, value)]
    while stack:
        depth, item = stack.pop()
        if isinstance(item, (list, dict)):
            yield depth, item
            stack.extend((depth + 1, child) for child in (item.values() if isinstance(item, dict) else item))


def _depth_exceeds(value: Any, limit: int) -> bool:
    return any(depth > limit for depth, _ in _containers(value))


def _leaves(value: Any):
    """Every key and scalar of a parsed document."""
    if not isinstance(value, (list, dict)):
        yield value
    for _, item in _containers(value):
        yield from (list(item) + list(item.values()) if isinstance(item, dict) else item)


def _has_nul(value: Any) -> bool:
    return any(isinstance(leaf, str) and "\x00" in leaf for leaf in _leaves(value))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # orjson: the same compact UTF-8 JSON as json.dumps, several times faster on big lists.
    return Response(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status_code=status, headers=headers,
                    media_type="application/json")


def empty_response(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


def query_value(request: Request, name: str, default: str | None = None) -> str | None:
    return request.query_params.get(name, default)
