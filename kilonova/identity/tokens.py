"""Fernet tokens: what a token carries and how it is sealed.

A token is a Fernet ciphertext of a compact JSON list::

    [1, user_id, methods, scope_type, scope_id, issued_at, expires_at, audit_ids]

``scope_type`` is "project", "domain", "system" or null (unscoped). Times are
epoch seconds with sub-second precision, so revocation events compare exactly.
Nothing in the token can be changed without the keys (Fernet authenticates it).
"""
from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from cryptography.fernet import InvalidToken, MultiFernet

VERSION = 1


class TokenError(Exception):
    """The token is garbled, forged, expired or of an unknown version."""


def new_audit_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def isotime(epoch: float) -> str:
    """Keystone's token time format: whole seconds, ``.000000Z``."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


@dataclass(frozen=True)
class Payload:
    user_id: str
    methods: list[str]
    scope_type: str | None = None
    scope_id: str | None = None
    issued_at: float = 0.0
    expires_at: float = 0.0
    audit_ids: list[str] = field(default_factory=list)

    @property
    def audit_id(self) -> str:
        return self.audit_ids[0]

    @property
    def project_id(self) -> str | None:
        return self.scope_id if self.scope_type == "project" else None

    def rescoped(self, scope_type: str | None, scope_id: str | None, methods: list[str]) -> "Payload":
        """A new token from this one (the ``token`` method): same expiry, chained audit ids."""
        return replace(self, scope_type=scope_type, scope_id=scope_id, methods=methods,
                       issued_at=time.time(), audit_ids=[new_audit_id(), self.audit_ids[-1]])


def new_payload(user_id: str, methods: list[str], scope_type: str | None, scope_id: str | None,
                lifetime: float) -> Payload:
    now = time.time()
    return Payload(user_id, methods, scope_type, scope_id, now, now + lifetime, [new_audit_id()])


class TokenFormatter:
    def __init__(self, fernet: MultiFernet):
        self._fernet = fernet

    def seal(self, payload: Payload) -> str:
        raw = json.dumps([VERSION, payload.user_id, payload.methods, payload.scope_type, payload.scope_id,
                          payload.issued_at, payload.expires_at, payload.audit_ids], separators=(",", ":"))
        return self._fernet.encrypt(raw.encode("utf-8")).decode("ascii").rstrip("=")

    def open(self, token: str, *, now: float | None = None) -> Payload:
        """The payload of a valid, unexpired token, or ``TokenError``."""
        if not token or len(token) > 2048:
            raise TokenError("malformed token")
        padded = token + "=" * (-len(token) % 4)
        try:
            raw = json.loads(self._fernet.decrypt(padded.encode("ascii")))
            version, user_id, methods, scope_type, scope_id, issued_at, expires_at, audit_ids = raw
        except (InvalidToken, ValueError, TypeError, UnicodeError):
            raise TokenError("token could not be decrypted") from None
        if version != VERSION:
            raise TokenError("unknown token version")
        payload = Payload(user_id, list(methods), scope_type, scope_id, float(issued_at), float(expires_at),
                          list(audit_ids))
        if payload.expires_at <= (time.time() if now is None else now):
            raise TokenError("token has expired")
        return payload
