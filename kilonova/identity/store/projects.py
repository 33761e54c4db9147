"""The projects table."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.identity.models import Assignment, Project
from kilonova.identity.store import check_immutable, domains, limits, new_id

FIELDS = ("name", "description", "enabled", "tags", "extra")


def get(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"Could not find project: {project_id}.")
    return project


def find_by_name(session: Session, name: str, domain_id: str) -> Project | None:
    return session.scalar(sa.select(Project).where(Project.name == name, Project.domain_id == domain_id))


def list_projects(session: Session, *, name: str | None = None, domain_id: str | None = None,
                  enabled: bool | None = None, parent_id: str | None = None,
                  ids: list[str] | None = None) -> list[Project]:
    query = sa.select(Project).order_by(Project.name)
    if name is not None:
        query = query.where(Project.name == name)
    if domain_id is not None:
        query = query.where(Project.domain_id == domain_id)
    if enabled is not None:
        query = query.where(Project.enabled.is_(enabled))
    if parent_id is not None:
        query = query.where(Project.parent_id == parent_id)
    if ids is not None:
        query = query.where(Project.id.in_(ids))
    return list(session.scalars(query))


def _check_name(session: Session, name: str, domain_id: str, project_id: str | None) -> None:
    existing = find_by_name(session, name, domain_id)
    if existing is not None and existing.id != project_id:
        raise Conflict("Conflict occurred attempting to store project - it is not permitted to have two "
                       f"projects with the same name in the same domain : {name}.")


def create(session: Session, values: dict[str, Any], project_id: str | None = None) -> Project:
    domain_id = values["domain_id"]
    try:
        domains.get(session, domain_id)
    except NotFound:
        raise NotFound(f"Could not find domain: {domain_id}.") from None
    parent_id = values.get("parent_id") or domain_id
    if parent_id != domain_id:
        parent = get(session, parent_id)
        if parent.domain_id != domain_id:
            raise Conflict("Cannot create project: the parent project is in another domain.")
    _check_name(session, values["name"], domain_id, None)
    project = Project(id=project_id or new_id(), name=values["name"], domain_id=domain_id, parent_id=parent_id,
                      description=values.get("description", ""), enabled=values.get("enabled", True),
                      tags=values.get("tags", []), extra=values.get("extra", {}))
    session.add(project)
    session.flush()
    return project


def update(session: Session, project_id: str, values: dict[str, Any]) -> Project:
    project = get(session, project_id)
    check_immutable("project", project, values, ("id", "domain_id", "parent_id"))
    if "name" in values:
        _check_name(session, values["name"], project.domain_id, project_id)
    for key in FIELDS:
        if key in values:
            setattr(project, key, values[key])
    session.flush()
    return project


def delete(session: Session, project_id: str) -> None:
    project = get(session, project_id)
    children = session.scalar(sa.select(sa.func.count()).select_from(Project).where(Project.parent_id == project_id))
    if children:
        raise Conflict(f"Cannot delete project {project_id}: it has child projects.")
    session.execute(sa.delete(Assignment).where(Assignment.target_type == "project",
                                                Assignment.target_id == project_id))
    limits.delete_for_project(session, project_id)  # as Keystone: a deleted project's limits go with it
    session.delete(project)
