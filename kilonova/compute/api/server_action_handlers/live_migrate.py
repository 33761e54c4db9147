"""``os-migrateLive``: live-migrate a server (admin), as upstream's migrate_server controller.

Body per microversion: ``host`` (null: scheduled) and ``block_migration`` always required;
``disk_over_commit`` required until 2.24 and refused from 2.25, where ``block_migration`` may be
``"auto"``; ``force`` from 2.30 to 2.67 (refused before and after). A named host is checked to exist
(400) after the state rule (409). From 2.34 the checks run after the 202 (a refusal ends the
migration ``error`` and the server stays where it is); before, the API waits for them and answers
their refusal with 400.
"""
from __future__ import annotations

import copy
import uuid as uuidlib

from starlette.requests import Request

from kilonova.common.http import HTTPError, empty_response
from kilonova.common.rpc import RemoteError, RPCError
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize, server_target
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.server_actions import begin
from kilonova.compute.cells import CellDown
from kilonova.compute.conductor.tasks.live_migrate import REFUSALS
from kilonova.compute.db import compute_nodes

BOOLEAN = validation.BOOLEAN   # oslo's strict bool_from_string reads them
HOST = {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"}

SCHEMA_2_1 = {"type": "object", "properties": {"os-migrateLive": {
    "type": "object",
    "properties": {"block_migration": BOOLEAN, "disk_over_commit": BOOLEAN, "host": HOST},
    "required": ["block_migration", "disk_over_commit", "host"], "additionalProperties": False}},
    "required": ["os-migrateLive"], "additionalProperties": False}
SCHEMA_2_25 = copy.deepcopy(SCHEMA_2_1)
_body = SCHEMA_2_25["properties"]["os-migrateLive"]
del _body["properties"]["disk_over_commit"]
_body["properties"]["block_migration"] = {**BOOLEAN, "enum": BOOLEAN["enum"] + ["auto"]}
_body["required"] = ["block_migration", "host"]
SCHEMA_2_30 = copy.deepcopy(SCHEMA_2_25)
SCHEMA_2_30["properties"]["os-migrateLive"]["properties"]["force"] = BOOLEAN
SCHEMA_2_68 = SCHEMA_2_25  # force removed again

_TRUE = ("1", "t", "true", "on", "y", "yes")


def _bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in _TRUE


def _schema(request: Request) -> dict:
    if want(request, "2.68"):
        return SCHEMA_2_68
    if want(request, "2.30"):
        return SCHEMA_2_30
    if want(request, "2.25"):
        return SCHEMA_2_25
    return SCHEMA_2_1


async def _host_exists(ref: lookup.ServerRef, host: str) -> bool:
    """A compute node of ``host`` in the server's cell (another cell's host cannot take it)."""
    try:
        return await ref.cell.read(compute_nodes.get_by_host, host) is not None
    except CellDown:
        raise lookup.cell_unavailable(ref.cell) from None


@handles("os-migrateLive")
async def migrate_live(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    ctx = request.state.context
    validation.validate(_schema(request), body)
    authorize(request, "os_compute_api:os-migrate-server:migrate_live", server_target(ref.server))
    args = body[key]
    host = args["host"]
    if host is not None:
        authorize(request, "os_compute_api:os-migrate-server:migrate_live:host", server_target(ref.server))
    block_migration = None if args["block_migration"] == "auto" else _bool(args["block_migration"])
    if want(request, "2.30") and not want(request, "2.68"):
        force = _bool(args.get("force", False))
        if force and not host:
            raise HTTPError(400, "Can't force to a non-provided destination")
    else:
        force = not want(request, "2.30")  # before 2.30 a named host is not checked by the scheduler
    action = ACTIONS[key]
    server = ref.server
    if ref.cell is not None and not ref.cell.is_cell0 and server.get("host") and \
            not action.allows(server["vm_state"], server.get("task_state")):
        raise HTTPError(409, action.conflict_message(ref.uuid, server["vm_state"], server.get("task_state")))
    if host and ref.cell is not None and not ref.cell.is_cell0 and not await _host_exists(ref, host):
        raise HTTPError(400, f"Compute host {host} could not be found.")
    await begin(request, ref, key)
    conductor = compute_api(request).conductor
    kwargs = dict(instance_uuid=ref.uuid, migration_uuid=str(uuidlib.uuid4()), host=host,
                  block_migration=block_migration, force=bool(host and force),
                  request_id=ctx.request_id)
    if want(request, "2.34"):
        await conductor.cast("live_migrate_instance", **kwargs)
        return empty_response(202)
    try:
        await conductor.call("live_migrate_instance", wait=True, **kwargs)
    except RemoteError as exc:
        if exc.exc_type in REFUSALS:
            raise HTTPError(400, exc.message) from None
        raise HTTPError(500, f"Unexpected API Error: {exc.message}") from None
    except RPCError as exc:
        raise HTTPError(500, f"Unexpected API Error: {exc}") from None
    return empty_response(202)
