"""Token revocation: events in the database, and an in-memory view of them for fast checks.

An event names an audit id (one token and nothing else), a user or a project;
a token is revoked when an event matches it and the token was issued at or
before the event. Events older than the longest token lifetime can match no
live token and are pruned.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.identity.models import RevocationEvent
from kilonova.identity.tokens import Payload


def record(session: Session, *, audit_id: str | None = None, user_id: str | None = None,
           project_id: str | None = None) -> None:
    session.add(RevocationEvent(audit_id=audit_id, user_id=user_id, project_id=project_id,
                                revoked_at=time.time()))


def prune(session: Session, older_than: float) -> None:
    session.execute(sa.delete(RevocationEvent).where(RevocationEvent.revoked_at < older_than))


@dataclass
class _Snapshot:
    audit_ids: set[str] = field(default_factory=set)
    users: dict[str, float] = field(default_factory=dict)
    projects: dict[str, float] = field(default_factory=dict)
    loaded_at: float = 0.0


def _load(session: Session) -> _Snapshot:
    snapshot = _Snapshot(loaded_at=time.monotonic())
    for event in session.scalars(sa.select(RevocationEvent)):
        if event.audit_id:
            snapshot.audit_ids.add(event.audit_id)
        if event.user_id:
            snapshot.users[event.user_id] = max(event.revoked_at, snapshot.users.get(event.user_id, 0.0))
        if event.project_id:
            snapshot.projects[event.project_id] = max(event.revoked_at,
                                                      snapshot.projects.get(event.project_id, 0.0))
    return snapshot


class RevocationList:
    """The events, cached; ``invalidate()`` after every write, and refreshed every ``max_age`` seconds
    so that other identity processes sharing the database see each other's revocations."""

    def __init__(self, max_age: float = 2.0):
        self._max_age = max_age
        self._snapshot: _Snapshot | None = None
        self._generation = 0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Call after a revoking transaction has committed."""
        with self._lock:
            self._generation += 1
            self._snapshot = None

    def is_revoked(self, session: Session, payload: Payload) -> bool:
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - snapshot.loaded_at > self._max_age:
            generation = self._generation
            snapshot = _load(session)
            with self._lock:
                if generation == self._generation:  # no write committed while we were reading
                    self._snapshot = snapshot
        if any(audit_id in snapshot.audit_ids for audit_id in payload.audit_ids[:1]):
            return True
        if payload.issued_at <= snapshot.users.get(payload.user_id, -1.0):
            return True
        project_id = payload.project_id
        return project_id is not None and payload.issued_at <= snapshot.projects.get(project_id, -1.0)
