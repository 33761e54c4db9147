"""/v2.1/os-simple-tenant-usage: each project's server hours over a period (``openstack usage list/show``).

Upstream's arithmetic is kept to the digit: an instance counts from its launch (or the period's start) to its
termination (or the period's end, itself capped at now); its hours times its vcpus, memory and disk make the
totals. From 2.40 the instances are paged (``limit``, ``marker`` an instance uuid) with a next link; from 2.75
an unknown query parameter is a 400.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import query_params
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import MAX_LIMIT, authorize, limit_and_marker, next_links, require_admin
from kilonova.compute.api.microversions import want
from kilonova.compute.api.query_params import MULTI_STRING, Param
from kilonova.compute.cells import CellDown
from kilonova.compute.db import usage

_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_PAGING = {"limit": Param("non-negative-int", single=False), "marker": MULTI_STRING}
_INDEX = {"start": MULTI_STRING, "end": MULTI_STRING, "detailed": MULTI_STRING}
_SHOW = {"start": MULTI_STRING, "end": MULTI_STRING}


def _validate(request: Request, params: dict[str, Param]) -> None:
    if want(request, "2.40"):
        params = params | _PAGING
    query_params.validate(request, params, closed=want(request, "2.75"))


def _first(request: Request, name: str) -> str | None:
    """The first non-empty value, as upstream reads the query string (parse_qs drops empty ones)."""
    values = [v for v in request.query_params.getlist(name) if v]
    return values[0] if values else None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _parse_time(text: str | None) -> datetime:
    if not text:
        return _now()
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise HTTPError(400, "Invalid datetime string: Datetime is in invalid format")


def _period(request: Request) -> tuple[datetime, datetime]:
    start, stop = _parse_time(_first(request, "start")), _parse_time(_first(request, "end"))
    if not start < stop:
        raise HTTPError(400, "Invalid start time. The start time cannot occur after the end time.")
    return start, min(stop, _now())


def _hours(row: dict[str, Any], start: datetime, stop: datetime) -> float:
    launched, terminated = row["launched_at"], row["terminated_at"]
    if terminated is not None and terminated < start:
        return 0
    if launched is None or launched > stop:
        return 0
    elapsed = min(stop, terminated) - max(launched, start) if terminated is not None else stop - max(launched, start)
    # Upstream divides the microseconds by 100000, not 1000000: kept, so reports agree to the digit.
    seconds = elapsed.days * 3600 * 24 + elapsed.seconds + elapsed.microseconds / 100000.0
    return seconds / 3600.0


def _server_usage(row: dict[str, Any], hours: float, now: datetime) -> dict[str, Any]:
    flavor = row["flavor"] or {}
    launched, terminated = row["launched_at"], row["terminated_at"]
    uptime = (terminated if terminated is not None else now) - launched
    return {"hours": hours, "flavor": flavor.get("name", ""), "instance_id": row["uuid"], "name": row["display_name"],
            "memory_mb": row["memory_mb"], "vcpus": row["vcpus"],
            "local_gb": int(flavor.get("root_gb") or 0) + int(flavor.get("ephemeral_gb") or 0),
            "tenant_id": row["project_id"], "started_at": launched.strftime(_TIME_FORMAT),
            "ended_at": terminated.strftime(_TIME_FORMAT) if terminated is not None else None,
            "state": "terminated" if terminated is not None else row["vm_state"],
            "uptime": uptime.days * 24 * 3600 + uptime.seconds}


async def _instances(svc, start: datetime, stop: datetime, project_id: str | None, limit: int,
                     marker: str | None) -> list[dict[str, Any]]:
    """Cell by cell, as upstream: the marker is looked for in each cell until one has it, and the page is
    filled from that cell on."""
    found: list[dict[str, Any]] = []
    for cell in svc.cells.all():
        try:
            rows = await cell.read(usage.active_in_window, start, stop, project_id, limit, marker)
        except NotFound:
            continue
        except CellDown:
            continue
        found.extend(rows)
        marker = None
        limit -= len(rows)
        if limit <= 0:
            break
    if marker is not None and not found:
        raise HTTPError(400, f"Marker {marker} could not be found.")
    return found


async def _usages(request: Request, project_id: str | None, detailed: bool) -> tuple[list[dict], list[str], int]:
    """(per-project summaries, the uuids of the instances counted, the page size)."""
    start, stop = _period(request)
    limit, marker = limit_and_marker(request) if want(request, "2.40") else (MAX_LIMIT, None)
    rows = await _instances(compute_api(request), start, stop, project_id, limit, marker)
    summaries: dict[str, dict[str, Any]] = {}
    now = _now()
    for row in rows:
        hours = _hours(row, start, stop)
        info = _server_usage(row, hours, now)
        summary = summaries.get(row["project_id"])
        if summary is None:
            summary = summaries[row["project_id"]] = {
                "tenant_id": row["project_id"], **({"server_usages": []} if detailed else {}),
                "total_local_gb_usage": 0, "total_vcpus_usage": 0, "total_memory_mb_usage": 0, "total_hours": 0,
                "start": start.strftime(_TIME_FORMAT), "stop": stop.strftime(_TIME_FORMAT)}
        summary["total_local_gb_usage"] += info["local_gb"] * hours
        summary["total_vcpus_usage"] += info["vcpus"] * hours
        summary["total_memory_mb_usage"] += info["memory_mb"] * hours
        summary["total_hours"] += hours
        if detailed:
            summary["server_usages"].append(info)
    return list(summaries.values()), [row["uuid"] for row in rows], limit


async def list_usages(request: Request):
    _validate(request, _INDEX)
    require_admin(request, "os_compute_api:os-simple-tenant-usage:list")
    detailed = (request.query_params.getlist("detailed") or ["0"])[0] == "1"
    summaries, uuids, limit = await _usages(request, None, detailed)
    body: dict[str, Any] = {"tenant_usages": summaries}
    if want(request, "2.40"):
        links = next_links(request, "os-simple-tenant-usage", uuids, limit)
        if links:
            body["tenant_usages_links"] = links
    return json_response(body)


async def show_usage(request: Request, project_id: str):
    _validate(request, _SHOW)
    authorize(request, "os_compute_api:os-simple-tenant-usage:show", {"project_id": project_id})
    summaries, uuids, limit = await _usages(request, project_id, True)
    body: dict[str, Any] = {"tenant_usage": summaries[0] if summaries else {}}
    if want(request, "2.40"):
        links = next_links(request, f"os-simple-tenant-usage/{project_id}", uuids, limit)
        if links:
            body["tenant_usage_links"] = links
    return json_response(body)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-simple-tenant-usage", list_usages)
    router.add("GET", "/v2.1/os-simple-tenant-usage/{project_id}", show_usage)
