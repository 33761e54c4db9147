"""``/v3/domains``."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity.api.common import body, collection, enforce, flag, read, self_link, split_extra, write
from kilonova.identity.models import Domain
from kilonova.identity.store import domains
from kilonova.identity.validation import DESCRIPTION, ENABLED, NAME, entity

KNOWN = ("name", "description", "enabled")
IGNORED = ("id", "links", "tags", "options")
CREATE = entity("domain", {"name": NAME, "description": DESCRIPTION, "enabled": ENABLED}, ["name"])
UPDATE = entity("domain", {"name": NAME, "description": DESCRIPTION, "enabled": ENABLED})


def view(request: Request, domain: Domain) -> dict:
    return {"id": domain.id, "name": domain.name, "description": domain.description or "",
            "enabled": domain.enabled, "tags": [], "options": {}, **(domain.extra or {}),
            "links": self_link(request, f"/v3/domains/{domain.id}")}


async def list_domains(request: Request):
    enforce(request, "identity:list_domains")
    found = await read(request, domains.list_domains, name=request.query_params.get("name"),
                       enabled=flag(request, "enabled"))
    return json_response(collection(request, "domains", [view(request, d) for d in found]))


async def show(request: Request, domain_id: str):
    enforce(request, "identity:get_domain", domain_id=domain_id)
    return json_response({"domain": view(request, await read(request, domains.get, domain_id))})


async def create(request: Request):
    enforce(request, "identity:create_domain")
    values = split_extra((await body(request, CREATE))["domain"], KNOWN, IGNORED)
    return json_response({"domain": view(request, await write(request, domains.create, values))}, 201)


async def update(request: Request, domain_id: str):
    enforce(request, "identity:update_domain", domain_id=domain_id)
    values = split_extra((await body(request, UPDATE))["domain"], KNOWN, IGNORED, ("id",))
    return json_response({"domain": view(request, await write(request, domains.update, domain_id, values))})


async def delete(request: Request, domain_id: str):
    enforce(request, "identity:delete_domain", domain_id=domain_id)
    await write(request, domains.delete, domain_id)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v3/domains", list_domains)
    router.add("POST", "/v3/domains", create)
    router.add("GET", "/v3/domains/{domain_id}", show)
    router.add("PATCH", "/v3/domains/{domain_id}", update)
    router.add("DELETE", "/v3/domains/{domain_id}", delete)
