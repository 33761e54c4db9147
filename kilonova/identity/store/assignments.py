"""The assignments table: roles granted to users on projects, domains and the system."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import NotFound
from kilonova.identity.models import Assignment, Role

SYSTEM_ID = "all"


def direct_role_ids(session: Session, user_id: str, target_type: str, target_id: str) -> set[str]:
    query = sa.select(Assignment.role_id).where(Assignment.actor_id == user_id,
                                                Assignment.target_type == target_type,
                                                Assignment.target_id == target_id)
    return set(session.scalars(query))


def exists(session: Session, user_id: str, target_type: str, target_id: str, role_id: str) -> bool:
    return session.get(Assignment, (target_type, target_id, user_id, role_id)) is not None


def grant(session: Session, user_id: str, target_type: str, target_id: str, role_id: str) -> None:
    if not exists(session, user_id, target_type, target_id, role_id):
        session.add(Assignment(target_type=target_type, target_id=target_id, actor_id=user_id, role_id=role_id))
        session.flush()


def revoke(session: Session, user_id: str, target_type: str, target_id: str, role_id: str) -> None:
    assignment = session.get(Assignment, (target_type, target_id, user_id, role_id))
    if assignment is None:
        raise missing(user_id, target_id, role_id)
    session.delete(assignment)


def missing(user_id: str, target_id: str, role_id: str) -> NotFound:
    return NotFound(f"Could not find role assignment with role: {role_id}, user or group: {user_id}, "
                    f"project, domain, or system: {target_id}.")


def roles_of(session: Session, user_id: str, target_type: str, target_id: str) -> list[Role]:
    query = (sa.select(Role).join(Assignment, Assignment.role_id == Role.id)
             .where(Assignment.actor_id == user_id, Assignment.target_type == target_type,
                    Assignment.target_id == target_id).order_by(Role.name))
    return list(session.scalars(query))


def target_ids(session: Session, user_id: str, target_type: str) -> set[str]:
    query = sa.select(Assignment.target_id).where(Assignment.actor_id == user_id,
                                                  Assignment.target_type == target_type)
    return set(session.scalars(query))


def list_assignments(session: Session, *, user_id: str | None = None, target_type: str | None = None,
                     target_id: str | None = None) -> list[Assignment]:
    query = sa.select(Assignment).order_by(Assignment.actor_id, Assignment.target_type, Assignment.target_id)
    if user_id is not None:
        query = query.where(Assignment.actor_id == user_id)
    if target_type is not None:
        query = query.where(Assignment.target_type == target_type)
    if target_id is not None:
        query = query.where(Assignment.target_id == target_id)
    return list(session.scalars(query))
