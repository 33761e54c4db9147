"""/v2.1/os-services: the services of every cell, their state and scheduling status (admin only)."""
from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import Request

from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import require_admin
from kilonova.compute.api.microversions import want
from kilonova.compute.cells import CellDown
from kilonova.compute.db import aggregates, mappings, migrations, services

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
INTERNAL_ZONE = "internal"
# API services do not heartbeat through the service group, so upstream leaves them out of the list.
API_BINARIES = ("nova-osapi_compute", "nova-metadata")
_BOOLEAN = validation.BOOLEAN
LOG = logging.getLogger(__name__)


def _legacy_schema(with_forced_down: bool) -> dict:
    props: dict[str, Any] = {"host": {"type": "string", "minLength": 1, "maxLength": 255},
                             "binary": {"type": "string"}, "disabled_reason": {"type": "string"}}
    if with_forced_down:
        props["forced_down"] = _BOOLEAN
    return {"type": "object", "properties": props, "required": ["host", "binary"], "additionalProperties": False}


_UPDATE = _legacy_schema(False)
_UPDATE_211 = _legacy_schema(True)
_UPDATE_253 = {"type": "object", "additionalProperties": False, "properties": {
    "status": {"type": "string", "enum": ["enabled", "disabled"]},
    "disabled_reason": {"type": "string", "minLength": 1, "maxLength": 255},
    "forced_down": _BOOLEAN}}


def _bool(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "t", "true", "on", "y", "yes")


def zone_of(conf, service, zones: dict[str, str] | None = None) -> str:
    """A compute service is in its host's aggregate zone (``zones``: host -> zone), else the default."""
    if service.binary == "nova-compute":
        return (zones or {}).get(service.host) or conf.get("DEFAULT", "default_availability_zone")
    return INTERNAL_ZONE


async def host_zones(svc) -> dict[str, str]:
    """host -> availability zone, for the hosts in aggregates that define one."""
    return await svc.api_db.read(aggregates.host_zones)


def iso(value) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f")


async def all_services(svc, *, host: str | None = None, binary: str | None = None) -> list[tuple[Any, Any]]:
    """(cell, service) for every live service record of every cell."""
    found = []
    for cell in svc.cells.all():
        try:
            rows = await cell.read(services.list_services, host=host, binary=binary)
        except CellDown:
            continue  # as upstream before 2.69: a cell that is down is left out of the list
        for service in rows:
            if service.binary not in API_BINARIES:
                found.append((cell, service))
    return found


def view(request: Request, service, *, forced_down: bool, zones: dict[str, str]) -> dict[str, Any]:
    svc = compute_api(request)
    down_time = svc.conf.getfloat("DEFAULT", "service_down_time")
    body = {"binary": service.binary, "host": service.host,
            "id": service.uuid if want(request, "2.53") else service.id,
            "zone": zone_of(svc.conf, service, zones), "status": "disabled" if service.disabled else "enabled",
            "state": "up" if services.is_up(service, down_time) else "down",
            "updated_at": iso(service.updated_at), "disabled_reason": service.disabled_reason}
    if forced_down:
        body["forced_down"] = service.forced_down
    return body


async def list_services(request: Request):
    require_admin(request, "os_compute_api:os-services:list")
    params = request.query_params
    svc = compute_api(request)
    found = await all_services(svc, host=params.get("host") or None, binary=params.get("binary") or None)
    zones = await host_zones(svc)
    listed = [view(request, s, forced_down=want(request, "2.11"), zones=zones) for _, s in found]
    if want(request, "2.69"):
        listed += await _down_cell_computes(svc, host=params.get("host") or None, binary=params.get("binary") or None)
    return json_response({"services": listed})


async def _down_cell_computes(svc, *, host: str | None, binary: str | None) -> list[dict[str, Any]]:
    """From 2.69, the compute services of cells that are down, as their host mappings know them."""
    down = [cell for cell in svc.cells.all() if cell.is_down]
    if not down or binary not in (None, "nova-compute"):
        return []
    hosts = await svc.api_db.read(mappings.hosts_in_cells, svc.cells.ids_of(down))
    return [{"binary": "nova-compute", "host": name, "status": "UNKNOWN"}
            for name in hosts if host is None or name == host]


async def _by_id(request: Request, service_id: str):
    """(cell, service) for an id: a uuid from 2.53, an integer before."""
    if want(request, "2.53"):
        if not UUID_RE.match(service_id):
            raise HTTPError(400, f"Invalid uuid {service_id}")
        ident: int | str = service_id
    else:
        try:
            ident = int(service_id)
        except ValueError:
            raise HTTPError(400, "Invalid input received: id must be an integer.") from None
    matches = []
    for cell in compute_api(request).cells.all():
        try:
            matches.append((cell, await cell.db.read(services.get, ident)))
        except NotFound:
            continue
    if not matches:
        raise HTTPError(404, f"Service {service_id} not found.")
    if len(matches) > 1:
        raise HTTPError(400, f"Service id {service_id} refers to multiple services.")
    return matches[0]


