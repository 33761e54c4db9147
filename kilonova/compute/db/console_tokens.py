"""The console_auth_tokens table (API database): who may open which guest's console, once.

The token itself is handed to the user inside the console URL and never
stored: rows keep its SHA-256, so a copy of the database opens no console.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.compute.db.api_models import ConsoleAuthToken, InstanceMapping


@dataclass(frozen=True)
class Target:
    """Where a valid token leads: the guest's console server."""
    instance_uuid: str
    console_type: str
    host: str
    port: int


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def create(session: Session, token: str, *, instance_uuid: str, console_type: str, host: str, port: int,
           ttl: int, now: float | None = None) -> None:
    """Record ``token`` for ``ttl`` seconds; rows that expired are dropped on the way."""
    now = time.time() if now is None else now
    session.execute(sa.delete(ConsoleAuthToken).where(ConsoleAuthToken.expires < int(now)))
    session.add(ConsoleAuthToken(token_hash=hash_token(token), instance_uuid=instance_uuid, console_type=console_type,
                                 host=host, port=port, expires=int(now + ttl)))
    session.flush()


def _valid(token: str, now: float):
    # A deleted server's guest is gone and its VNC port may come to another guest: its tokens die with it.
    server_exists = sa.exists().where(InstanceMapping.instance_uuid == ConsoleAuthToken.instance_uuid,
                                      InstanceMapping.queued_for_delete.is_(False))
    return (ConsoleAuthToken.token_hash == hash_token(token), ConsoleAuthToken.expires > now,
            ConsoleAuthToken.used_at.is_(None), server_exists)


def peek(session: Session, token: str, now: float | None = None) -> Target | None:
    """The target of a token that could still be used, without using it."""
    now = time.time() if now is None else now
    row = session.scalar(sa.select(ConsoleAuthToken).where(*_valid(token, now)))
    return _target(row) if row is not None else None


def consume(session: Session, token: str, now: float | None = None) -> Target | None:
    """Use the token: its target, or None when it is unknown, expired or already used.

    The conditional UPDATE is what makes it one-time: of two concurrent
    connections with the same token, only one changes the row.
    """
    now = time.time() if now is None else now
    result = session.execute(sa.update(ConsoleAuthToken).where(*_valid(token, now))
                             .values(used_at=datetime.utcfromtimestamp(int(now))))
    if result.rowcount != 1:
        return None
    row = session.scalar(sa.select(ConsoleAuthToken).where(ConsoleAuthToken.token_hash == hash_token(token)))
    return _target(row)


def delete_for_instance(session: Session, instance_uuid: str) -> int:
    """Forget every token of a server (it was deleted or moved)."""
    return session.execute(sa.delete(ConsoleAuthToken).where(ConsoleAuthToken.instance_uuid == instance_uuid)).rowcount


def _target(row: ConsoleAuthToken) -> Target:
    return Target(instance_uuid=row.instance_uuid, console_type=row.console_type, host=row.host, port=row.port)
