"""``/v2.0/quotas``: Neutron's default limits, read-only (this cloud does not enforce network quotas)."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, json_response
from kilonova.network import policy
from kilonova.network.db import usage
from kilonova.network.errors import policy_denied
from kilonova.network.lookup import context, service

DEFAULTS = {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50, "security_group": 10,
            "security_group_rule": 100, "rbac_policy": 10, "subnetpool": -1}


def _check(request: Request, project_id: str) -> None:
    ctx = context(request)
    if not policy.privileged(ctx) and ctx.project_id != project_id:
        raise policy_denied("rule:get_quota")


async def index(request: Request):
    _check(request, "")
    return json_response({"quotas": []})


async def show(request: Request, project_id: str):
    _check(request, project_id)
    return json_response({"quota": dict(DEFAULTS)})


async def details(request: Request, project_id: str):
    _check(request, project_id)
    used = await service(request).db.read(usage.counts, project_id)
    return json_response({"quota": {name: {"limit": limit, "used": used.get(name, 0), "reserved": 0}
                                    for name, limit in DEFAULTS.items()}})


def register(router: Router) -> None:
    router.add("GET", "/v2.0/quotas", index)
    router.add("GET", "/v2.0/quotas/{project_id}", show)
    router.add("GET", "/v2.0/quotas/{project_id}/default", show)
    router.add("GET", "/v2.0/quotas/{project_id}/details", details)
