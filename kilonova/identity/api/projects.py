"""``/v3/projects``."""
from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request

from kilonova.common.http import Router, bad_request, empty_response, json_response
from kilonova.identity import revocation
from kilonova.identity.api.common import (body, collection, context, enforce, flag, read, self_link, split_extra,
                                          write)
from kilonova.identity.models import DEFAULT_DOMAIN_ID, Project
from kilonova.identity.store import projects
from kilonova.identity.validation import DESCRIPTION, ENABLED, ID, NAME, NULLABLE_ID, TAGS, entity

KNOWN = ("name", "domain_id", "parent_id", "description", "enabled", "tags")
IGNORED = ("id", "links", "is_domain", "options")
PROPERTIES = {"name": NAME, "domain_id": ID, "parent_id": NULLABLE_ID, "description": DESCRIPTION,
              "enabled": ENABLED, "tags": TAGS, "is_domain": {"type": "boolean"}, "options": {"type": "object"}}
CREATE = entity("project", PROPERTIES, ["name"])
UPDATE = entity("project", PROPERTIES)


def view(request: Request, project: Project) -> dict:
    return {"id": project.id, "name": project.name, "domain_id": project.domain_id,
            "description": project.description or "", "enabled": project.enabled, "parent_id": project.parent_id,
            "is_domain": False, "tags": list(project.tags or []), "options": {}, **(project.extra or {}),
            "links": self_link(request, f"/v3/projects/{project.id}")}


async def list_projects(request: Request):
    enforce(request, "identity:list_projects")
    query = request.query_params
    found = await read(request, projects.list_projects, name=query.get("name"), domain_id=query.get("domain_id"),
                       enabled=flag(request, "enabled"), parent_id=query.get("parent_id"))
    return json_response(collection(request, "projects", [view(request, p) for p in found]))


async def show(request: Request, project_id: str):
    enforce(request, "identity:get_project", project_id=project_id)
    return json_response({"project": view(request, await read(request, projects.get, project_id))})


async def create(request: Request):
    enforce(request, "identity:create_project")
    document = (await body(request, CREATE))["project"]
    if document.get("is_domain"):
        raise bad_request("Projects acting as domains are not supported.")
    values = split_extra(document, KNOWN, IGNORED)
    values.setdefault("domain_id", context(request).domain_id or DEFAULT_DOMAIN_ID)
    return json_response({"project": view(request, await write(request, projects.create, values))}, 201)


def _update(session: Session, project_id: str, values: dict) -> Project:
    project = projects.update(session, project_id, values)
    if values.get("enabled") is False:
        revocation.record(session, project_id=project_id)
    return project


async def update(request: Request, project_id: str):
    enforce(request, "identity:update_project", project_id=project_id)
    values = split_extra((await body(request, UPDATE))["project"], KNOWN, IGNORED, ("id",))
    project = await write(request, _update, project_id, values, revokes=values.get("enabled") is False)
    return json_response({"project": view(request, project)})


def _delete(session: Session, project_id: str) -> None:
    projects.delete(session, project_id)
    revocation.record(session, project_id=project_id)


async def delete(request: Request, project_id: str):
    enforce(request, "identity:delete_project", project_id=project_id)
    await write(request, _delete, project_id, revokes=True)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v3/projects", list_projects)
    router.add("POST", "/v3/projects", create)
    router.add("GET", "/v3/projects/{project_id}", show)
    router.add("PATCH", "/v3/projects/{project_id}", update)
    router.add("DELETE", "/v3/projects/{project_id}", delete)
