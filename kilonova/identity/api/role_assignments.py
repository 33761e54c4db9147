"""``GET /v3/role_assignments`` with Keystone's filters, ``effective`` (implied roles expanded)
and ``include_names``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request

from kilonova.common.http import Router, bad_request, json_response
from kilonova.identity.api.common import collection, enforce, present, read, url
from kilonova.identity.models import Domain, Project, User
from kilonova.identity.store import assignments, roles

PATHS = {"project": "/v3/projects/{target}", "domain": "/v3/domains/{target}", "system": "/v3/system"}


@dataclass(frozen=True)
class Entry:
    user_id: str
    target_type: str
    target_id: str
    role_id: str
    granted_role_id: str  # the role actually granted (differs from role_id for implied roles)
    prior_role_id: str | None = None


def _expand(entry: Entry, rules: dict[str, list[str]]) -> list[Entry]:
    """The entry plus one entry per role it implies, transitively, each naming its immediate prior role."""
    result = [entry]
    seen = {entry.role_id}
    pending = [entry.role_id]
    while pending:
        prior = pending.pop(0)
        for implied in rules.get(prior, []):
            if implied not in seen:
                seen.add(implied)
                pending.append(implied)
                result.append(Entry(entry.user_id, entry.target_type, entry.target_id, implied,
                                    entry.granted_role_id, prior))
    return result


def _domain_ref(session: Session, domain_id: str) -> dict[str, str]:
    domain = session.get(Domain, domain_id)
    return {"id": domain_id, "name": domain.name if domain else ""}


def _names(session: Session, entry: Entry, known_roles: dict) -> tuple[dict, dict, dict]:
    role = known_roles.get(entry.role_id)
    user = session.get(User, entry.user_id)
    role_ref = {"id": entry.role_id, "name": role.name if role else ""}
    user_ref = {"id": entry.user_id, "name": user.name if user else "",
                "domain": _domain_ref(session, user.domain_id) if user else {}}
    if entry.target_type == "project":
        project = session.get(Project, entry.target_id)
        target = {"id": entry.target_id, "name": project.name if project else "",
                  "domain": _domain_ref(session, project.domain_id) if project else {}}
    elif entry.target_type == "domain":
        target = _domain_ref(session, entry.target_id)
    else:
        target = {"all": True}
    return role_ref, user_ref, target


def _render(session: Session, entry: Entry, base: str, include_names: bool, known_roles: dict) -> dict[str, Any]:
    if include_names:
        role_ref, user_ref, target = _names(session, entry, known_roles)
    else:
        role_ref, user_ref = {"id": entry.role_id}, {"id": entry.user_id}
        target = {"all": True} if entry.target_type == "system" else {"id": entry.target_id}
    grant_path = PATHS[entry.target_type].format(target=entry.target_id)
    links = {"assignment": f"{base}{grant_path}/users/{entry.user_id}/roles/{entry.granted_role_id}"}
    if entry.prior_role_id:
        links["prior_role"] = f"{base}/v3/roles/{entry.prior_role_id}"
    return {"role": role_ref, "user": user_ref, "scope": {entry.target_type: target}, "links": links}


def query(session: Session, filters: dict[str, str | None], effective: bool, include_names: bool,
          base: str) -> list[dict[str, Any]]:
    target_type = target_id = None
    for kind in ("project", "domain"):
        if filters.get(f"scope.{kind}.id"):
            target_type, target_id = kind, filters[f"scope.{kind}.id"]
    if filters.get("scope.system"):
        target_type, target_id = "system", assignments.SYSTEM_ID
    found = assignments.list_assignments(session, user_id=filters.get("user.id"), target_type=target_type,
                                         target_id=target_id)
    entries = [Entry(a.actor_id, a.target_type, a.target_id, a.role_id, a.role_id) for a in found]
    if effective:
        rules = roles.inference_rules(session)
        expanded: dict[tuple, Entry] = {}
        for entry in entries:
            for item in _expand(entry, rules):
                expanded.setdefault((item.user_id, item.target_type, item.target_id, item.role_id), item)
        entries = list(expanded.values())
    if filters.get("role.id"):
        entries = [e for e in entries if e.role_id == filters["role.id"]]
    known_roles = roles.by_id(session)
    return [_render(session, entry, base, include_names, known_roles) for entry in entries]


async def list_assignments(request: Request):
    enforce(request, "identity:list_role_assignments")
    params = request.query_params
    if sum(1 for key in ("scope.project.id", "scope.domain.id", "scope.system") if params.get(key)) > 1:
        raise bad_request("Specify at most one of scope.project.id, scope.domain.id and scope.system.")
    if params.get("group.id"):
        return json_response(collection(request, "role_assignments", []))
    filters = {key: params.get(key) for key in ("user.id", "role.id", "scope.project.id", "scope.domain.id",
                                                 "scope.system")}
    found = await read(request, query, filters, present(request, "effective"), present(request, "include_names"),
                       url(request, ""))
    return json_response(collection(request, "role_assignments", found))


def register(router: Router) -> None:
    router.add("GET", "/v3/role_assignments", list_assignments)
