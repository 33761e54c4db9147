"""The users table (passwords are stored hashed; see ``passwords``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.identity.models import Assignment, User
from kilonova.identity.store import check_immutable, domains, new_id

FIELDS = ("name", "enabled", "default_project_id", "extra")


def get(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"Could not find user: {user_id}.")
    return user


def find_by_name(session: Session, name: str, domain_id: str) -> User | None:
    return session.scalar(sa.select(User).where(User.name == name, User.domain_id == domain_id))


def list_users(session: Session, *, name: str | None = None, domain_id: str | None = None,
               enabled: bool | None = None) -> list[User]:
    query = sa.select(User).order_by(User.name)
    if name is not None:
        query = query.where(User.name == name)
    if domain_id is not None:
        query = query.where(User.domain_id == domain_id)
    if enabled is not None:
        query = query.where(User.enabled.is_(enabled))
    return list(session.scalars(query))


def _check_name(session: Session, name: str, domain_id: str, user_id: str | None) -> None:
    existing = find_by_name(session, name, domain_id)
    if existing is not None and existing.id != user_id:
        raise Conflict("Conflict occurred attempting to store user - Duplicate entry found with name "
                       f"{name} at domain ID {domain_id}.")


def create(session: Session, values: dict[str, Any], password_hash: str | None,
           user_id: str | None = None) -> User:
    domains.get(session, values["domain_id"])
    _check_name(session, values["name"], values["domain_id"], None)
    user = User(id=user_id or new_id(), name=values["name"], domain_id=values["domain_id"],
                enabled=values.get("enabled", True), password_hash=password_hash,
                default_project_id=values.get("default_project_id"), extra=values.get("extra", {}))
    session.add(user)
    session.flush()
    return user


def update(session: Session, user_id: str, values: dict[str, Any]) -> User:
    user = get(session, user_id)
    check_immutable("user", user, values, ("id", "domain_id"))
    if "name" in values:
        _check_name(session, values["name"], user.domain_id, user_id)
    for key in FIELDS:
        if key in values:
            setattr(user, key, values[key])
    if "password_hash" in values:
        user.password_hash = values["password_hash"]
    if values.get("enabled") is True:
        _clear_failures(user)   # as Keystone: enabling a user is how an admin unlocks it
    session.flush()
    return user


def _clear_failures(user: User) -> None:
    user.failed_auth_count = 0
    user.failed_auth_at = None


def record_failed_login(session: Session, user_id: str, at: datetime, restart: bool) -> None:
    """One more wrong password for the user (``restart``: its lock ran out, count from zero again)."""
    count = 1 if restart else User.failed_auth_count + 1
    session.execute(sa.update(User).where(User.id == user_id).values(failed_auth_count=count, failed_auth_at=at))


def clear_failed_logins(session: Session, user_id: str) -> None:
    session.execute(sa.update(User).where(User.id == user_id).values(failed_auth_count=0, failed_auth_at=None))


def replace_password_hash(session: Session, user_id: str, old_hash: str | None, new_hash: str) -> None:
    """The same password hashed anew, unless it was changed meanwhile."""
    session.execute(sa.update(User).where(User.id == user_id, User.password_hash == old_hash)
                    .values(password_hash=new_hash))


def delete(session: Session, user_id: str) -> None:
    user = get(session, user_id)
    session.execute(sa.delete(Assignment).where(Assignment.actor_id == user_id))
    session.delete(user)
