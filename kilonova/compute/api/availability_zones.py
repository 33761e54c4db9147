"""/v2.1/os-availability-zone: zones of the service records of every cell, compute hosts' from aggregates."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, json_response
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import require_admin
from kilonova.compute.api.services import INTERNAL_ZONE, all_services, host_zones, iso, zone_of
from kilonova.compute.db import services as services_db


async def _zones(request: Request) -> tuple[list[str], list[str], list[tuple[str, Any]]]:
    return await _zones_of(compute_api(request))


async def _zones_of(svc) -> tuple[list[str], list[str], list[tuple[str, Any]]]:
    """(available zones, unavailable zones, [(zone, enabled service)]) as Nova's get_availability_zones."""
    available: list[str] = []
    unavailable: list[str] = []
    enabled = []
    zones = await host_zones(svc)
    for _cell, service in await all_services(svc):
        zone = zone_of(svc.conf, service, zones)
        if service.disabled:
            if zone not in unavailable:
                unavailable.append(zone)
            continue
        enabled.append((zone, service))
        if zone not in available:
            available.append(zone)
    return _ordered(available), _ordered([z for z in unavailable if z not in available]), enabled


async def available_zones(svc) -> list[str]:
    """The zones a server may ask for: those with an enabled compute service (Nova's get_only_available)."""
    available, _, _ = await _zones_of(svc)
    return [zone for zone in available if zone != INTERNAL_ZONE]


def _ordered(zones: list[str]) -> list[str]:
    """Zones by name, the internal zone of the control services last."""
    return sorted(zones, key=lambda zone: (zone == INTERNAL_ZONE, zone))


async def list_zones(request: Request):
    available, unavailable, _ = await _zones(request)
    info = [{"zoneName": zone, "zoneState": {"available": state}, "hosts": None}
            for zones, state in ((available, True), (unavailable, False)) for zone in zones
            if zone != INTERNAL_ZONE]
    return json_response({"availabilityZoneInfo": info})


async def list_zones_detail(request: Request):
    require_admin(request, "os_compute_api:os-availability-zone:detail")
    available, unavailable, enabled = await _zones(request)
    down_time = compute_api(request).conf.getfloat("DEFAULT", "service_down_time")
    hosts: dict[str, dict[str, dict[str, Any]]] = {zone: {} for zone in available}
    for zone, service in enabled:
        hosts[zone].setdefault(service.host, {})[service.binary] = {
            "available": services_db.is_up(service, down_time), "active": not service.disabled,
            "updated_at": iso(service.updated_at)}
    info = [{"zoneName": zone, "zoneState": {"available": True}, "hosts": hosts[zone]} for zone in available]
    info += [{"zoneName": zone, "zoneState": {"available": False}, "hosts": None} for zone in unavailable]
    return json_response({"availabilityZoneInfo": info})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-availability-zone", list_zones)
    router.add("GET", "/v2.1/os-availability-zone/detail", list_zones_detail)
