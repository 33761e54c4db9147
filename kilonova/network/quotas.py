"""``/v2.0/quotas``: Neutron's per-project limits (defaults, changed by admins) and what a project uses.

Routers, floating IPs, security groups and their rules are held to their limits when created (``OverQuota``).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.network import attributes as A
from kilonova.network import policy
from kilonova.network.db import quota_limits, usage
from kilonova.network.db.quota_limits import DEFAULTS
from kilonova.network.errors import bad_request, fault, policy_denied
from kilonova.network.lookup import context, service


def _check(request: Request, project_id: str) -> None:
    ctx = context(request)
    if not policy.privileged(ctx) and ctx.project_id != project_id:
        raise policy_denied("rule:get_quota")


def _check_admin(request: Request, rule: str) -> None:
    if not policy.privileged(context(request)):
        raise policy_denied(rule)


async def index(request: Request):
    _check_admin(request, "rule:get_quota")
    db = service(request).db
    projects = await db.read(quota_limits.projects_with_limits)
    quotas = []
    for project_id in projects:
        quota = await db.read(quota_limits.limits, project_id)
        quotas.append({**quota, "project_id": project_id, "tenant_id": project_id})
    return json_response({"quotas": quotas})


async def show(request: Request, project_id: str):
    _check(request, project_id)
    return json_response({"quota": await service(request).db.read(quota_limits.limits, project_id)})


async def defaults(request: Request, project_id: str):
    _check(request, project_id)
    return json_response({"quota": dict(DEFAULTS)})


async def details(request: Request, project_id: str):
    _check(request, project_id)
    limits, used = await service(request).db.read(_limits_and_counts, project_id)
    return json_response({"quota": {name: {"limit": limit, "used": used.get(name, 0), "reserved": 0}
                                    for name, limit in limits.items()}})


def _limits_and_counts(session, project_id: str) -> tuple[dict[str, int], dict[str, int]]:
    return quota_limits.limits(session, project_id), usage.counts(session, project_id)


def _limits(body: Any) -> tuple[dict[str, int], bool]:
    """The new limits, and whether each must stay at or above what the project uses (``check_limit``, which
    the CLI sends unless ``--force``)."""
    if not isinstance(body, dict) or not isinstance(body.get("quota"), dict):
        raise bad_request("Unable to find 'quota' in request body")
    values = {}
    options = {name: A.to_bool(name, body["quota"][name]) for name in ("check_limit", "force")
               if name in body["quota"]}
    for name, value in body["quota"].items():
        if name in options:
            continue
        if name not in DEFAULTS:
            raise bad_request(f"Unrecognized attribute(s) '{name}'")
        try:
            limit = int(value)
        except (TypeError, ValueError):
            raise bad_request(f"Invalid input for {name}. Reason: '{value}' is not an integer.") from None
        if isinstance(value, bool) or limit < -1:
            raise bad_request(f"Invalid input for {name}. Reason: '{value}' is smaller than -1.")
        values[name] = limit
    return values, options.get("check_limit", False) and not options.get("force", False)


async def update(request: Request, project_id: str):
    _check_admin(request, "rule:update_quota")
    values, check_limit = _limits(await read_json(request))

    def write(session):
        if check_limit:
            used = usage.counts(session, project_id)
            for name, limit in values.items():
                if 0 <= limit < used.get(name, 0):
                    raise fault(400, "BadRequest", f"Bad quota request: Quota limit {limit} for {name} must be "
                                                   f"greater than or equal to already used and reserved "
                                                   f"{used[name]}.")
        return quota_limits.set_limits(session, project_id, values)

    return json_response({"quota": await service(request).db.write(write)})


async def delete(request: Request, project_id: str):
    _check_admin(request, "rule:delete_quota")
    await service(request).db.write(quota_limits.reset, project_id)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v2.0/quotas", index)
    router.add("GET", "/v2.0/quotas/{project_id}", show)
    router.add("PUT", "/v2.0/quotas/{project_id}", update)
    router.add("DELETE", "/v2.0/quotas/{project_id}", delete)
    router.add("GET", "/v2.0/quotas/{project_id}/default", defaults)
    router.add("GET", "/v2.0/quotas/{project_id}/details", details)
