"""Admin actions on a server: os-resetState, injectNetworkInfo, and the removed resetNetwork (410).

os-resetState sets the vm_state (active or error) and clears the task state whatever the server is
doing, even locked, and records a "resetState" instance action (started and finished at once), as
upstream. injectNetworkInfo hands the guest its network configuration again on its host; upstream
records no instance action for it.
"""
from __future__ import annotations

from kilonova.common.http import HTTPError, empty_response
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.server_actions import tell_host
from kilonova.compute.db import instance_actions, instances

RESET_STATE = {
    "type": "object",
    "properties": {"os-resetState": {
        "type": "object", "properties": {"state": {"type": "string", "enum": ["active", "error"]}},
        "required": ["state"], "additionalProperties": False}},
    "required": ["os-resetState"], "additionalProperties": False,
}
NULL_BODY = {key: {"type": "object", "properties": {key: {"type": "null"}}, "required": [key],
                   "additionalProperties": False} for key in ("injectNetworkInfo", "resetNetwork")}


def _admin_only(request, rule: str) -> None:
    authorize(request, f"os_compute_api:os-admin-actions:{rule}")


def _reset_in_cell(session, uuid: str, state: str, ctx: dict) -> None:
    instance_actions.start(session, uuid, "resetState", ctx.get("request_id"), ctx.get("user_id"),
                           ctx.get("project_id"))
    instances.update(session, uuid, {"vm_state": state, "task_state": None})
    instance_actions.finish(session, uuid, "resetState", request_id=ctx.get("request_id"))


@handles("os-resetState")
async def reset_state(request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(RESET_STATE, body)
    _admin_only(request, "reset_state")
    if ref.cell is None:
        raise HTTPError(409, f"Instance {ref.uuid} is still being scheduled.")
    await ref.cell.db.write(_reset_in_cell, ref.uuid, body[key]["state"], request.state.context.to_dict())
    return empty_response(202)


@handles("injectNetworkInfo")
async def inject_network_info(request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(NULL_BODY[key], body)
    _admin_only(request, "inject_network_info")
    if ref.cell is None or not ref.server.get("host"):
        raise HTTPError(409, f"Instance {ref.uuid} is not ready")
    await tell_host(compute_api(request), ref.server, "inject_network_info")
    return empty_response(202)


@handles("resetNetwork")
async def reset_network(request, ref: lookup.ServerRef, key: str, body: dict):
    """Removed upstream in 23.0.0 (it only worked with the Xen driver): 410 for everybody."""
    validation.validate(NULL_BODY[key], body)
    raise HTTPError(410, "This resource is no longer available.  No forwarding address is given.")
