"""The token document (``{"token": {...}}``) built from a token's payload and the current database.

Roles are computed when a token is validated, as Keystone does: a grant
removed after issue takes effect at once, and a scoped token whose user no
longer has any role on its scope is no longer valid.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.identity.models import CatalogService, Domain, Endpoint, Project, Role, User
from kilonova.identity.revocation import RevocationList
from kilonova.identity.store import assignments, roles
from kilonova.identity.tokens import Payload, isotime


class TokenInvalid(Exception):
    """The payload was sealed by us but no longer stands (revoked, user disabled, no roles...)."""


def _domain_ref(session: Session, domain_id: str) -> dict[str, str]:
    domain = session.get(Domain, domain_id)
    if domain is None or not domain.enabled:
        raise TokenInvalid(f"domain {domain_id} is disabled or gone")
    return {"id": domain.id, "name": domain.name}


def _substituted(url: str, project_id: str | None) -> str | None:
    """As Keystone: ``$(project_id)s`` / ``$(tenant_id)s`` in an endpoint URL become the token's project;
    without a project such an endpoint is left out of the catalog."""
    if "$(" not in url:
        return url
    if project_id is None:
        return None
    return url.replace("$(project_id)s", project_id).replace("$(tenant_id)s", project_id)


def catalog(session: Session, project_id: str | None = None) -> list[dict[str, Any]]:
    endpoints: dict[str, list[dict[str, Any]]] = {}
    for endpoint in session.scalars(sa.select(Endpoint).where(Endpoint.enabled.is_(True)).order_by(Endpoint.id)):
        url = _substituted(endpoint.url, project_id)
        if url is None:
            continue
        endpoints.setdefault(endpoint.service_id, []).append({
            "id": endpoint.id, "interface": endpoint.interface, "region_id": endpoint.region_id,
            "url": url, "region": endpoint.region_id})
    services = session.scalars(sa.select(CatalogService).where(CatalogService.enabled.is_(True))
                               .order_by(CatalogService.type))
    return [{"endpoints": endpoints.get(service.id, []), "id": service.id, "type": service.type,
             "name": service.name or ""} for service in services]


def _role_refs(session: Session, role_ids: set[str]) -> list[dict[str, str]]:
    effective = roles.expand(role_ids, roles.inference_rules(session))
    found = session.scalars(sa.select(Role).where(Role.id.in_(effective)).order_by(Role.name))
    return [{"id": role.id, "name": role.name} for role in found]


def _scope(session: Session, payload: Payload, body: dict[str, Any]) -> set[str]:
    """Add the scope to ``body``; the user's direct role ids on it."""
    if payload.scope_type == "project":
        project = session.get(Project, payload.scope_id)
        if project is None or not project.enabled:
            raise TokenInvalid(f"project {payload.scope_id} is disabled or gone")
        body["project"] = {"id": project.id, "name": project.name,
                           "domain": _domain_ref(session, project.domain_id)}
        body["is_domain"] = False
    elif payload.scope_type == "domain":
        body["domain"] = _domain_ref(session, payload.scope_id)
    elif payload.scope_type == "system":
        body["system"] = {"all": True}
    else:
        return set()
    return assignments.direct_role_ids(session, payload.user_id, payload.scope_type, payload.scope_id)


def build(session: Session, payload: Payload, revocations: RevocationList, *,
          include_catalog: bool = True) -> dict[str, Any]:
    """``{"token": {...}}`` for a valid token, else ``TokenInvalid``."""
    if revocations.is_revoked(session, payload):
        raise TokenInvalid("token has been revoked")
    user = session.get(User, payload.user_id)
    if user is None or not user.enabled:
        raise TokenInvalid(f"user {payload.user_id} is disabled or gone")
    body: dict[str, Any] = {
        "methods": list(payload.methods),
        "user": {"domain": _domain_ref(session, user.domain_id), "id": user.id, "name": user.name,
                 "password_expires_at": None},
        "audit_ids": list(payload.audit_ids),
        "expires_at": isotime(payload.expires_at),
        "issued_at": isotime(payload.issued_at),
    }
    role_ids = _scope(session, payload, body)
    if payload.scope_type is not None:
        if not role_ids:
            raise TokenInvalid(f"user {user.id} has no role on {payload.scope_type} {payload.scope_id}")
        body["roles"] = _role_refs(session, role_ids)
        if include_catalog:
            body["catalog"] = catalog(session, payload.scope_id if payload.scope_type == "project" else None)
    return {"token": body}
