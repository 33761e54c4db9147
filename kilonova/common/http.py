"""A small ASGI layer shared by every Kilonova HTTP service.

Each service declares a routes table (method + path template -> handler) and an
error formatter that shapes errors the way its upstream project does (Nova,
Keystone, Placement, Glance and Neutron all differ). The layer gives:

* automatic 404 for unknown paths and 405 (with ``Allow``) for known paths
  with the wrong method;
* ``HTTPError`` raised anywhere in a handler becomes a formatted response;
* any other exception becomes a formatted 500 without a traceback in the body;
* bounded JSON body parsing with clear 400/413 errors.
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

LOG = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024

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

    def _routes_for(self, path: str) -> list[_Route]:
        if not self._by_first:
            firsts = {_first_segment(route.template) for route in self._routes}
            for first in firsts:   # None: a path whose first segment no template starts with
                self._by_first[first] = [route for route in self._routes
                                         if _first_segment(route.template) in (first, None)]
        routes = self._by_first.get(path.lstrip("/").split("/", 1)[0])
        return self._by_first.get(None, []) if routes is None else routes

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        path = path.rstrip("/") or "/"
        allowed: set[str] = set()
        for route in self._routes_for(path):
            found = route.pattern.match(path)
            if not found:
                continue
            handler = route.handlers.get(method)
            if handler is not None:
                return handler, found.groupdict()
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
        request = Request(scope, receive)
        request.state.request_id = "req-" + str(uuid.uuid4())
        request.state.app = self
        try:
            path = scope["path"]
            if self.prefix and path.startswith(self.prefix):
                path = path[len(self.prefix):] or "/"
            handler, params = self.router.match(scope["method"], path)
            if self.before is not None:
                await self.before(request, handler)
            response = await handler(request, **params)
        except HTTPError as error:
            response = self.error_formatter(request, error)
        except Exception:  # noqa: BLE001 - the last line of defence: never leak a traceback
            LOG.exception("%s: unexpected error handling %s %s", self.name, scope["method"], scope["path"])
            error = HTTPError(500, "An unexpected error prevented the server from fulfilling your request.")
            response = self.error_formatter(request, error)
        response.headers.setdefault("x-openstack-request-id", request.state.request_id)
        if self.after is not None:
            self.after(request, response)
        if scope["method"] == "HEAD":
            response.body = b""
        await response(scope, receive, send)


async def _lifespan(receive: Callable, send: Callable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_json(request: Request, *, max_bytes: int = MAX_BODY_BYTES, required: bool = True) -> Any:
    """The request body as JSON, or a 400/413 that says what is wrong with it."""
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
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise bad_request("The request body is empty; a JSON document is required.")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Malformed request body: {exc}") from None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # orjson: the same compact UTF-8 JSON as json.dumps, several times faster on big lists.
    return Response(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status_code=status, headers=headers,
                    media_type="application/json")


def empty_response(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


def query_value(request: Request, name: str, default: str | None = None) -> str | None:
    return request.query_params.get(name, default)
