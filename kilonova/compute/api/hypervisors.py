"""/v2.1/os-hypervisors: every cell's compute nodes, their resources and usage (admin only)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import host_calls
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import limit_and_marker, next_links, parse_bool, require_admin
from kilonova.compute.api.microversions import want
from kilonova.compute.api.services import UUID_RE
from kilonova.compute.cells import CellDown
from kilonova.compute.db import compute_nodes, instances, services

_USAGE_FIELDS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used", "running_vms")


def _ident(request: Request, node) -> Any:
    return node.uuid if want(request, "2.53") else node.id


def _cpu_info(request: Request, text: str | None) -> Any:
    if not want(request, "2.28"):
        return text
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def view(request: Request, node, service, *, detail: bool, servers: list | None = None,
         uptime: str | None = None) -> dict[str, Any]:
    down_time = compute_api(request).conf.getfloat("DEFAULT", "service_down_time")
    body: dict[str, Any] = {"id": _ident(request, node), "hypervisor_hostname": node.hypervisor_hostname,
                            "state": "up" if services.is_up(service, down_time) else "down",
                            "status": "disabled" if service.disabled else "enabled"}
    if detail:
        body.update(hypervisor_type=node.hypervisor_type, hypervisor_version=node.hypervisor_version,
                    host_ip=node.host_ip,
                    service={"id": service.uuid if want(request, "2.53") else service.id, "host": node.host,
                             "disabled_reason": service.disabled_reason})
        if want(request, "2.88"):
            # The usage fields are gone (Placement has them); the host's uptime is shown instead (null when its
            # driver cannot say or it is down, as upstream).
            body["uptime"] = uptime
        else:
            body.update({field: getattr(node, field) for field in _USAGE_FIELDS})
            free_disk = node.local_gb - node.local_gb_used
            body.update(free_ram_mb=node.memory_mb - node.memory_mb_used, free_disk_gb=free_disk,
                        current_workload=0, disk_available_least=free_disk,
                        cpu_info=_cpu_info(request, node.cpu_info))
    if servers or (servers is not None and want(request, "2.75")):  # from 2.75 even when there are none
        body["servers"] = servers
    return body


async def _nodes(request: Request) -> list[tuple[Any, Any, Any]]:
    """(cell, node, service) for every compute node whose service still exists, ordered by id."""
    found = []
    for cell in compute_api(request).cells.all():
        try:
            rows = await cell.read(compute_nodes.list_with_services)
        except CellDown:
            continue  # a cell that is down is left out, as upstream does
        for node, service in rows:
            if service is not None:
                found.append((cell, node, service))
    return found


async def _servers_of(cell, node) -> list[dict[str, str]]:
    rows = await cell.db.read(instances.list_by_host, node.host)
    return [{"name": row["display_name"], "uuid": row["uuid"]} for row in rows]


def _matching(found: list, pattern: str) -> list:
    matches = [item for item in found if pattern in item[1].hypervisor_hostname]
    if not matches:
        raise HTTPError(404, f"No hypervisor matching '{pattern}' could be found.")
    return matches


def _page(request: Request, found: list) -> tuple[list, int | None]:
    if not want(request, "2.33"):
        return found, None
    limit, marker = limit_and_marker(request)
    if marker is not None:
        ids = [str(_ident(request, node)) for _, node, _ in found]
        if marker not in ids:
            raise HTTPError(400, f"marker [{marker}] not found")
        found = found[ids.index(marker) + 1:]
    return found[:limit], limit


async def _list(request: Request, detail: bool):
    require_admin(request, f"os_compute_api:os-hypervisors:{'list-detail' if detail else 'list'}")
    found = await _nodes(request)
    params = request.query_params
    pattern = params.get("hypervisor_hostname_pattern") if want(request, "2.53") else None
    with_servers = parse_bool(params.get("with_servers", "false"), "with_servers") if want(request, "2.53") \
        else False
    limit = None
    if pattern is not None:
        if "limit" in params or "marker" in params:
            raise HTTPError(400, "Paging over hypervisors with the hypervisor_hostname_pattern query "
                                 "parameter is not supported.")
        found = _matching(found, pattern)
    else:
        found, limit = _page(request, found)
    hypervisors = []
    # Every host asked for its uptime at once (2.88's detail): a page waits for the slowest host, not their sum.
    uptimes = await asyncio.gather(*(_uptime_if_shown(request, node, detail) for _, node, _ in found))
    for (cell, node, service), uptime in zip(found, uptimes):
        servers = await _servers_of(cell, node) if with_servers else None
        hypervisors.append(view(request, node, service, detail=detail, servers=servers, uptime=uptime))
    body: dict[str, Any] = {"hypervisors": hypervisors}
    if limit is not None:
        page_links = next_links(request, "os-hypervisors/detail" if detail else "os-hypervisors",
                                [h["id"] for h in hypervisors], limit)
        if page_links:
            body["hypervisors_links"] = page_links
    return json_response(body)


async def list_hypervisors(request: Request):
    return await _list(request, False)


async def list_hypervisors_detail(request: Request):
    return await _list(request, True)


async def _find(request: Request, hypervisor_id: str) -> tuple[Any, Any, Any]:
    """(cell, node, service) for an id (integer before 2.53, uuid from 2.53)."""
    missing = HTTPError(404, f"Hypervisor with ID '{hypervisor_id}' could not be found.")
    if want(request, "2.53"):
        if not UUID_RE.match(hypervisor_id):
            raise HTTPError(400, f"Invalid uuid {hypervisor_id}")
        ident: int | str = hypervisor_id
    else:
        try:
            ident = int(hypervisor_id)
        except ValueError:
            raise missing from None
    for cell in compute_api(request).cells.all():
        try:
            node, service = await cell.read(compute_nodes.get_with_service, ident)
        except (NotFound, CellDown):
            continue
        if service is None:
            break
        return cell, node, service
    raise missing


async def show_hypervisor(request: Request, hypervisor_id: str):
    require_admin(request, "os_compute_api:os-hypervisors:show")
    with_servers = want(request, "2.53") and parse_bool(request.query_params.get("with_servers", "false"),
                                                        "with_servers")
    cell, node, service = await _find(request, hypervisor_id)
    servers = await _servers_of(cell, node) if with_servers else None
    uptime = await _uptime_if_shown(request, node, True)
    return json_response({"hypervisor": view(request, node, service, detail=True, servers=servers, uptime=uptime)})


async def _uptime_if_shown(request: Request, node, detail: bool) -> str | None:
    """From 2.88 a detailed hypervisor carries its host's uptime, asked of the host's agent."""
    if not (detail and want(request, "2.88")):
        return None
    return await host_calls.uptime_or_none(compute_api(request), node.host)


async def hypervisor_uptime(request: Request, hypervisor_id: str):
    """The host's ``uptime`` as its driver answers it (until 2.87): 400 when its service is down, 501 when the
    driver cannot say."""
    if want(request, "2.88"):
        raise HTTPError(404, "The resource could not be found.")
    require_admin(request, "os_compute_api:os-hypervisors:uptime")
    _cell, node, service = await _find(request, hypervisor_id)
    try:
        uptime = await host_calls.ask(compute_api(request), node.host, "get_host_uptime")
    except HTTPError as exc:
        if exc.status == 404:  # upstream answers a host it cannot map as a missing hypervisor
            raise HTTPError(404, f"Hypervisor with ID '{hypervisor_id}' could not be found.") from None
        raise
    return json_response({"hypervisor": view(request, node, service, detail=False, uptime=uptime) | {"uptime": uptime}})


async def search_hypervisors(request: Request, pattern: str):
    if want(request, "2.53"):
        raise HTTPError(404, "The resource could not be found.")
    require_admin(request, "os_compute_api:os-hypervisors:search")
    found = _matching(await _nodes(request), pattern)
    return json_response({"hypervisors": [view(request, n, s, detail=False) for _, n, s in found]})


async def hypervisor_servers(request: Request, pattern: str):
    if want(request, "2.53"):
        raise HTTPError(404, "The resource could not be found.")
    require_admin(request, "os_compute_api:os-hypervisors:servers")
    found = _matching(await _nodes(request), pattern)
    hypervisors = []
    for cell, node, service in found:
        hypervisors.append(view(request, node, service, detail=False, servers=await _servers_of(cell, node)))
    return json_response({"hypervisors": hypervisors})


async def statistics(request: Request):
    if want(request, "2.88"):
        raise HTTPError(404, "The resource could not be found.")
    require_admin(request, "os_compute_api:os-hypervisors:statistics")
    stats = dict.fromkeys(("count", "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used",
                           "local_gb_used", "free_ram_mb", "free_disk_gb", "current_workload", "running_vms",
                           "disk_available_least"), 0)
    for _, node, _service in await _nodes(request):
        stats["count"] += 1
        for field in _USAGE_FIELDS:
            stats[field] += getattr(node, field)
        stats["free_ram_mb"] += node.memory_mb - node.memory_mb_used
        stats["free_disk_gb"] += node.local_gb - node.local_gb_used
        stats["disk_available_least"] += node.local_gb - node.local_gb_used
    return json_response({"hypervisor_statistics": stats})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-hypervisors", list_hypervisors)
    router.add("GET", "/v2.1/os-hypervisors/detail", list_hypervisors_detail)
    router.add("GET", "/v2.1/os-hypervisors/statistics", statistics)
    router.add("GET", "/v2.1/os-hypervisors/{hypervisor_id}", show_hypervisor)
    router.add("GET", "/v2.1/os-hypervisors/{hypervisor_id}/uptime", hypervisor_uptime)
    router.add("GET", "/v2.1/os-hypervisors/{pattern}/search", search_hypervisors)
    router.add("GET", "/v2.1/os-hypervisors/{pattern}/servers", hypervisor_servers)
