"""Token validation for the services that are not the identity service.

The role keystonemiddleware plays upstream: each request's ``X-Auth-Token`` is
validated by asking the identity service (``GET /v3/auth/tokens``, the token
validating itself), the answer is cached for ``[keystone_authtoken]
token_cache_time`` seconds, and the handler receives a ``RequestContext`` on
``request.state.context``. Handlers marked with ``@public`` skip it.
"""
from __future__ import annotations

import time
from typing import Awaitable, Callable

import httpx
from starlette.requests import Request

from kilonova.common.context import RequestContext
from kilonova.common.http import Handler, HTTPError


def public(handler: Handler) -> Handler:
    """Mark a handler (version documents, root) as reachable without a token."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


class TokenValidator:
    def __init__(self, identity: "httpx.AsyncClient", cache_seconds: float = 30.0, max_entries: int = 10000):
        self._identity = identity
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, dict]] = {}

    async def validate(self, token: str) -> dict:
        """The token document, or an ``HTTPError(401)`` when the token is not valid."""
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached and cached[0] > now:
            return cached[1]
        try:
            response = await self._identity.get(
                "/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token})
        except httpx.HTTPError:
            raise HTTPError(503, "The identity service is not reachable to validate the token.") from None
        if response.status_code in (401, 403, 404):
            self._cache.pop(token, None)
            raise HTTPError(401, "The request you have made requires authentication.",
                            headers={"WWW-Authenticate": "Keystone uri=\"\""})
        if response.status_code != 200:
            raise HTTPError(503, f"The identity service answered {response.status_code} validating the token.")
        body = response.json()
        expires = _expiry_epoch(body["token"].get("expires_at"))
        ttl = min(self._cache_seconds, max(0.0, expires - time.time())) if expires else self._cache_seconds
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[token] = (now + ttl, body)
        return body

    def forget(self, token: str) -> None:
        self._cache.pop(token, None)


def _expiry_epoch(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def request_token(request: Request) -> str:
    """The request's ``X-Auth-Token``, or a 401 when there is none or it cannot be a token."""
    token = request.headers.get("x-auth-token")
    # A token is printable ASCII (Fernet's base64): anything else cannot be one, nor be sent on to identity.
    if not token or not (token.isascii() and token.isprintable()):
        raise HTTPError(401, "The request you have made requires authentication.",
                        headers={"WWW-Authenticate": "Keystone uri=\"\""})
    return token


def make_auth_hook(validator: TokenValidator,
                   extra: Callable[[Request, Handler], Awaitable[None]] | None = None
                   ) -> Callable[[Request, Handler], Awaitable[None]]:
    """A ``ServiceApp.before`` hook that authenticates every non-public request."""

    async def before(request: Request, handler: Handler) -> None:
        if not getattr(handler, "public", False):
            token = request_token(request)
            body = await validator.validate(token)
            request.state.context = RequestContext.from_token(body, token, request.state.request_id)
        if extra is not None:
            await extra(request, handler)

    return before
