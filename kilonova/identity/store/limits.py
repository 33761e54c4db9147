"""Keystone's unified limits: registered limits (a service's defaults) and project or domain limits.

Keystone's checks, in its order: every id the request names must exist (400), a limit is unique for its
(project or domain, service, region, resource) and a registered limit for its (service, region, resource)
(409), a limit needs the registered limit it overrides (403), and a registered limit that limits refer to
can be neither changed nor deleted (403).
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.identity.models import CatalogService, Domain, Project, ProjectLimit, Region, RegisteredLimit
from kilonova.identity.store import Invalid, NotAllowed, new_id

_REFERENCES = (("service_id", CatalogService), ("region_id", Region), ("project_id", Project),
               ("domain_id", Domain))


def _check_references(session: Session, values: dict[str, Any], target: str) -> None:
    """Keystone's ValidationError (400) for an id that names nothing."""
    for field, model in _REFERENCES:
        if values.get(field) is not None and session.get(model, values[field]) is None:
            raise Invalid(f"Expecting to find {field} in {target}. The server could not comply with the request "
                          "since it is either malformed or otherwise incorrect. The client is assumed to be in error.")


def _duplicate(kind: str) -> Conflict:
    return Conflict(f"Conflict occurred attempting to store {kind} - Duplicate entry.")


# -- registered limits --------------------------------------------------------------------------

def _registered(session: Session, service_id: str, region_id: str | None, resource_name: str):
    return session.scalar(sa.select(RegisteredLimit).where(
        RegisteredLimit.service_id == service_id, RegisteredLimit.region_id.is_(None) if region_id is None
        else RegisteredLimit.region_id == region_id, RegisteredLimit.resource_name == resource_name))


def create_registered_limits(session: Session, items: list[dict[str, Any]]) -> list[RegisteredLimit]:
    for values in items:
        _check_references(session, values, "registered_limit")
    created = []
    for values in items:
        if _registered(session, values["service_id"], values.get("region_id"), values["resource_name"]):
            raise _duplicate("registered_limit")
        row = RegisteredLimit(id=new_id(), service_id=values["service_id"], region_id=values.get("region_id"),
                              resource_name=values["resource_name"], default_limit=values["default_limit"],
                              description=values.get("description"))
        session.add(row)
        session.flush()  # the next item of the same request sees it (a repeat in one body is a duplicate too)
        created.append(row)
    return created


def list_registered_limits(session: Session, filters: dict[str, str]) -> list[RegisteredLimit]:
    query = sa.select(RegisteredLimit).order_by(RegisteredLimit.internal_id)
    for field, value in filters.items():
        query = query.where(getattr(RegisteredLimit, field) == value)
    return list(session.scalars(query))


def get_registered_limit(session: Session, registered_limit_id: str) -> RegisteredLimit:
    row = session.scalar(sa.select(RegisteredLimit).where(RegisteredLimit.id == registered_limit_id))
    if row is None:
        raise NotFound(f"Could not find registered limit for {registered_limit_id}.")
    return row


def _check_unreferenced(session: Session, row: RegisteredLimit) -> None:
    if session.scalar(sa.select(ProjectLimit.id).where(ProjectLimit.registered_limit_id == row.id).limit(1)):
        raise NotAllowed(f"Unable to update or delete registered limit {row.id} because there are project "
                         "limits associated with it.")


def update_registered_limit(session: Session, registered_limit_id: str, values: dict[str, Any]) -> RegisteredLimit:
    _check_references(session, values, "registered_limit")
    row = get_registered_limit(session, registered_limit_id)
    _check_unreferenced(session, row)
    merged = {"service_id": row.service_id, "region_id": row.region_id, "resource_name": row.resource_name, **values}
    if any(values.get(k) for k in ("service_id", "region_id", "resource_name")):
        other = _registered(session, merged["service_id"], merged["region_id"], merged["resource_name"])
        if other is not None and other.id != row.id:
            raise _duplicate("registered_limit")
    for field, value in values.items():
        setattr(row, field, value)
    session.flush()
    return row


