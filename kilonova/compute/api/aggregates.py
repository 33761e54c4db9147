"""/v2.1/os-aggregates: host aggregates and the availability zones they define (admin only).

Membership is mirrored into Placement as upstream does: the resource provider
named after the host lists the uuid of each aggregate the host is in. Failing to
mirror is logged, never fatal.
"""
from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request

from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import require_admin
from kilonova.compute.api.microversions import want
from kilonova.compute.api.services import iso
from kilonova.compute.db import aggregates, mappings, services

LOG = logging.getLogger(__name__)
POLICY = "os_compute_api:os-aggregates:{}"
PLACEMENT_RETRIES = 4

_AZ = {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^(?!\s)[^:]*(?<!\s)$"},
                 {"type": "null"}]}
_NAME_SPACES = dict(validation.NAME_WITH_SPACES, pattern=r"\S")
_HOST = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[a-zA-Z0-9-._]*$"}
_METADATA = {"type": "object", "additionalProperties": False, "patternProperties": {
    r"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": ["string", "null"], "maxLength": 255}}}


def _wrap(key: str, props: dict, required: list[str] | None = None, **extra: Any) -> dict:
    inner: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False, **extra}
    if required:
        inner["required"] = required
    return {"type": "object", "properties": {key: inner}, "required": [key], "additionalProperties": False}


_CREATE = _wrap("aggregate", {"name": validation.NAME, "availability_zone": _AZ}, ["name"])
_UPDATE = _wrap("aggregate", {"name": _NAME_SPACES, "availability_zone": _AZ},
                anyOf=[{"required": ["name"]}, {"required": ["availability_zone"]}])
_ACTIONS = {"add_host": _wrap("add_host", {"host": _HOST}, ["host"]),
            "remove_host": _wrap("remove_host", {"host": _HOST}, ["host"]),
            "set_metadata": _wrap("set_metadata", {"metadata": _METADATA}, ["metadata"])}


def _view(request: Request, agg: dict[str, Any], *, members: bool = True) -> dict[str, Any]:
    body = {"availability_zone": agg["availability_zone"], "created_at": iso(agg["created_at"]),
            "deleted": False, "deleted_at": None, "id": agg["id"], "name": agg["name"],
            "updated_at": iso(agg["updated_at"])}
    if members:
        body.update(hosts=agg["hosts"], metadata=agg["metadata"])
    if want(request, "2.41"):
        body["uuid"] = agg["uuid"]
    return body


def _id(aggregate_id: str) -> int:
    try:
        return int(aggregate_id)
    except ValueError:
        raise HTTPError(400, "Invalid input received: id must be an integer") from None


async def _call(request: Request, fn, *args: Any, invalid: int = 400) -> dict[str, Any]:
    """One write to the aggregates table, its domain errors as Nova's statuses."""
    try:
        return await compute_api(request).api_db.write(fn, *args)
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    except Conflict as exc:
        raise HTTPError(409, str(exc)) from None
    except aggregates.InvalidAction as exc:
        raise HTTPError(invalid, str(exc)) from None


async def list_aggregates(request: Request):
    require_admin(request, POLICY.format("index"))
    found = await compute_api(request).api_db.read(aggregates.list_aggregates)
    return json_response({"aggregates": [_view(request, agg) for agg in found]})


async def create_aggregate(request: Request):
    require_admin(request, POLICY.format("create"))
    body = await read_json(request)
    validation.validate(_CREATE, body)
    values = body["aggregate"]
    agg = await _call(request, aggregates.create, values["name"].strip(), values.get("availability_zone"))
    return json_response({"aggregate": _view(request, agg, members=False)})


async def show_aggregate(request: Request, aggregate_id: str):
    require_admin(request, POLICY.format("show"))
    try:
        agg = await compute_api(request).api_db.read(aggregates.get, _id(aggregate_id))
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    return json_response({"aggregate": _view(request, agg)})


async def update_aggregate(request: Request, aggregate_id: str):
    require_admin(request, POLICY.format("update"))
    body = await read_json(request)
    validation.validate(_UPDATE, body)
    values = dict(body["aggregate"])
    if "name" in values:
        values["name"] = values["name"].strip()
    agg = await _call(request, aggregates.update, _id(aggregate_id), values)
    return json_response({"aggregate": _view(request, agg)})


async def delete_aggregate(request: Request, aggregate_id: str):
    require_admin(request, POLICY.format("delete"))
    await _call(request, aggregates.delete, _id(aggregate_id))
    return empty_response(200)


async def aggregate_action(request: Request, aggregate_id: str):
    body = await read_json(request)
    action = next(iter(body), "") if isinstance(body, dict) else ""
    if action not in _ACTIONS or len(body) != 1:
        raise HTTPError(400, f"There is no such action: {action}")
    require_admin(request, POLICY.format(action))
    ident = _id(aggregate_id)
    validation.validate(_ACTIONS[action], body)
    if action == "set_metadata":
        agg = await _call(request, aggregates.set_metadata, ident, body[action]["metadata"])
    elif action == "add_host":
        agg = await _add_host(request, ident, body[action]["host"])
    else:
        agg = await _remove_host(request, ident, body[action]["host"])
    return json_response({"aggregate": _view(request, agg)})


