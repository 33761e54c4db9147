"""The roles and implied_roles tables."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.identity.models import ImpliedRole, Role
from kilonova.identity.store import check_immutable, new_id

FIELDS = ("name", "description", "extra")


def get(session: Session, role_id: str) -> Role:
    role = session.get(Role, role_id)
    if role is None:
        raise NotFound(f"Could not find role: {role_id}.")
    return role


def find_by_name(session: Session, name: str) -> Role | None:
    return session.scalar(sa.select(Role).where(Role.name == name))


def list_roles(session: Session, name: str | None = None) -> list[Role]:
    query = sa.select(Role).order_by(Role.name)
    if name is not None:
        query = query.where(Role.name == name)
    return list(session.scalars(query))


def by_id(session: Session) -> dict[str, Role]:
    return {role.id: role for role in session.scalars(sa.select(Role))}


def _check_name(session: Session, name: str, role_id: str | None) -> None:
    existing = find_by_name(session, name)
    if existing is not None and existing.id != role_id:
        raise Conflict(f"Conflict occurred attempting to store role - Duplicate entry found with name {name}.")


def create(session: Session, values: dict[str, Any]) -> Role:
    _check_name(session, values["name"], None)
    role = Role(id=new_id(), name=values["name"], domain_id=values.get("domain_id"),
                description=values.get("description"), extra=values.get("extra", {}))
    session.add(role)
    session.flush()
    return role


def update(session: Session, role_id: str, values: dict[str, Any]) -> Role:
    role = get(session, role_id)
    check_immutable("role", role, values, ("id", "domain_id"))
    if "name" in values:
        _check_name(session, values["name"], role_id)
    for key in FIELDS:
        if key in values:
            setattr(role, key, values[key])
    session.flush()
    return role


def delete(session: Session, role_id: str) -> None:
    session.delete(get(session, role_id))


# -- implied roles -----------------------------------------------------------------------------

def inference_rules(session: Session) -> dict[str, list[str]]:
    """prior role id -> ids of the roles it directly implies."""
    rules: dict[str, list[str]] = {}
    for rule in session.scalars(sa.select(ImpliedRole)):
        rules.setdefault(rule.prior_role_id, []).append(rule.implied_role_id)
    return rules


def expand(role_ids: set[str] | list[str], rules: dict[str, list[str]]) -> set[str]:
    """The roles plus everything they imply, transitively (cycles are harmless)."""
    result = set(role_ids)
    pending = list(result)
    while pending:
        for implied in rules.get(pending.pop(), []):
            if implied not in result:
                result.add(implied)
                pending.append(implied)
    return result


def get_implied(session: Session, prior_id: str, implied_id: str) -> ImpliedRole:
    get(session, prior_id)
    get(session, implied_id)
    rule = session.get(ImpliedRole, (prior_id, implied_id))
    if rule is None:
        raise NotFound(f"Could not find implied role: {prior_id} implies {implied_id}.")
    return rule


def add_implied(session: Session, prior_id: str, implied_id: str) -> tuple[Role, Role]:
    prior, implied = get(session, prior_id), get(session, implied_id)
    if prior_id == implied_id or prior_id in expand({implied_id}, inference_rules(session)):
        raise Conflict(f"Role {prior.name} cannot imply {implied.name}: the rule would create a cycle.")
    if session.get(ImpliedRole, (prior_id, implied_id)) is None:
        session.add(ImpliedRole(prior_role_id=prior_id, implied_role_id=implied_id))
        session.flush()
    return prior, implied


def remove_implied(session: Session, prior_id: str, implied_id: str) -> None:
    session.delete(get_implied(session, prior_id, implied_id))
