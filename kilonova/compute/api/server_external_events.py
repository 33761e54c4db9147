"""POST /v2.1/os-server-external-events: other services tell the compute service what happened to a server.

The network service sends ``network-vif-plugged`` when a server's port becomes ACTIVE (its binding to
a host completed), ``network-vif-unplugged`` when it goes down, ``network-vif-deleted`` when it is
deleted, ``network-changed`` when its addresses change. Each event is answered on its own: code 200
when it was handed to the server's host (and, during a move, to the other host of the move too),
404 for an unknown server, 422 for a server without a host yet, 400 for an event that needs a tag
and has none; the answer is 207 when any failed, 404 when none was accepted, as upstream. The
events reach the hosts as the ``external_instance_event`` RPC cast (kilonova/compute/agent/operations/events.py).
Admin (or the ``service`` role) only.
"""
from __future__ import annotations

import logging
from collections import defaultdict

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response, read_json
from kilonova.common.rpc import RPCError
from kilonova.compute.api import common
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.db import migrations

LOG = logging.getLogger(__name__)

_NAMES = ("network-changed", "network-vif-plugged", "network-vif-unplugged", "network-vif-deleted")
# The names each microversion added, and the events upstream refuses without a tag.
_NAMES_SINCE = (("2.51", "volume-extended"), ("2.76", "power-update"), ("2.82", "accelerator-request-bound"))
TAG_REQUIRED = ("volume-extended", "power-update", "accelerator-request-bound")
STATUSES = ("failed", "completed", "in-progress")


def _schema(names: list[str]) -> dict:
    event = {"type": "object", "properties": {
        "server_uuid": {"type": "string", "format": "uuid"}, "name": {"type": "string", "enum": names},
        "status": {"type": "string", "enum": list(STATUSES)}, "tag": {"type": "string", "maxLength": 255}},
        "required": ["server_uuid", "name"], "additionalProperties": False}
    return {"type": "object", "properties": {"events": {"type": "array", "minItems": 1, "items": event}},
            "required": ["events"], "additionalProperties": False}


# The schema of each microversion range: the base names, then one more name from each boundary on.
_SCHEMAS = [("2.1", _schema(list(_NAMES)))] + [
    (version, _schema([*_NAMES, *(name for _v, name in _NAMES_SINCE[:index + 1])]))
    for index, (version, _name) in enumerate(_NAMES_SINCE)]


def _schema_for(request: Request) -> dict:
    return next(schema for version, schema in reversed(_SCHEMAS) if want(request, version))


async def _hosts(ref: lookup.ServerRef) -> list[str]:
    """The server's host, and during a move the move's other host (both may be waiting for the event)."""
    hosts = [ref.server["host"]]
    move = await ref.cell.db.read(migrations.in_progress_for, ref.uuid)
    for host in (move or {}).get("source_compute"), (move or {}).get("dest_compute"):
        if host and host not in hosts:
            hosts.append(host)
    return hosts


async def create_events(request: Request):
    ctx = request.state.context
    common.authorize(request, "os_compute_api:os-server-external-events:create")
    body = await read_json(request)
    validation.validate(_schema_for(request), body)
    svc = compute_api(request)
    refs: dict[str, lookup.ServerRef | None] = {}
    for uuid in dict.fromkeys(event["server_uuid"] for event in body["events"]):
        try:
            refs[uuid] = await lookup.find(svc, ctx, uuid)
        except HTTPError as exc:
            if exc.status != 404:
                raise
            refs[uuid] = None
    answered, code = [], 200
    by_host: dict[str, tuple[dict, list]] = defaultdict(lambda: ({}, []))
    for sent in body["events"]:
        event = {"name": sent["name"], "status": sent.get("status", "completed"), "tag": sent.get("tag"),
                 "server_uuid": sent["server_uuid"]}
        reply = dict(sent)
        answered.append(reply)
        ref = refs[event["server_uuid"]]
        if ref is None:
            reply.update(status="failed", code=404)
        elif event["name"] in TAG_REQUIRED and event["tag"] is None:
            reply.update(status="failed", code=400)
        elif ref.cell is None or ref.down or not ref.server.get("host"):
            reply.update(status="failed", code=422)
        else:
            for host in await _hosts(ref):
                servers, events = by_host[host]
                servers[ref.uuid] = ref.server
                events.append(event)
            reply.update(status="completed", code=200)
            continue
        code = 207
    if not by_host:
        raise HTTPError(404, "No instances found for any event")
    for host, (servers, events) in by_host.items():
        LOG.info("external events %s for %s", [f"{e['name']}:{e['tag']}" for e in events], host)
        try:
            await svc.compute_rpc(host).cast("external_instance_event", instances=list(servers.values()),
                                             events=events)
        except RPCError as exc:  # as upstream, an event a host cannot get is lost, not an error of the request
            LOG.warning("external events for %s could not be sent: %s", host, exc)
    return json_response({"events": answered}, status=code)


def register(router: Router) -> None:
    router.add("POST", "/v2.1/os-server-external-events", create_events)
