"""HTTP clients one service uses to reach another's public API.

Services never import each other's internals; they talk HTTP. ``Endpoints``
knows where each service type lives. In the all-in-one process it can also hold
the service's ASGI app, in which case requests go straight into the app
(the same HTTP semantics, no socket: see ``inprocess``). In a distributed deployment
only URLs are known and real connections are used.

``ServiceClient`` authenticates as the service user (``[service_user]``) to the
identity service and re-authenticates once when a token is refused.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from kilonova.common import inprocess, request_ids


def neutron_error(response: httpx.Response) -> dict[str, Any]:
    """The ``NeutronError`` object of a network-service answer (its type and message); {} for any other body."""
    try:
        error = response.json().get("NeutronError")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def segment(value: object) -> str:
    """A value as one path segment of a call to another service: an id a user gave may hold '/', '?',
    '#', a newline or be '..', which would otherwise call another URL or none at all."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


@dataclass
class Endpoints:
    urls: dict[str, str] = field(default_factory=dict)
    apps: dict[str, Any] = field(default_factory=dict)

    def http_client(self, service_type: str, *, timeout: float = 60.0) -> httpx.AsyncClient:
        """A client for ``service_type``; it may be made before that service's app exists."""
        return _EndpointClient(self, service_type, base_url=self.urls[service_type], timeout=timeout)


class _EndpointClient(httpx.AsyncClient):
    """An httpx client whose plain requests go straight into the service's in-process app.

    Streams, redirects, cookies, auth and the like, and every request when the service runs
    elsewhere, go through httpx as usual (``_EndpointTransport``).
    """

    def __init__(self, endpoints: Endpoints, service_type: str, **kwargs: Any):
        super().__init__(transport=_EndpointTransport(endpoints, service_type), **kwargs)
        self._endpoints = endpoints
        self._service_type = service_type
        self._target = inprocess.InProcessTarget(self.base_url)

    async def request(self, method: str, url: Any, *, content: Any = None, json: Any = None,
                      params: Any = None, headers: Any = None, **kwargs: Any) -> httpx.Response:
        headers = _with_request_id(headers)
        app = self._endpoints.apps.get(self._service_type)
        if app is not None and not any(value is not None and value is not httpx.USE_CLIENT_DEFAULT
                                       for value in kwargs.values()):
            plain = self._target.plain_url(url, params)
            body = inprocess.encode_body(json, content)
            if plain is not None and body is not None:
                return await inprocess.call_app(app, self._target, method.upper(), *plain, self.headers, headers,
                                                *body)
        return await super().request(method, url, content=content, json=json, params=params, headers=headers,
                                     **kwargs)


def _with_request_id(headers: Any) -> Any:
    """``headers`` plus the ``X-OpenStack-Request-ID`` of the work in hand (the global id, else the local
    one), unless the caller set one."""
    value = request_ids.outgoing_header()
    if value is None:
        return headers
    if headers is None:
        return {request_ids.HEADER: value}
    merged = httpx.Headers(headers)
    merged.setdefault(request_ids.HEADER, value)
    return merged


class _EndpointTransport(httpx.AsyncBaseTransport):
    """Sends into the service's in-process app when there is one, else over the network.

    Decided per request, so clients can be built while the process is still
    assembling its services.
    """

    def __init__(self, endpoints: Endpoints, service_type: str):
        self._endpoints = endpoints
        self._service_type = service_type
        self._asgi: httpx.ASGITransport | None = None
        self._network: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        app = self._endpoints.apps.get(self._service_type)
        if app is not None:
            if self._asgi is None:
                self._asgi = httpx.ASGITransport(app=app)
            return await self._asgi.handle_async_request(request)
        if self._network is None:
            self._network = httpx.AsyncHTTPTransport(
                # Drop idle connections before the server does (uvicorn's default is 5 s; Kilonova's own
                # servers wait 75 s): reusing a connection the server is closing fails with "Server
                # disconnected".
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=3.0))
        return await self._network.handle_async_request(request)

    async def aclose(self) -> None:
        if self._network is not None:
            await self._network.aclose()


def _retry_after(response: httpx.Response) -> float:
    """Seconds ``Retry-After`` asks for, between 0.1 and 5 (1 when it is missing or a date)."""
    try:
        return min(5.0, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


# How long a service keeps trying to log in while identity answers 429 or 503.
LOGIN_BUSY_PATIENCE = 60.0


class ServiceAuth:
    """Holds a project-scoped token for the service user, shared by all clients of a process."""

    def __init__(self, identity: httpx.AsyncClient, username: str, password: str, project_name: str,
                 domain: str = "default"):
        self._identity = identity
        self._body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "password": password, "domain": {"id": domain}}}},
            "scope": {"project": {"name": project_name, "domain": {"id": domain}}},
        }}
        self._token: str | None = None
        self.project_id: str | None = None  # the project the token is scoped to, once logged in
        self._lock = asyncio.Lock()

    async def token(self, refresh: bool = False) -> str:
        async with self._lock:
            if self._token is None or refresh:
                response = await self._login()
                if response.status_code != 201:
                    raise RuntimeError(f"service user could not authenticate: {response.status_code} {response.text}")
                self._token = response.headers["X-Subject-Token"]
                self.project_id = ((response.json().get("token") or {}).get("project") or {}).get("id")
            return self._token


    async def _login(self) -> httpx.Response:
        """One login, tried again while identity answers it is busy (503) or limits this address (429, which
        wrong passwords sent by someone else from the same address can bring about)."""
        deadline = time.monotonic() + LOGIN_BUSY_PATIENCE
        while True:
            response = await self._identity.post("/v3/auth/tokens", json=self._body)
            if response.status_code not in (429, 503) or time.monotonic() >= deadline:
                return response
            await asyncio.sleep(_retry_after(response))


class ServiceClient:
    """A JSON client to one service, authenticated as the service user."""

    def __init__(self, http: httpx.AsyncClient, auth: ServiceAuth, default_headers: dict[str, str] | None = None):
        self.http = http
        self.auth = auth
        self.default_headers = default_headers or {}

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      **kwargs: Any) -> httpx.Response:
        merged = {**self.default_headers, **(headers or {})}
        merged["X-Auth-Token"] = await self.auth.token()
        response = await self.http.request(method, path, headers=merged, **kwargs)
        if response.status_code == 401:
            merged["X-Auth-Token"] = await self.auth.token(refresh=True)
            response = await self.http.request(method, path, headers=merged, **kwargs)
        return response

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)