_CACHE_IMAGES = {"type": "object", "properties": {"cache": {
    "type": "array", "minItems": 1, "items": {"type": "object", "properties": {"id": validation.UUID},
                                              "additionalProperties": False, "required": ["id"]}}},
    "required": ["cache"], "additionalProperties": False}


async def cache_images(request: Request, aggregate_id: str):
    """POST /os-aggregates/{id}/images (2.81): ask the aggregate's hosts to fetch images ahead of boots.

    Accepted with upstream's checks. No virt driver here offers pre-caching (each host caches an
    image when it first boots from it), so, as upstream's computes whose driver lacks it, the hosts
    skip the request.
    """
    if not want(request, "2.81"):
        raise HTTPError(404, "The resource could not be found.")
    require_admin(request, "compute:aggregates:images")
    body = await read_json(request)
    validation.validate(_CACHE_IMAGES, body)
    ident = _id(aggregate_id)
    image_ids = [item["id"] for item in body["cache"]]
    if len(set(image_ids)) != len(image_ids):
        raise HTTPError(400, "Duplicate images in request")
    try:
        await compute_api(request).api_db.read(aggregates.get, ident)
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    return empty_response(202)


async def _add_host(request: Request, ident: int, host: str) -> dict[str, Any]:
    svc = compute_api(request)
    if not await host_known(svc, host):
        raise HTTPError(404, f"Compute host {host} could not be found.")
    agg = await _call(request, aggregates.add_host, ident, host, invalid=409)
    await mirror_membership(svc, host, [agg["uuid"]], add=True)
    return agg


async def _remove_host(request: Request, ident: int, host: str) -> dict[str, Any]:
    svc = compute_api(request)
    try:
        agg = await svc.api_db.write(aggregates.remove_host, ident, host)
    except NotFound:
        raise HTTPError(404, f"Cannot remove host {host} in aggregate {ident}") from None
    await mirror_membership(svc, host, [agg["uuid"]], add=False)
    return agg


async def host_known(svc, host: str) -> bool:
    """A compute host is known when it is mapped to a cell or has a compute service record."""
    if await svc.api_db.read(lambda s: mappings.get_host_mapping(s, host) is not None):
        return True
    for cell in svc.cells.real():
        if await cell.db.read(lambda s: services.find(s, host, "nova-compute") is not None):
            return True
    return False


# ---------------------------------------------------------------- Placement mirror

async def mirror_membership(svc, host: str, aggregate_uuids: list[str], *, add: bool) -> None:
    """Add (or remove) aggregate uuids to the provider aggregates of the provider named ``host``."""
    placement = getattr(svc, "placement", None)
    if placement is None or not aggregate_uuids:
        return
    try:
        await _mirror(placement, host, set(aggregate_uuids), add)
    except Exception:  # noqa: BLE001 - as upstream, a failed mirror never fails the API call
        LOG.exception("could not mirror aggregates %s of host %s into Placement", aggregate_uuids, host)


async def _mirror(placement, host: str, uuids: set[str], add: bool) -> None:
    response = await placement.get("/resource_providers", params={"name": host})
    providers = response.json().get("resource_providers", []) if response.status_code == 200 else []
    if not providers:
        LOG.warning("no resource provider named %s in Placement; aggregates %s not mirrored", host, sorted(uuids))
        return
    path = f"/resource_providers/{providers[0]['uuid']}/aggregates"
    for _ in range(PLACEMENT_RETRIES):
        response = await placement.get(path)
        if response.status_code != 200:
            break
        current = response.json()
        before = set(current["aggregates"])
        after = before | uuids if add else before - uuids
        if after == before:
            return
        response = await placement.put(path, json={
            "aggregates": sorted(after), "resource_provider_generation": current["resource_provider_generation"]})
        if response.status_code == 200:
            return
        if response.status_code != 409:
            break
    LOG.warning("could not update the aggregates of provider %s in Placement: %s %s", host,
                response.status_code, response.text[:200])


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-aggregates", list_aggregates)
    router.add("POST", "/v2.1/os-aggregates", create_aggregate)
    router.add("GET", "/v2.1/os-aggregates/{aggregate_id}", show_aggregate)
    router.add("PUT", "/v2.1/os-aggregates/{aggregate_id}", update_aggregate)
    router.add("DELETE", "/v2.1/os-aggregates/{aggregate_id}", delete_aggregate)
    router.add("POST", "/v2.1/os-aggregates/{aggregate_id}/action", aggregate_action)
    router.add("POST", "/v2.1/os-aggregates/{aggregate_id}/images", cache_images)
