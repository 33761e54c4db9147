"""The key_pairs table (API database): each user's named public keys."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.compute.db.api_models import KeyPair


class MarkerNotFound(NotFound):
    pass


def get(session: Session, user_id: str, name: str) -> KeyPair:
    keypair = session.scalar(sa.select(KeyPair).where(KeyPair.user_id == user_id, KeyPair.name == name))
    if keypair is None:
        raise NotFound(f"Keypair {name} not found for user {user_id}")
    return keypair


def create(session: Session, values: dict[str, Any]) -> KeyPair:
    """values: user_id, name, public_key, fingerprint, type. Conflict when the user has that name already."""
    taken = session.scalar(sa.select(KeyPair.id).where(KeyPair.user_id == values["user_id"],
                                                       KeyPair.name == values["name"]))
    if taken is not None:
        raise Conflict(f"Key pair '{values['name']}' already exists.")
    keypair = KeyPair(**values)
    session.add(keypair)
    session.flush()
    return keypair


def list_for_user(session: Session, user_id: str, *, limit: int | None = None,
                  marker: str | None = None) -> list[KeyPair]:
    """A user's keypairs by name; ``marker`` is the name after which to start."""
    stmt = sa.select(KeyPair).where(KeyPair.user_id == user_id)
    if marker is not None:
        if session.scalar(stmt.where(KeyPair.name == marker)) is None:
            raise MarkerNotFound(f"Marker {marker} could not be found.")
        stmt = stmt.where(KeyPair.name > marker)
    stmt = stmt.order_by(KeyPair.name.asc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def count(session: Session, user_id: str) -> int:
    return session.scalar(sa.select(sa.func.count(KeyPair.id)).where(KeyPair.user_id == user_id)) or 0


def delete(session: Session, user_id: str, name: str) -> None:
    session.delete(get(session, user_id, name))
    session.flush()
