"""``POST /v3/auth/tokens`` request bodies: who is asking (password or token) and for what scope."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from kilonova.common.http import HTTPError, bad_request, unauthorized
from kilonova.identity import passwords
from kilonova.identity.core import IdentityCore, TokenError, TokenInvalid
from kilonova.identity.models import Domain, Project, User
from kilonova.identity.store import assignments, domains, projects, users
from kilonova.identity.tokens import Payload, new_payload
from kilonova.identity.validation import validate

_REF = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}
SCHEMA = {
    "type": "object", "required": ["auth"],
    "properties": {"auth": {
        "type": "object", "required": ["identity"],
        "properties": {
            "identity": {"type": "object", "required": ["methods"], "properties": {
                "methods": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "password": {"type": "object", "required": ["user"], "properties": {"user": {
                    "type": "object", "properties": {
                        "id": {"type": "string"}, "name": {"type": "string"},
                        "password": {"type": "string"},
                        "domain": {"type": "object", "properties": {
                            "id": {"type": "string"}, "name": {"type": "string"}}}}}}},
                "token": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}},
            "scope": {"type": ["object", "string"], "properties": {
                "project": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "domain": _REF}},
                "domain": _REF,
                "system": {"type": "object"}}},
        }}},
}
SUPPORTED_METHODS = {"password", "token"}


def _domain(session: Session, ref: dict[str, Any] | None, what: str) -> Domain | None:
    if not isinstance(ref, dict) or not (ref.get("id") or ref.get("name")):
        raise bad_request(f"Expecting to find domain in {what}. The server could not comply with the request "
                          "since it is either malformed or otherwise incorrect.")
    domain = session.get(Domain, ref["id"]) if ref.get("id") else domains.find_by_name(session, ref["name"])
    return domain if domain is not None and domain.enabled else None


def check_password(session: Session, ref: dict[str, Any], dummy_hash: str) -> str:
    """The id of the user the password method names, if the password is right; else 401."""
    if "id" not in ref and "name" not in ref:
        raise bad_request("Expecting to find id or name in user. The server could not comply with the request "
                          "since it is either malformed or otherwise incorrect.")
    if "password" not in ref:
        raise bad_request("Expecting to find password in user.")
    user: User | None
    if ref.get("id"):
        user = session.get(User, ref["id"])
    else:
        domain = _domain(session, ref.get("domain"), "user")
        user = users.find_by_name(session, ref["name"], domain.id) if domain else None
    stored = user.password_hash if user is not None else dummy_hash
    if not passwords.verify_password(ref["password"], stored) or user is None or not user.enabled:
        raise unauthorized()
    domain = session.get(Domain, user.domain_id)
    if domain is None or not domain.enabled:
        raise unauthorized()
    return user.id


def _no_access(user_id: str, kind: str, target: str) -> HTTPError:
    return unauthorized(f"User {user_id} has no access to {kind} {target}")


def resolve_scope(session: Session, user_id: str, scope: Any) -> tuple[str | None, str | None]:
    """(scope type, scope id) the user asked for, after checking the user holds a role on it."""
    if scope is None or scope == "unscoped":
        user = session.get(User, user_id)
        default = user.default_project_id if user is not None else None
        if default and assignments.direct_role_ids(session, user_id, "project", default):
            project = session.get(Project, default)
            if project is not None and project.enabled:
                return "project", default
        return None, None
    if not isinstance(scope, dict):
        raise bad_request("Invalid input for field 'auth.scope': must be an object or \"unscoped\".")
    kinds = [kind for kind in ("project", "domain", "system") if kind in scope]
    if len(kinds) != 1:
        raise bad_request("Specify a domain, project, or system scope, not multiple."
                          if kinds else "Unsupported scope: specify a project, a domain or the system.")
    ref = scope[kinds[0]]
    if kinds[0] == "system":
        if not isinstance(ref, dict) or ref.get("all") is not True:
            raise bad_request("Invalid input for field 'auth.scope.system': only {\"all\": true} is supported.")
        if not assignments.direct_role_ids(session, user_id, "system", assignments.SYSTEM_ID):
            raise _no_access(user_id, "the", "system")
        return "system", assignments.SYSTEM_ID
    if not isinstance(ref, dict) or not (ref.get("id") or ref.get("name")):
        raise bad_request(f"Expecting to find id or name in {kinds[0]}.")
    if kinds[0] == "domain":
        domain = _domain(session, ref, "scope")
        if domain is None:
            raise unauthorized(f"Could not find domain: {ref.get('id') or ref.get('name')}.")
        if not assignments.direct_role_ids(session, user_id, "domain", domain.id):
            raise _no_access(user_id, "domain", domain.id)
        return "domain", domain.id
    if ref.get("id"):
        project = session.get(Project, ref["id"])
    else:
        domain = _domain(session, ref.get("domain"), "project")
        project = projects.find_by_name(session, ref["name"], domain.id) if domain else None
    if project is None or not project.enabled:
        raise unauthorized(f"Could not find project: {ref.get('id') or ref.get('name')}.")
    if not assignments.direct_role_ids(session, user_id, "project", project.id):
        raise _no_access(user_id, "project", project.id)
    return "project", project.id


async def authenticate(identity: IdentityCore, document: Any) -> Payload:
    """The payload of the token to issue for a ``POST /v3/auth/tokens`` body, or 400/401."""
    validate(document, SCHEMA)
    auth = document["auth"]
    methods = auth["identity"]["methods"]
    if not set(methods) <= SUPPORTED_METHODS:
        raise unauthorized(f"Unsupported authentication method: {', '.join(sorted(set(methods) - SUPPORTED_METHODS))}.")
    for method in methods:
        if method not in auth["identity"]:
            raise bad_request(f"Expecting to find {method} in identity.")
    scope = auth.get("scope")
    if "password" in methods:
        user_id = await identity.read(check_password, auth["identity"]["password"]["user"], identity.dummy_hash)
        scope_type, scope_id = await identity.read(resolve_scope, user_id, scope)
        return new_payload(user_id, ["password"], scope_type, scope_id, identity.token_lifetime)
    try:
        parent, _ = await identity.validate(auth["identity"]["token"]["id"], include_catalog=False)
    except (TokenError, TokenInvalid):
        raise unauthorized() from None
    scope_type, scope_id = await identity.read(resolve_scope, parent.user_id, scope)
    methods = ["token"] + [m for m in parent.methods if m != "token"]
    return parent.rescoped(scope_type, scope_id, methods)