async def _legacy_update(request: Request, action: str):
    """PUT /os-services/{enable,disable,disable-log-reason,force-down} with host and binary (before 2.53)."""
    actions = ["enable", "disable", "disable-log-reason"] + (["force-down"] if want(request, "2.11") else [])
    body = await read_json(request)
    validation.validate(_UPDATE_211 if want(request, "2.11") else _UPDATE, body)
    if action not in actions:
        raise HTTPError(404, "Unknown action")
    host, binary = body["host"], body["binary"]
    reply: dict[str, Any] = {"host": host, "binary": binary}
    if action == "force-down":
        if "forced_down" not in body:
            raise HTTPError(400, "Missing forced_down field")
        values: dict[str, Any] = {"forced_down": _bool(body["forced_down"])}
        reply["forced_down"] = values["forced_down"]
    elif action == "enable":
        values, reply["status"] = {"disabled": False, "disabled_reason": None}, "enabled"
    else:
        if action == "disable-log-reason" and "disabled_reason" not in body:
            raise HTTPError(400, "Missing disabled reason field")
        reason = body.get("disabled_reason") if action == "disable-log-reason" else None
        values, reply["status"] = {"disabled": True, "disabled_reason": reason}, "disabled"
        if reason:
            reply["disabled_reason"] = reason
    if binary != "nova-compute":
        raise HTTPError(400, f"Updating a {binary} service is not supported. Only nova-compute services "
                             "can be updated.")
    found = await all_services(compute_api(request), host=host, binary=binary)
    if not found:
        raise HTTPError(404, f"Could not find binary {binary} on host {host}.")
    if values.get("forced_down") is False:
        for cell, _service in found:
            await _check_for_evacuations(cell, host)
    for cell, service in found:
        await cell.db.write(services.update, service.id, values)
        await _tell_host(compute_api(request), service, values)
    return json_response({"service": reply})


async def _tell_host(svc, service, values: dict[str, Any]) -> None:
    """A compute service disabled or enabled: its host is told at once (upstream's HostAPI.service_update calls the
    compute's ``set_host_enabled``), so its provider's COMPUTE_STATUS_DISABLED changes now and the scheduler's
    Placement pre-filter agrees with the service record. A host that is down or fails is left to sync the trait
    itself when it next reports, as upstream logs and goes on."""
    if "disabled" not in values or bool(values["disabled"]) == bool(service.disabled):
        return
    if not services.is_up(service, svc.conf.getfloat("DEFAULT", "service_down_time")):
        LOG.info("compute service of %s is down: its COMPUTE_STATUS_DISABLED trait follows when it restarts",
                 service.host)
        return
    try:
        await svc.compute_rpc(service.host).call("set_host_enabled", enabled=not values["disabled"])
    except Exception:  # noqa: BLE001 - the service record is written; the host syncs the trait itself later
        LOG.warning("could not tell %s it is %s; its provider's trait follows at its next report", service.host,
                    "disabled" if values["disabled"] else "enabled", exc_info=True)


async def _check_for_evacuations(cell, host: str) -> None:
    """A compute service may not be forced up while evacuations away from its host are ``done`` but not yet
    ``completed``: its agent has not restarted and cleaned up their guests and claims (upstream's 400)."""
    done = await cell.db.read(migrations.on_host, host, ("done",))
    if any(m["migration_type"] == "evacuation" and m["source_compute"] == host for m in done):
        raise HTTPError(400, f"Unable to force up host {host} as `done` evacuation migration records remain "
                             "associated with the host. Ensure the compute service has been restarted, allowing "
                             "these records to move to `completed` before retrying this request.")


async def update_service(request: Request, service_id: str):
    require_admin(request, "os_compute_api:os-services:update")
    if not want(request, "2.53"):
        return await _legacy_update(request, service_id)
    body = await read_json(request)
    validation.validate(_UPDATE_253, body)
    cell, service = await _by_id(request, service_id)
    if service.binary != "nova-compute":
        raise HTTPError(400, f"Updating a {service.binary} service is not supported. Only nova-compute "
                             "services can be updated.")
    values: dict[str, Any] = {}
    if body.get("status") == "enabled":
        if body.get("disabled_reason"):
            raise HTTPError(400, "Specifying 'disabled_reason' with status 'enabled' is invalid.")
        values = {"disabled": False, "disabled_reason": None}
    elif body.get("status") == "disabled":
        values = {"disabled": True, "disabled_reason": body.get("disabled_reason")}
    if "forced_down" in body:
        values["forced_down"] = _bool(body["forced_down"])
    if not values:
        raise HTTPError(400, "No updates were requested. Fields 'status' or 'forced_down' should be specified.")
    if values.get("forced_down") is False:
        await _check_for_evacuations(cell, service.host)
    before, service = service, await cell.db.write(services.update, service.id, values)
    await _tell_host(compute_api(request), before, values)
    zones = await host_zones(compute_api(request))
    return json_response({"service": view(request, service, forced_down=True, zones=zones)})


async def delete_service(request: Request, service_id: str):
    require_admin(request, "os_compute_api:os-services:delete")
    cell, service = await _by_id(request, service_id)
    try:
        await cell.db.write(services.delete, service.id)
    except Conflict as exc:
        raise HTTPError(409, str(exc)) from None
    except NotFound:
        raise HTTPError(404, f"Service {service_id} not found.") from None
    if service.binary == "nova-compute":
        await _forget_host(compute_api(request), service.host)
    return empty_response(204)


async def _forget_host(svc, host: str) -> None:
    """A deleted compute service leaves its aggregates (in Placement too) and its cell mapping."""
    from kilonova.compute.api.aggregates import mirror_membership

    left = await svc.api_db.write(aggregates.remove_host_everywhere, host)
    await mirror_membership(svc, host, left, add=False)
    await svc.api_db.write(mappings.delete_host_mapping, host)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-services", list_services)
    router.add("PUT", "/v2.1/os-services/{service_id}", update_service)
    router.add("DELETE", "/v2.1/os-services/{service_id}", delete_service)
