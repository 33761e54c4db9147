"""POST /v2.1/servers/{id}/action: one small unit per action.

Each unit names the states it may start from and the task state it sets; the
state change is a compare-and-swap in the cell database, so two concurrent
actions cannot both start. Then the compute agent of the server's host is told.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.common.rpc import NoSuchTarget, RPCError
from kilonova.compute.api import lookup, server_action_handlers, server_records, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize, server_target
from kilonova.compute.api.remote_consoles import get_vnc_console
from kilonova.compute.api.create_image import create_image
from kilonova.compute.api.microversions import want
from kilonova.compute import policies
from kilonova.compute.actions import ACTIONS, ANY, Action
from kilonova.compute.db import instance_actions, instances
from kilonova.compute.db.instances import UnexpectedTaskState


def _conflict(ref: lookup.ServerRef, action: Action, server: dict) -> HTTPError:
    return HTTPError(409, action.conflict_message(ref.uuid, server["vm_state"], server.get("task_state")))


def check_policy(request: Request, ref: lookup.ServerRef, action: Action) -> None:
    """The action's upstream policy rule on the server (403), then the lock (409 for non-admins)."""
    authorize(request, policies.ACTION_RULES[action.key], server_target(ref.server))
    if action.lock_checked and ref.server.get("locked") and not request.state.context.is_admin:
        raise HTTPError(409, f"Instance {ref.uuid} is locked")


def check_startable(request: Request, ref: lookup.ServerRef, key: str) -> None:
    """What ``begin`` checks before it changes anything (policy, lock, state): for a handler that must
    refuse a bad state before it looks at other things, as upstream's decorators do."""
    action = ACTIONS[key]
    check_policy(request, ref, action)
    if ref.cell is None or ref.cell.is_cell0 or not action.allows(ref.server["vm_state"], ref.server.get("task_state")):
        raise _conflict(ref, action, ref.server)


def _begin_in_cell(session, uuid: str, action: Action, ctx: dict, values: dict, also=None) -> dict:
    """The state change (compare-and-set on the action's start states) and its instance action, together
    (and ``also(session)``, another write of the action's own)."""
    if action.task_state is not None:
        values = {"task_state": action.task_state, **values}
    server = instances.update(session, uuid, values,
                              expected_task_state=None if action.task_states is ANY else list(action.task_states),
                              expected_vm_state=None if action.vm_states is ANY else list(action.vm_states))
    if action.instance_action:
        instance_actions.start(session, uuid, action.instance_action, ctx.get("request_id"), ctx.get("user_id"),
                               ctx.get("project_id"))
    if also is not None:
        also(session)
    return server


async def begin(request: Request, ref: lookup.ServerRef, key: str, values: dict | None = None,
                needs_host: bool = True, also=None) -> dict:
    """Start action ``key`` on the server: policy, lock, state rule, then the state change and the record of
    the action in one transaction. Returns the server as it is now. 409 when the state does not allow it
    (also when another action won the race), or when the server has no host yet and ``needs_host``."""
    action = ACTIONS[key]
    check_policy(request, ref, action)
    if ref.cell is None or ref.cell.is_cell0 or (needs_host and not ref.server.get("host")):
        raise _conflict(ref, action, ref.server)
    if not action.allows(ref.server["vm_state"], ref.server.get("task_state")):
        raise _conflict(ref, action, ref.server)
    try:
        return await ref.cell.db.write(_begin_in_cell, ref.uuid, action, request.state.context.to_dict(),
                                       values or {}, also)
    except UnexpectedTaskState:
        current = await ref.cell.db.read(instances.get, ref.uuid)
        raise _conflict(ref, action, current) from None


def _undo_in_cell(session, uuid: str, action: Action, request_id: str | None, values: dict) -> None:
    instances.update(session, uuid, {**values, "task_state": None}, expected_task_state=[action.task_state])
    if action.instance_action:
        instance_actions.finish(session, uuid, action.instance_action, "Error", request_id=request_id)


async def undo_begin(ref: lookup.ServerRef, key: str, request_id: str | None, values: dict | None = None) -> None:
    """An action begun but not handed over (its host or the conductor unreachable, its image refused): the
    task state back (with ``values``: what else the action's start changed, as it was) and its instance
    action finished as failed. Nothing to undo if the server changed meanwhile (deleted...)."""
    try:
        await ref.cell.db.write(_undo_in_cell, ref.uuid, ACTIONS[key], request_id, values or {})
    except (NotFound, UnexpectedTaskState):
        pass


async def tell_host(svc, server: dict, method: str, **kwargs) -> None:
    """Cast ``method`` to the server's compute host; 409 when that host cannot be reached."""
    try:
        await svc.compute_rpc(server["host"]).cast(method, instance=server, **kwargs)
    except NoSuchTarget:
        raise HTTPError(409, f"Compute host {server['host']} could not be reached.") from None


