"""CORS as oslo.middleware's CORS does it, wrapped around the whole Placement application.

Options are the ``[cors]`` section's: ``allowed_origin`` (a list; ``*`` for any),
``allow_credentials``, ``expose_headers``, ``max_age``, ``allow_methods``,
``allow_headers``. A preflight (OPTIONS) goes to the application first; a non-2xx
answer (the usual 401/405) is replaced by an empty 200, which is then decorated
when the origin, method and headers are allowed. Other requests from an allowed
origin get ``Access-Control-Allow-Origin`` and friends added.
"""
from __future__ import annotations

from typing import Callable

SIMPLE_HEADERS = ["Accept", "Accept-Language", "Content-Type", "Cache-Control", "Content-Language", "Expires",
                  "Last-Modified", "Pragma"]


def _as_list(value) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value or [])


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


class CORS:
    def __init__(self, app, *, allowed_origin, allow_credentials=True, expose_headers="", max_age="3600",
                 allow_methods="OPTIONS,GET,HEAD,POST,PUT,DELETE,TRACE,PATCH", allow_headers=""):
        self.app = app
        self.origins = _as_list(allowed_origin)
        self.credentials = _as_bool(allow_credentials)
        self.expose = _as_list(expose_headers)
        self.max_age = str(max_age).strip() if max_age not in (None, "") else ""
        self.methods = _as_list(allow_methods)
        self.headers = [h.upper() for h in _as_list(allow_headers) + SIMPLE_HEADERS]

    @property
    def state(self):
        return self.app.state

    def _origin(self, headers: dict[str, str]) -> str | None:
        origin = headers.get("origin")
        if origin is None:
            return None
        if origin in self.origins:
            return origin
        return "*" if "*" in self.origins else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        preflight = scope["method"] == "OPTIONS"
        started: dict = {}
        body: list[bytes] = []

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                body.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        status = started["status"]
        out = [(k, v) for k, v in started.get("headers", [])]
        names = {k.decode("latin-1").lower() for k, _ in out}
        if "access-control-allow-origin" not in names:
            if preflight:
                if not 200 <= status < 300:
                    status, out, body = 200, [(b"content-length", b"0")], [b""]
                out += [(k.encode(), v.encode()) for k, v in self._preflight(headers)]
            else:
                out = self._simple(headers, out)
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": b"".join(body)})

    def _preflight(self, headers: dict[str, str]) -> list[tuple[str, str]]:
        origin = self._origin(headers)
        method = headers.get("access-control-request-method")
        if origin is None or method is None or method not in self.methods:
            return []
        requested = [h.strip() for h in headers.get("access-control-request-headers", "").rsplit(",") if h.strip()]
        if any(h.upper() not in self.headers for h in requested):
            return []
        result = [("Vary", "Origin"), ("Access-Control-Allow-Origin", origin)]
        if self.credentials:
            result.append(("Access-Control-Allow-Credentials", "true"))
        if self.max_age:
            result.append(("Access-Control-Max-Age", self.max_age))
        result.append(("Access-Control-Allow-Methods", method))
        if requested:
            result.append(("Access-Control-Allow-Headers", ",".join(requested)))
        return result

    def _simple(self, headers: dict[str, str], out: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        origin = self._origin(headers)
        if origin is None:
            return out
        vary = [v for k, v in out if k.lower() == b"vary"]
        out = [(k, v) for k, v in out if k.lower() != b"vary"]
        out.append((b"vary", vary[0] + b",Origin" if vary else b"Origin"))
        out.append((b"access-control-allow-origin", origin.encode()))
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        if self.expose:
            out.append((b"access-control-expose-headers", ",".join(self.expose).encode()))
        return out
