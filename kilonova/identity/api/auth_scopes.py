"""What the caller's own token can reach: ``/v3/auth/catalog``, ``projects``, ``domains``, ``system``."""
from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request

from kilonova.common.http import Router, forbidden, json_response
from kilonova.identity import token_data
from kilonova.identity.api import domains as domain_views
from kilonova.identity.api import projects as project_views
from kilonova.identity.api.common import collection, context, enforce, read, url
from kilonova.identity.store import assignments
from kilonova.identity.store import domains as domain_store
from kilonova.identity.store import projects as project_store


async def catalog(request: Request):
    enforce(request, "identity:get_auth_catalog")
    if request.state.token_payload.scope_type is None:
        raise forbidden("A project-scoped token is required to produce a service catalog.")
    entries = await read(request, token_data.catalog)
    return json_response({"catalog": entries, "links": {"self": url(request, "/v3/auth/catalog"),
                                                        "previous": None, "next": None}})


def _my_projects(session: Session, user_id: str) -> list:
    ids = assignments.target_ids(session, user_id, "project")
    return project_store.list_projects(session, ids=sorted(ids), enabled=True)


async def projects(request: Request):
    enforce(request, "identity:get_auth_projects")
    found = await read(request, _my_projects, context(request).user_id)
    return json_response(collection(request, "projects", [project_views.view(request, p) for p in found]))


def _my_domains(session: Session, user_id: str) -> list:
    ids = assignments.target_ids(session, user_id, "domain")
    return [d for d in domain_store.list_domains(session, enabled=True) if d.id in ids]


async def domains(request: Request):
    enforce(request, "identity:get_auth_domains")
    found = await read(request, _my_domains, context(request).user_id)
    return json_response(collection(request, "domains", [domain_views.view(request, d) for d in found]))


async def system(request: Request):
    enforce(request, "identity:get_auth_system")
    ids = await read(request, assignments.target_ids, context(request).user_id, "system")
    return json_response(collection(request, "system", [{"all": True}] if ids else []))


def register(router: Router) -> None:
    router.add("GET", "/v3/auth/catalog", catalog)
    router.add("GET", "/v3/auth/projects", projects)
    router.add("GET", "/v3/auth/domains", domains)
    router.add("GET", "/v3/auth/system", system)
