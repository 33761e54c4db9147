"""/v2.1/limits: the project's absolute limits and what it uses of them (no rate limits), from the quota
driver (with unified limits: Keystone's, as upstream converts them)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, json_response
from kilonova.compute.api import common
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute import quota

# quota resource -> names in the "absolute" limits document.
LIMIT_NAMES = {
    "ram": ["maxTotalRAMSize"], "instances": ["maxTotalInstances"], "cores": ["maxTotalCores"],
    "key_pairs": ["maxTotalKeypairs"], "floating_ips": ["maxTotalFloatingIps"],
    "metadata_items": ["maxServerMeta", "maxImageMeta"], "injected_files": ["maxPersonality"],
    "injected_file_content_bytes": ["maxPersonalitySize"], "security_groups": ["maxSecurityGroups"],
    "security_group_rules": ["maxSecurityGroupRules"], "server_groups": ["maxServerGroups"],
    "server_group_members": ["maxServerGroupMembers"],
}
USED_NAMES = {"totalRAMUsed": "ram", "totalCoresUsed": "cores", "totalInstancesUsed": "instances",
              "totalFloatingIpsUsed": "floating_ips", "totalSecurityGroupsUsed": "security_groups",
              "totalServerGroupsUsed": "server_groups"}
NETWORK_RESOURCES = ["floating_ips", "security_groups", "security_group_rules"]


def _hidden(request: Request) -> tuple[list[str], set[str]]:
    """(resources filtered out, limit names dropped) for this microversion."""
    filtered: list[str] = []
    dropped: set[str] = set()
    if want(request, "2.36"):
        filtered += NETWORK_RESOURCES
    if want(request, "2.39"):
        dropped.add("maxImageMeta")
    if want(request, "2.57"):
        filtered += ["injected_files", "injected_file_content_bytes"]
    return filtered, dropped


async def show_limits(request: Request):
    ctx = request.state.context
    project_id = request.query_params.get("tenant_id") or ctx.project_id
    if project_id != ctx.project_id:
        common.authorize(request, "os_compute_api:limits:other_project", {"project_id": project_id})
    svc = compute_api(request)
    limits = await quota.limits(svc, project_id)
    usage = await quota.driver(svc).usage(project_id)
    filtered, dropped = _hidden(request)
    absolute: dict[str, Any] = {}
    for resource, names in LIMIT_NAMES.items():
        if resource in filtered or resource not in limits:
            continue
        for name in names:
            if name not in dropped:
                absolute[name] = limits[resource]
    for name, resource in USED_NAMES.items():
        if resource not in filtered:
            absolute[name] = usage.get(resource, 0)
    return json_response({"limits": {"rate": [], "absolute": absolute}})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/limits", show_limits)
