"""/v2.1/os-hosts (until 2.42; 404 from 2.43, which deprecated it for os-hypervisors and os-services).

The list and the per-host resource view are read from the cells' databases. Enabling a host, its maintenance
mode and its power actions are asked of the host's compute agent, whose driver answers them as upstream's
does: the fake driver echoes them, libvirt implements none of them (501, as upstream on libvirt).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response, read_json
from kilonova.compute.api import host_calls, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import gone_from, require_admin
from kilonova.compute.api.services import all_services, host_zones, zone_of
from kilonova.compute.cells import CellDown
from kilonova.compute.db import compute_nodes, instances

_API_BINARIES = ("nova-osapi_compute", "nova-ec2", "nova-metadata")
_SWITCH = {"type": "string", "enum": ["enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE"]}
# Upstream's schema puts its anyOf (status or maintenance_mode required) inside "properties", where it
# constrains nothing: an empty body is accepted and answers just the host name. Kept so.
_UPDATE = {"type": "object", "properties": {"status": _SWITCH, "maintenance_mode": _SWITCH},
           "additionalProperties": False}


async def list_hosts(request: Request):
    gone_from(request, "2.43")
    require_admin(request, "os_compute_api:os-hosts:list")
    svc = compute_api(request)
    zones = await host_zones(svc)
    wanted_zone = request.query_params.get("zone")
    hosts = []
    for _cell, service in await all_services(svc):
        if service.disabled or service.binary in _API_BINARIES:
            continue  # upstream lists the enabled services only
        zone = zone_of(svc.conf, service, zones)
        if wanted_zone and zone != wanted_zone:
            continue
        topic = service.topic or service.binary.removeprefix("nova-")
        hosts.append({"host_name": service.host, "service": topic, "zone": zone})
    return json_response({"hosts": hosts})


def _resource(host: str, project: str, cpu: int, memory_mb: int, disk_gb: int) -> dict[str, Any]:
    return {"resource": {"host": host, "project": project, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb}}


async def show_host(request: Request, host_name: str):
    """The host's totals, what its node reports in use, what its instances' flavors add up to, and that
    per project (upstream's "(total)", "(used_now)", "(used_max)" rows, then one row per project)."""
    gone_from(request, "2.43")
    require_admin(request, "os_compute_api:os-hosts:show")
    cell = await host_calls.cell_of(compute_api(request), host_name)
    try:
        found = await cell.read(compute_nodes.get_by_host, host_name)
        rows = await cell.read(instances.list_by_host, host_name)
    except CellDown:
        raise HTTPError(404, f"Compute host {host_name} could not be found.") from None
    if found is None:
        raise HTTPError(404, f"Compute host {host_name} could not be found.")
    node = found[0]
    body = [_resource(host_name, "(total)", node.vcpus, node.memory_mb, node.local_gb),
            _resource(host_name, "(used_now)", node.vcpus_used, node.memory_mb_used, node.local_gb_used)]
    projects: dict[str, dict[str, Any]] = {}
    total = {"cpu": 0, "memory_mb": 0, "disk_gb": 0}
    for row in rows:
        flavor = row.get("flavor") or {}
        used = {"cpu": int(flavor.get("vcpus") or 0), "memory_mb": int(flavor.get("memory_mb") or 0),
                "disk_gb": int(flavor.get("root_gb") or 0) + int(flavor.get("ephemeral_gb") or 0)}
        project = projects.setdefault(row["project_id"], {"host": host_name, "project": row["project_id"],
                                                          "cpu": 0, "memory_mb": 0, "disk_gb": 0})
        for key, value in used.items():
            total[key] += value
            project[key] += value
    body.append(_resource(host_name, "(used_max)", total["cpu"], total["memory_mb"], total["disk_gb"]))
    body.extend({"resource": project} for project in projects.values())
    return json_response({"host": body})


async def update_host(request: Request, host_name: str):
    gone_from(request, "2.43")
    require_admin(request, "os_compute_api:os-hosts:update")
    body = await read_json(request)
    validation.validate(_UPDATE, body)
    result: dict[str, Any] = {"host": host_name}
    if "status" in body:
        enabled = body["status"].lower() == "enable"
        status = await host_calls.ask(compute_api(request), host_name, "set_host_enabled", enabled=enabled)
        if status not in ("enabled", "disabled"):
            raise HTTPError(400, str(status))
        result["status"] = status
    if "maintenance_mode" in body:
        mode = body["maintenance_mode"].lower() == "enable"
        maintenance = await host_calls.ask(compute_api(request), host_name, "host_maintenance_mode", mode=mode)
        if maintenance not in ("on_maintenance", "off_maintenance"):
            raise HTTPError(400, str(maintenance))
        result["maintenance_mode"] = maintenance
    return json_response(result)


async def _power_action(request: Request, host_name: str, action: str, rule: str):
    gone_from(request, "2.43")
    require_admin(request, f"os_compute_api:os-hosts:{rule}")
    result = await host_calls.ask(compute_api(request), host_name, "host_power_action", action=action)
    return json_response({"host": host_name, "power_action": result})


async def startup(request: Request, host_name: str):
    return await _power_action(request, host_name, "startup", "start")


async def shutdown(request: Request, host_name: str):
    return await _power_action(request, host_name, "shutdown", "shutdown")


async def reboot(request: Request, host_name: str):
    return await _power_action(request, host_name, "reboot", "reboot")


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-hosts", list_hosts)
    router.add("GET", "/v2.1/os-hosts/{host_name}", show_host)
    router.add("PUT", "/v2.1/os-hosts/{host_name}", update_host)
    router.add("GET", "/v2.1/os-hosts/{host_name}/reboot", reboot)
    router.add("GET", "/v2.1/os-hosts/{host_name}/shutdown", shutdown)
    router.add("GET", "/v2.1/os-hosts/{host_name}/startup", startup)
