"""POST /v2.1/servers/{id}/action: one small unit per action.

Each unit names the states it may start from and the task state it sets; the
state change is a compare-and-swap in the cell database, so two concurrent
actions cannot both start. Then the compute agent of the server's host is told.
"""
from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.common.rpc import NoSuchTarget, RPCError
from kilonova.compute.api import lookup, server_records, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.remote_consoles import get_vnc_console
from kilonova.compute.api.create_image import create_image
from kilonova.compute.api.microversions import want
from kilonova.compute.db import instances
from kilonova.compute.db.instances import UnexpectedTaskState


@dataclass(frozen=True)
class PowerAction:
    name: str            # the word used in error messages ("start", "stop", ...)
    from_vm_states: tuple
    task_state: str
    rpc_method: str


POWER_ACTIONS = {
    "os-start": PowerAction("start", ("stopped",), "powering-on", "start_instance"),
    "os-stop": PowerAction("stop", ("active", "error", "paused", "suspended", "rescued"), "powering-off",
                           "stop_instance"),
    "pause": PowerAction("pause", ("active",), "pausing", "pause_instance"),
    "unpause": PowerAction("unpause", ("paused",), "unpausing", "unpause_instance"),
    "suspend": PowerAction("suspend", ("active",), "suspending", "suspend_instance"),
    "resume": PowerAction("resume", ("suspended",), "resuming", "resume_instance"),
}


def _conflict(uuid: str, action: str, server: dict) -> HTTPError:
    if server.get("task_state"):
        return HTTPError(409, f"Cannot '{action}' instance {uuid} while it is in task_state {server['task_state']}")
    return HTTPError(409, f"Cannot '{action}' instance {uuid} while it is in vm_state {server['vm_state']}")


async def _transition(ref: lookup.ServerRef, action: str, from_vm_states: tuple, task_state: str) -> dict:
    if ref.cell is None or ref.cell.is_cell0 or not ref.server.get("host"):
        raise _conflict(ref.uuid, action, ref.server)
    if ref.server["vm_state"] not in from_vm_states or ref.server.get("task_state"):
        raise _conflict(ref.uuid, action, ref.server)
    try:
        return await ref.cell.db.write(instances.update, ref.uuid, {"task_state": task_state},
                                       expected_task_state=[None], expected_vm_state=list(from_vm_states))
    except UnexpectedTaskState:
        current = await ref.cell.db.read(instances.get, ref.uuid)
        raise _conflict(ref.uuid, action, current) from None


async def _tell_host(svc, server: dict, method: str, **kwargs) -> None:
    try:
        await svc.compute_rpc(server["host"]).cast(method, instance=server, **kwargs)
    except NoSuchTarget:
        raise HTTPError(409, f"Compute host {server['host']} could not be reached.") from None


def _check_lock(ctx, ref: lookup.ServerRef) -> None:
    if ref.server.get("locked") and not ctx.is_admin:
        raise HTTPError(409, f"Instance {ref.uuid} is locked")


async def power_action(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    spec = POWER_ACTIONS[key]
    _check_lock(request.state.context, ref)
    server = await _transition(ref, spec.name, spec.from_vm_states, spec.task_state)
    await _tell_host(compute_api(request), server, spec.rpc_method)
    return empty_response(202)


async def reboot(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    kind = (body.get("reboot") or {}).get("type") if isinstance(body.get("reboot"), dict) else None
    if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
        raise HTTPError(400, "Invalid input for field/attribute type. Value must be one of 'SOFT', 'HARD'.")
    _check_lock(request.state.context, ref)
    hard = kind.upper() == "HARD"
    allowed = ("active", "stopped", "paused", "suspended", "error") if hard else ("active",)
    server = await _transition(ref, "reboot", allowed, "rebooting_hard" if hard else "rebooting")
    await _tell_host(compute_api(request), server, "reboot_instance", reboot_type=kind.upper())
    return empty_response(202)


async def console_output(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    args = body.get(key) or {}
    length = args.get("length") if isinstance(args, dict) else None
    if length is not None:
        try:
            length = int(length)
        except (TypeError, ValueError):
            raise HTTPError(400, "Invalid input for field/attribute length.") from None
        if length < -1:
            raise HTTPError(400, "Invalid input for field/attribute length. Value must be >= -1.")
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
        raise HTTPError(403, "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override "
                             "to be performed.")
    reason = (body.get("lock") or {}).get("locked_reason") if locked and want(request, "2.73") else None
    await ref.cell.db.write(instances.update, ref.uuid,
                            {"locked": locked, "locked_by": ("admin" if ctx.is_admin else "owner") if locked else None,
                             "system_metadata": server_records.with_locked_reason(ref.server, reason)})
    return empty_response(202)


ACTIONS = {**{key: power_action for key in POWER_ACTIONS}, "reboot": reboot,
           "os-getVNCConsole": get_vnc_console,
           "os-getConsoleOutput": console_output, "lock": lock, "unlock": lock, "createImage": create_image}


async def server_action(request: Request, server_id: str):
    body = await read_json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise HTTPError(400, "There is no such action: the body must name exactly one action.")
    key = next(iter(body))
    handler = ACTIONS.get(key)
    if handler is None:
        raise HTTPError(400, f"There is no such action: {key}")
    ctx = request.state.context
    ref = await lookup.find(compute_api(request), ctx, server_id)
    if not ctx.can_write and key != "os-getConsoleOutput":
        raise HTTPError(403, f"Policy doesn't allow server action {key} to be performed.")
    return await handler(request, ref, key, body)


def register(router: Router) -> None:
    router.add("POST", "/v2.1/servers/{server_id}/action", server_action)
