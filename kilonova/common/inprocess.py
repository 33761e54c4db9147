"""Plain requests straight into an in-process ASGI app, without httpx's client machinery.

In the all-in-one process every service-to-service call (API -> image, network, Placement; agent ->
network) lands in an app of the same process. httpx gets there through its full client path (URL
parsing and merging, cookies, auth and redirect hooks, a transport) at about as much CPU as the
handler itself. ``call_app`` sends the same HTTP request -- method, path, query, headers, body --
as an ASGI ``http`` scope and returns an ``httpx.Response``, so callers and the app see no difference.
Anything it does not handle (other request arguments, unusual characters in the URL) takes httpx's path.
"""
from __future__ import annotations

import asyncio
import json as jsonlib
import re
from typing import Any
from urllib.parse import unquote

import httpx

# What httpx would leave as it is in a path or query; anything else (spaces, non-ASCII, ...) it would
# percent-encode, so such URLs take httpx's own path.
_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~/%!$&'()*+,;=:@?]*")
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))


class InProcessTarget:
    """Where a client's base URL points inside the process: the app, and the scope fields that stay fixed."""

    def __init__(self, base_url: httpx.URL):
        self.prefix = base_url.path.rstrip("/")
        self.host = base_url.netloc   # bytes
        self.server = (base_url.host, base_url.port)
        self.scheme = base_url.scheme

    def plain_url(self, url: Any, params: Any) -> tuple[str, bytes] | None:
        """(path, query) of a relative URL this module can send as it is, else None."""
        if not isinstance(url, str) or "://" in url or not _PLAIN_URL.fullmatch(url):
            return None
        path, _, query = url.partition("?")
        if params is not None:
            if query:
                return None   # httpx merges the two; rare enough to leave to it
            query = str(httpx.QueryParams(params))
        return self.prefix + "/" + path.lstrip("/"), query.encode("ascii")


async def call_app(app: Any, target: InProcessTarget, method: str, path: str, query: bytes,
                   client_headers: httpx.Headers, headers: Any, body: bytes | None,
                   content_type: bytes | None) -> httpx.Response:
    """One request into ``app``, headers merged as httpx merges them (the request's win)."""
    merged = {key.lower(): value for key, value in client_headers.raw}
    if headers:
        for key, value in (headers.items() if hasattr(headers, "items") else headers):
            merged[key.lower().encode("ascii") if isinstance(key, str) else key.lower()] = (
                value.encode("ascii") if isinstance(value, str) else value)
    if body is not None:
        merged.setdefault(b"content-length", str(len(body)).encode())   # the caller's own headers win
        if content_type is not None:
            merged.setdefault(b"content-type", content_type)
    elif method in _BODY_METHODS:
        merged.setdefault(b"content-length", b"0")
    raw_headers = [(b"host", target.host)] if b"host" not in merged else []
    raw_headers.extend(merged.items())
    raw_path = path.encode("ascii")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "headers": raw_headers, "scheme": target.scheme, "path": unquote(path) if "%" in path else path,
             "raw_path": raw_path, "query_string": query, "server": target.server,
             "client": ("127.0.0.1", 123), "root_path": ""}
    sent_body = False
    finished = asyncio.Event()
    status = 500
    response_headers: list[tuple[bytes, bytes]] = []
    parts: list[bytes] = []

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        await finished.wait()   # as a server does: the client "disconnects" once the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status, response_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return httpx.Response(status, headers=response_headers, content=b"".join(parts))


def encode_body(json: Any, content: Any) -> tuple[bytes | None, bytes | None] | None:
    """(body, content type) as httpx encodes ``json=`` or bytes ``content=``; None when it is something else."""
    if json is not None:
        if content is not None:
            return None
        return (jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"),
                b"application/json")
    if content is None:
        return None, None
    if isinstance(content, str):
        return content.encode("utf-8"), None
    if isinstance(content, bytes):
        return content, None
    return None