def delete_registered_limit(session: Session, registered_limit_id: str) -> None:
    row = get_registered_limit(session, registered_limit_id)
    _check_unreferenced(session, row)
    session.delete(row)


# -- limits -------------------------------------------------------------------------------------

def as_dict(limit: ProjectLimit, registered: RegisteredLimit) -> dict[str, Any]:
    """A limit with the service, region and resource of the registered limit it overrides."""
    return {"id": limit.id, "project_id": limit.project_id, "domain_id": limit.domain_id,
            "service_id": registered.service_id, "region_id": registered.region_id,
            "resource_name": registered.resource_name, "resource_limit": limit.resource_limit,
            "description": limit.description}


def create_limits(session: Session, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for values in items:
        _check_references(session, values, "limit")
    created = []
    for values in items:
        if _matching_limits(session, values):
            raise _duplicate("limit")
        registered = _registered(session, values["service_id"], values.get("region_id"), values["resource_name"])
        if registered is None:
            raise NotAllowed("Unable to create a limit that has no corresponding registered limit.")
        row = ProjectLimit(id=new_id(), project_id=values.get("project_id"), domain_id=values.get("domain_id"),
                           registered_limit_id=registered.id, resource_limit=values["resource_limit"],
                           description=values.get("description"))
        session.add(row)
        session.flush()
        created.append(as_dict(row, registered))
    return created


def _joined():
    return sa.select(ProjectLimit, RegisteredLimit).join(
        RegisteredLimit, RegisteredLimit.id == ProjectLimit.registered_limit_id).order_by(ProjectLimit.internal_id)


def _matching_limits(session: Session, values: dict[str, Any]) -> list:
    owner = (ProjectLimit.project_id == values["project_id"]) if values.get("project_id") is not None \
        else (ProjectLimit.domain_id == values.get("domain_id"))
    region = values.get("region_id")
    return list(session.execute(_joined().where(
        owner, RegisteredLimit.service_id == values["service_id"],
        RegisteredLimit.region_id.is_(None) if region is None else RegisteredLimit.region_id == region,
        RegisteredLimit.resource_name == values["resource_name"])))


_LIMIT_FILTERS = {"service_id": RegisteredLimit.service_id, "region_id": RegisteredLimit.region_id,
                  "resource_name": RegisteredLimit.resource_name, "project_id": ProjectLimit.project_id,
                  "domain_id": ProjectLimit.domain_id}


def list_limits(session: Session, filters: dict[str, str]) -> list[dict[str, Any]]:
    query = _joined()
    for field, value in filters.items():
        query = query.where(_LIMIT_FILTERS[field] == value)
    return [as_dict(limit, registered) for limit, registered in session.execute(query)]


def _limit_row(session: Session, limit_id: str) -> tuple[ProjectLimit, RegisteredLimit]:
    found = session.execute(_joined().where(ProjectLimit.id == limit_id)).first()
    if found is None:
        raise NotFound(f"Could not find limit for {limit_id}.")
    return found[0], found[1]


def get_limit(session: Session, limit_id: str) -> dict[str, Any]:
    return as_dict(*_limit_row(session, limit_id))


def update_limit(session: Session, limit_id: str, values: dict[str, Any]) -> dict[str, Any]:
    limit, registered = _limit_row(session, limit_id)
    for field in ("resource_limit", "description"):
        if field in values:
            setattr(limit, field, values[field])
    session.flush()
    return as_dict(limit, registered)


def delete_for_project(session: Session, project_id: str) -> None:
    session.execute(sa.delete(ProjectLimit).where(ProjectLimit.project_id == project_id))


def delete_limit(session: Session, limit_id: str) -> None:
    limit, _ = _limit_row(session, limit_id)
    session.delete(limit)