async def power_action(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    server = await begin(request, ref, key)
    await tell_host(compute_api(request), server, ACTIONS[key].rpc_method,
                    request_id=request.state.context.request_id)
    return empty_response(202)


async def reboot(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    kind = (body.get("reboot") or {}).get("type") if isinstance(body.get("reboot"), dict) else None
    if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
        raise HTTPError(400, "Invalid input for field/attribute type. Value must be one of 'SOFT', 'HARD'.")
    server = await begin(request, ref, "reboot-hard" if kind.upper() == "HARD" else "reboot")
    await tell_host(compute_api(request), server, "reboot_instance", reboot_type=kind.upper(),
                    request_id=request.state.context.request_id)
    return empty_response(202)


# upstream's schema; -1 (or none) is the whole log. The largest length is what an RPC message carries.
MAX_CONSOLE_LENGTH = 2 ** 63 - 1
CONSOLE_OUTPUT = {"type": "object", "properties": {"os-getConsoleOutput": {
    "type": ["object", "null"], "properties": {"length": {
        "type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$", "minimum": -1, "maximum": MAX_CONSOLE_LENGTH}},
    "additionalProperties": False}}, "required": ["os-getConsoleOutput"], "additionalProperties": False}


async def console_output(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(CONSOLE_OUTPUT, body)
    length = (body[key] or {}).get("length")
    if length is not None:
        length = int(length)   # a string of digits: its range is checked here, as the schema cannot
        if not -1 <= length <= MAX_CONSOLE_LENGTH:
            raise HTTPError(400, f"Invalid input for field/attribute length. Value: {length}. "
                                 f"It must be between -1 and {MAX_CONSOLE_LENGTH}.")
    if ref.cell is None or not ref.server.get("host"):
        raise HTTPError(409, f"Instance {ref.uuid} has not been scheduled to a host yet.")
    try:
        output = await compute_api(request).compute_rpc(ref.server["host"]).call(
            "get_console_output", instance=ref.server, length=length)
    except (RPCError,) as exc:
        raise HTTPError(409, f"Console output is not available for instance {ref.uuid}: {exc}") from None
    return json_response({"output": output})


# From 2.73 a lock may say why (before, the body of "lock" is not looked at).
LOCK_2_73 = {"type": "object", "properties": {"lock": {
    "type": ["object", "null"], "properties": {"locked_reason": {"type": "string", "minLength": 1, "maxLength": 255}},
    "additionalProperties": False}}, "required": ["lock"], "additionalProperties": False}


async def lock(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    ctx = request.state.context
    if key == "lock" and want(request, "2.73"):
        validation.validate(LOCK_2_73, body)
    if ref.cell is None:
        raise HTTPError(409, f"Instance {ref.uuid} is still being scheduled.")
    locked = key == "lock"
    if locked and ref.server.get("locked") and ctx.project_id == ref.server["project_id"]:
        return empty_response(202)  # the owner locking again changes nothing, as upstream
    if not locked and ref.server.get("locked_by") == "admin" and not ctx.is_admin:
        authorize(request, "os_compute_api:os-lock-server:unlock:unlock_override", server_target(ref.server))
    reason = (body.get("lock") or {}).get("locked_reason") if locked and want(request, "2.73") else None
    host = compute_api(request).conf.get("DEFAULT", "host")
    await ref.cell.db.write(_lock_in_cell, ref.uuid, key, ctx.to_dict(), host,
                            {"locked": locked, "locked_by": ("admin" if ctx.is_admin else "owner") if locked else None,
                             "system_metadata": server_records.with_locked_reason(ref.server, reason)})
    return empty_response(202)


def _lock_in_cell(session, uuid: str, key: str, ctx: dict, host: str, values: dict) -> None:
    """The lock change and its instance action ("lock"/"unlock", one api_lock/api_unlock step, as upstream
    records it), together."""
    instances.update(session, uuid, values)
    instance_actions.record_done(session, uuid, key, ctx.get("request_id"), ctx.get("user_id"),
                                 ctx.get("project_id"), f"api_{key}", host)


POWER_KEYS = ("os-start", "os-stop", "pause", "unpause", "suspend", "resume")
HANDLERS = {**{key: power_action for key in POWER_KEYS}, "reboot": reboot,
           "os-getVNCConsole": get_vnc_console,
           "os-getConsoleOutput": console_output, "lock": lock, "unlock": lock, "createImage": create_image}


async def server_action(request: Request, server_id: str):
    body = await read_json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise HTTPError(400, "There is no such action: the body must name exactly one action.")
    key = next(iter(body))
    handler = HANDLERS.get(key) or server_action_handlers.HANDLERS.get(key)
    if handler is None:
        raise HTTPError(400, f"There is no such action: {key}")
    ctx = request.state.context
    ref = await lookup.find(compute_api(request), ctx, server_id)
    if key in policies.ACTION_RULES:   # (resetNetwork, gone upstream, answers 410 to everyone)
        authorize(request, policies.ACTION_RULES[key], server_target(ref.server))
    return await handler(request, ref, key, body)


def register(router: Router) -> None:
    server_action_handlers.load()
    router.add("POST", "/v2.1/servers/{server_id}/action", server_action)
