"""Role grants to users on projects, domains and the system:
``/v3/{projects,domains}/{id}/users/{user_id}/roles[/{role_id}]`` and ``/v3/system/users/...``."""
from __future__ import annotations

from typing import Callable

from sqlalchemy.orm import Session
from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, not_found
from kilonova.identity.api import roles as role_views
from kilonova.identity.api.common import collection, enforce, read, write
from kilonova.identity.store import assignments, domains, projects, roles, users

TARGETS: dict[str, Callable[[Session, str], object]] = {"project": projects.get, "domain": domains.get,
                                                        "system": lambda session, target_id: None}


def _check(session: Session, target_type: str, target_id: str, user_id: str, role_id: str | None) -> None:
    TARGETS[target_type](session, target_id)
    users.get(session, user_id)
    if role_id is not None:
        roles.get(session, role_id)


def _grant(session: Session, target_type: str, target_id: str, user_id: str, role_id: str) -> None:
    _check(session, target_type, target_id, user_id, role_id)
    assignments.grant(session, user_id, target_type, target_id, role_id)


def _revoke(session: Session, target_type: str, target_id: str, user_id: str, role_id: str) -> None:
    _check(session, target_type, target_id, user_id, role_id)
    assignments.revoke(session, user_id, target_type, target_id, role_id)


def _exists(session: Session, target_type: str, target_id: str, user_id: str, role_id: str) -> bool:
    _check(session, target_type, target_id, user_id, role_id)
    return assignments.exists(session, user_id, target_type, target_id, role_id)


def _roles(session: Session, target_type: str, target_id: str, user_id: str) -> list:
    _check(session, target_type, target_id, user_id, None)
    return assignments.roles_of(session, user_id, target_type, target_id)


def _handlers(target_type: str):
    def target_of(params: dict) -> str:
        return params.pop("target_id", assignments.SYSTEM_ID)

    async def put(request: Request, **params):
        enforce(request, "identity:create_grant")
        await write(request, _grant, target_type, target_of(params), params["user_id"], params["role_id"])
        return empty_response(204)

    async def check(request: Request, **params):
        enforce(request, "identity:check_grant")
        target_id = target_of(params)
        if not await read(request, _exists, target_type, target_id, params["user_id"], params["role_id"]):
            raise not_found(str(assignments.missing(params["user_id"], target_id, params["role_id"])))
        return empty_response(204)

    async def delete(request: Request, **params):
        enforce(request, "identity:revoke_grant")
        await write(request, _revoke, target_type, target_of(params), params["user_id"], params["role_id"])
        return empty_response(204)

    async def list_grants(request: Request, **params):
        enforce(request, "identity:list_grants")
        found = await read(request, _roles, target_type, target_of(params), params["user_id"])
        return json_response(collection(request, "roles", [role_views.view(request, r) for r in found]))

    return put, check, delete, list_grants


def register(router: Router) -> None:
    prefixes = {"project": "/v3/projects/{target_id}", "domain": "/v3/domains/{target_id}", "system": "/v3/system"}
    for target_type, prefix in prefixes.items():
        put, check, delete, list_grants = _handlers(target_type)
        router.add("GET", prefix + "/users/{user_id}/roles", list_grants)
        router.add("PUT", prefix + "/users/{user_id}/roles/{role_id}", put)
        router.add("GET", prefix + "/users/{user_id}/roles/{role_id}", check)
        router.add("DELETE", prefix + "/users/{user_id}/roles/{role_id}", delete)
