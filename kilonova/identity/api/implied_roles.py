"""Role inference rules: ``/v3/roles/{prior}/implies[/{implied}]`` and ``/v3/role_inferences``."""
from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.identity.api.common import enforce, read, self_link, url, write
from kilonova.identity.models import Role
from kilonova.identity.store import roles


def _ref(request: Request, role: Role) -> dict:
    return {"id": role.id, "name": role.name, "links": self_link(request, f"/v3/roles/{role.id}")}


def _rule(request: Request, prior: Role, implied: Role) -> dict:
    return {"role_inference": {"prior_role": _ref(request, prior), "implies": _ref(request, implied)},
            "links": self_link(request, f"/v3/roles/{prior.id}/implies/{implied.id}")}


def _pair(session: Session, prior_id: str, implied_id: str) -> tuple[Role, Role]:
    roles.get_implied(session, prior_id, implied_id)
    return roles.get(session, prior_id), roles.get(session, implied_id)


async def create(request: Request, prior_id: str, implied_id: str):
    enforce(request, "identity:create_implied_role")
    prior, implied = await write(request, roles.add_implied, prior_id, implied_id)
    return json_response(_rule(request, prior, implied), 201)


async def show(request: Request, prior_id: str, implied_id: str):
    enforce(request, "identity:get_implied_role")
    prior, implied = await read(request, _pair, prior_id, implied_id)
    return json_response(_rule(request, prior, implied))


async def check(request: Request, prior_id: str, implied_id: str):
    enforce(request, "identity:get_implied_role")
    await read(request, _pair, prior_id, implied_id)
    return empty_response(204)


async def delete(request: Request, prior_id: str, implied_id: str):
    enforce(request, "identity:delete_implied_role")
    await write(request, roles.remove_implied, prior_id, implied_id)
    return empty_response(204)


def _implied_by(session: Session, prior_id: str) -> tuple[Role, list[Role]]:
    prior = roles.get(session, prior_id)
    implied = roles.inference_rules(session).get(prior_id, [])
    known = roles.by_id(session)
    return prior, sorted((known[i] for i in implied), key=lambda r: r.name)


async def list_implied(request: Request, prior_id: str):
    enforce(request, "identity:list_implied_roles")
    prior, implied = await read(request, _implied_by, prior_id)
    return json_response({"role_inference": {"prior_role": _ref(request, prior),
                                             "implies": [_ref(request, r) for r in implied]},
                          "links": self_link(request, f"/v3/roles/{prior_id}/implies")})


def _all_rules(session: Session) -> list[tuple[Role, list[Role]]]:
    known = roles.by_id(session)
    rules = roles.inference_rules(session)
    return [(known[prior], sorted((known[i] for i in implied), key=lambda r: r.name))
            for prior, implied in sorted(rules.items(), key=lambda item: known[item[0]].name)]


async def list_inferences(request: Request):
    enforce(request, "identity:list_role_inference_rules")
    rules = await read(request, _all_rules)
    return json_response({
        "role_inferences": [{"prior_role": _ref(request, prior), "implies": [_ref(request, r) for r in implied]}
                            for prior, implied in rules],
        "links": {"self": url(request, "/v3/role_inferences"), "previous": None, "next": None}})


def register(router: Router) -> None:
    router.add("GET", "/v3/role_inferences", list_inferences)
    router.add("GET", "/v3/roles/{prior_id}/implies", list_implied)
    router.add("PUT", "/v3/roles/{prior_id}/implies/{implied_id}", create)
    router.add("GET", "/v3/roles/{prior_id}/implies/{implied_id}", show)
    router.add("HEAD", "/v3/roles/{prior_id}/implies/{implied_id}", check)
    router.add("DELETE", "/v3/roles/{prior_id}/implies/{implied_id}", delete)
