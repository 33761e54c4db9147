"""The domains table."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.identity.models import Domain, Project, User
from kilonova.identity.store import NotAllowed, check_immutable, new_id

FIELDS = ("name", "description", "enabled", "extra")


def get(session: Session, domain_id: str) -> Domain:
    domain = session.get(Domain, domain_id)
    if domain is None:
        raise NotFound(f"Could not find domain: {domain_id}.")
    return domain


def find_by_name(session: Session, name: str) -> Domain | None:
    return session.scalar(sa.select(Domain).where(Domain.name == name))


def list_domains(session: Session, name: str | None = None, enabled: bool | None = None) -> list[Domain]:
    query = sa.select(Domain).order_by(Domain.name)
    if name is not None:
        query = query.where(Domain.name == name)
    if enabled is not None:
        query = query.where(Domain.enabled.is_(enabled))
    return list(session.scalars(query))


def _check_name(session: Session, name: str, domain_id: str | None) -> None:
    existing = find_by_name(session, name)
    if existing is not None and existing.id != domain_id:
        raise Conflict(f"Conflict occurred attempting to store domain - Duplicate entry found with name {name}.")


def create(session: Session, values: dict[str, Any], domain_id: str | None = None) -> Domain:
    _check_name(session, values["name"], None)
    domain = Domain(id=domain_id or new_id(), name=values["name"], description=values.get("description"),
                    enabled=values.get("enabled", True), extra=values.get("extra", {}))
    session.add(domain)
    session.flush()
    return domain


def update(session: Session, domain_id: str, values: dict[str, Any]) -> Domain:
    domain = get(session, domain_id)
    check_immutable("domain", domain, values, ("id",))
    if "name" in values:
        _check_name(session, values["name"], domain_id)
    for key in FIELDS:
        if key in values:
            setattr(domain, key, values[key])
    session.flush()
    return domain


def delete(session: Session, domain_id: str) -> None:
    domain = get(session, domain_id)
    if domain.enabled:
        raise NotAllowed("Cannot delete a domain that is enabled, please disable it first.")
    in_use = session.scalar(sa.select(sa.func.count()).select_from(Project).where(Project.domain_id == domain_id))
    in_use = in_use or session.scalar(sa.select(sa.func.count()).select_from(User).where(User.domain_id == domain_id))
    if in_use:
        raise Conflict(f"Cannot delete domain {domain_id}: it still owns projects or users.")
    session.delete(domain)


def get_or_none(session: Session, domain_id: str) -> Domain | None:
    return session.get(Domain, domain_id)
