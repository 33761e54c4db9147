"""``/v3/users``, a user's projects and the self-service password change."""
from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request

from kilonova.common.auth import public
from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity import revocation
from kilonova.identity.api import projects as project_views
from kilonova.identity.api.common import (body, client_address, collection, context, core, enforce, flag, read,
                                          self_link, split_extra, write)
from kilonova.identity.authenticate import check_password
from kilonova.identity.models import DEFAULT_DOMAIN_ID, User
from kilonova.identity.store import assignments, users
from kilonova.identity.store import projects as project_store
from kilonova.identity.validation import ENABLED, ID, LONG_NAME, NULLABLE_ID, entity

KNOWN = ("name", "domain_id", "enabled", "default_project_id")
IGNORED = ("id", "links", "password", "options", "password_expires_at")
PASSWORD = {"type": ["string", "null"], "maxLength": 4096}
PROPERTIES = {"name": LONG_NAME, "domain_id": ID, "enabled": ENABLED, "default_project_id": NULLABLE_ID,
              "password": PASSWORD, "options": {"type": "object"}}
CREATE = entity("user", PROPERTIES, ["name"])
UPDATE = entity("user", PROPERTIES)
CHANGE_PASSWORD = entity("user", {"password": {"type": "string", "maxLength": 4096},
                                  "original_password": {"type": "string", "maxLength": 4096}},
                         ["password", "original_password"], extra=False)


def view(request: Request, user: User) -> dict:
    result = {"id": user.id, "name": user.name, "domain_id": user.domain_id, "enabled": user.enabled,
              "password_expires_at": None, "options": {}, **(user.extra or {}),
              "links": self_link(request, f"/v3/users/{user.id}")}
    if user.default_project_id:
        result["default_project_id"] = user.default_project_id
    return result


async def _hash(request: Request, password: str | None) -> str | None:
    return await core(request).new_hash(password) if password else None


async def list_users(request: Request):
    enforce(request, "identity:list_users")
    query = request.query_params
    found = await read(request, users.list_users, name=query.get("name"), domain_id=query.get("domain_id"),
                       enabled=flag(request, "enabled"))
    return json_response(collection(request, "users", [view(request, u) for u in found]))


async def show(request: Request, user_id: str):
    enforce(request, "identity:get_user", user_id=user_id)
    return json_response({"user": view(request, await read(request, users.get, user_id))})


async def create(request: Request):
    enforce(request, "identity:create_user")
    document = (await body(request, CREATE))["user"]
    values = split_extra(document, KNOWN, IGNORED)
    values.setdefault("domain_id", context(request).domain_id or DEFAULT_DOMAIN_ID)
    user = await write(request, users.create, values, await _hash(request, document.get("password")))
    return json_response({"user": view(request, user)}, 201)


def _update(session: Session, user_id: str, values: dict, revoke: bool) -> User:
    user = users.update(session, user_id, values)
    if revoke:
        revocation.record(session, user_id=user_id)
    return user


async def update(request: Request, user_id: str):
    enforce(request, "identity:update_user", user_id=user_id)
    document = (await body(request, UPDATE))["user"]
    values = split_extra(document, KNOWN, IGNORED, ("id",))
    if "extra" in values:
        current = await read(request, users.get, user_id)
        values["extra"] = {**(current.extra or {}), **values["extra"]}
    if "password" in document:
        values["password_hash"] = await _hash(request, document["password"])
    revoke = "password" in document or values.get("enabled") is False
    user = await write(request, _update, user_id, values, revoke, revokes=revoke)
    return json_response({"user": view(request, user)})


def _delete(session: Session, user_id: str) -> None:
    users.delete(session, user_id)
    revocation.record(session, user_id=user_id)


async def delete(request: Request, user_id: str):
    enforce(request, "identity:delete_user", user_id=user_id)
    await write(request, _delete, user_id, revokes=True)
    return empty_response(204)


def _projects_of(session: Session, user_id: str) -> list:
    users.get(session, user_id)
    ids = assignments.target_ids(session, user_id, "project")
    return project_store.list_projects(session, ids=sorted(ids))


async def list_projects(request: Request, user_id: str):
    enforce(request, "identity:list_user_projects", user_id=user_id)
    found = await read(request, _projects_of, user_id)
    return json_response(collection(request, "projects", [project_views.view(request, p) for p in found]))


@public
async def change_password(request: Request, user_id: str):
    """Self-service: authenticated by the original password, as Keystone does (no token needed)."""
    document = (await body(request, CHANGE_PASSWORD))["user"]
    # As Keystone: the original password is checked as a login is (lockout, failed-login limits).
    await check_password(core(request), {"id": user_id, "password": document["original_password"]},
                         client_address(request))
    new_hash = await _hash(request, document["password"])
    await write(request, _update, user_id, {"password_hash": new_hash}, True, revokes=True)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v3/users", list_users)
    router.add("POST", "/v3/users", create)
    router.add("GET", "/v3/users/{user_id}", show)
    router.add("PATCH", "/v3/users/{user_id}", update)
    router.add("DELETE", "/v3/users/{user_id}", delete)
    router.add("GET", "/v3/users/{user_id}/projects", list_projects)
    router.add("POST", "/v3/users/{user_id}/password", change_password)
