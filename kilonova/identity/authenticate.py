"""``POST /v3/auth/tokens`` request bodies: who is asking (password or token) and for what scope."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session

from kilonova.common.cpu_pool import Overloaded
from kilonova.common.http import HTTPError, bad_request, unauthorized
from kilonova.identity import passwords
from kilonova.identity.core import IdentityCore, TokenError, TokenInvalid
from kilonova.identity.login_limits import SourceLimitExceeded
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


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _domain(session: Session, ref: dict[str, Any] | None, what: str) -> Domain | None:
    if not isinstance(ref, dict) or not (ref.get("id") or ref.get("name")):
        raise bad_request(f"Expecting to find domain in {what}. The server could not comply with the request "
                          "since it is either malformed or otherwise incorrect.")
    domain = session.get(Domain, ref["id"]) if ref.get("id") else domains.find_by_name(session, ref["name"])
    return domain if domain is not None and domain.enabled else None


@dataclass(frozen=True)
class PasswordUser:
    """What checking a password needs of its user, read in one short transaction."""

    id: str
    password_hash: str | None
    enabled: bool
    failed_auth_count: int
    failed_auth_at: datetime | None


def find_password_user(session: Session, ref: dict[str, Any]) -> PasswordUser | None:
    """The user the password method names (None: no such user, or its domain is disabled)."""
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
    if user is None:
        return None
    domain = session.get(Domain, user.domain_id)
    return PasswordUser(user.id, user.password_hash, user.enabled and domain is not None and domain.enabled,
                        user.failed_auth_count or 0, user.failed_auth_at)


async def check_password(identity: IdentityCore, ref: dict[str, Any], source: str) -> str:
    """The id of the user ``ref`` names if ``ref["password"]`` is its password; else 401 (429: ``source`` has
    sent too many wrong passwords lately; 503: too many passwords are being checked already).

    As Keystone: a locked account is refused before its password is looked at; a wrong password counts
    towards the lock; a right one clears the count.
    """
    try:
        ticket = identity.failed_logins.begin(source)
    except SourceLimitExceeded as exc:
        raise HTTPError(429, "Too many failed logins from this address; try again later.",
                        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))}) from None
    try:
        user = await identity.read(find_password_user, ref)
        now = _now()
        if user is not None and identity.lockout.locked(user.failed_auth_count, user.failed_auth_at, now):
            raise unauthorized()
        right = await identity.verify_password(ref["password"], user.password_hash if user else None)
    except HTTPError as exc:
        if exc.status != 401:   # a malformed body, or too busy to check: no failed login
            identity.failed_logins.take_back(ticket)
        raise
    if not right:
        if user is not None:
            restart = identity.lockout.expired(user.failed_auth_count, user.failed_auth_at, now)
            await identity.write(users.record_failed_login, user.id, now, restart)
        raise unauthorized()
    if user is None or not user.enabled:
        raise unauthorized()
    identity.failed_logins.take_back(ticket)
    if user.failed_auth_count:
        await identity.write(users.clear_failed_logins, user.id)
    if passwords.needs_rehash(user.password_hash, identity.hash_rounds):
        await _rehash(identity, user, ref["password"])
    return user.id


async def _rehash(identity: IdentityCore, user: PasswordUser, password: str) -> None:
    """Store the password with the current parameters (it was hashed with older ones); later, when busy."""
    try:
        new_hash = await identity.hashing.run(identity.hash_password, password)
    except Overloaded:
        return
    await identity.write(users.replace_password_hash, user.id, user.password_hash, new_hash)


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


async def authenticate(identity: IdentityCore, document: Any, source: str) -> Payload:
    """The payload of the token to issue for a ``POST /v3/auth/tokens`` body from address ``source``, or
    400/401 (429/503: see ``check_password``)."""
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
        user_id = await check_password(identity, auth["identity"]["password"]["user"], source)
        scope_type, scope_id = await identity.read(resolve_scope, user_id, scope)
        return new_payload(user_id, ["password"], scope_type, scope_id, identity.token_lifetime)
    try:
        parent, _ = await identity.validate(auth["identity"]["token"]["id"], include_catalog=False)
    except (TokenError, TokenInvalid):
        raise unauthorized() from None
    scope_type, scope_id = await identity.read(resolve_scope, parent.user_id, scope)
    methods = ["token"] + [m for m in parent.methods if m != "token"]
    return parent.rescoped(scope_type, scope_id, methods)
