"""Remote consoles: a one-time URL to a server's VNC console through the noVNC proxy.

``POST /v2.1/servers/{id}/remote-consoles`` (microversion 2.6 and later) and the
older action ``os-getVNCConsole`` (2.1 to 2.5) ask the server's compute host
where the guest's VNC server listens, record a token for it in the API
database and answer the proxy's URL with that token. Only VNC through noVNC
is offered; the other protocols upstream knows are answered as unavailable.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response, read_json
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError
from kilonova.compute.api import common
from kilonova.compute.api import lookup, microversions, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.db import console_tokens
from kilonova.console import urls

_PROTOCOLS_2_6 = ["vnc", "spice", "rdp", "serial"]
_TYPES_2_6 = ["novnc", "xvpvnc", "rdp-html5", "spice-html5", "serial"]


def _create_schema(protocols: list[str], types: list[str]) -> dict:
    return {"type": "object", "properties": {"remote_console": {
        "type": "object",
        "properties": {"protocol": {"type": "string", "enum": protocols}, "type": {"type": "string", "enum": types}},
        "required": ["protocol", "type"], "additionalProperties": False}},
        "required": ["remote_console"], "additionalProperties": False}


CREATE_2_6 = _create_schema(_PROTOCOLS_2_6, _TYPES_2_6)
CREATE_2_8 = _create_schema(_PROTOCOLS_2_6 + ["mks"], _TYPES_2_6 + ["webmks"])  # 2.8 added MKS
CREATE_2_99 = _create_schema(_PROTOCOLS_2_6 + ["mks"], _TYPES_2_6 + ["webmks", "spice-direct"])  # 2.99


def _create_schema_for(request: Request) -> dict:
    if microversions.want(request, "2.99"):
        return CREATE_2_99
    return CREATE_2_8 if microversions.want(request, "2.8") else CREATE_2_6
GET_VNC_CONSOLE = {"type": "object", "properties": {"os-getVNCConsole": {
    "type": "object", "properties": {"type": {"type": "string", "enum": ["novnc", "xvpvnc"]}},
    "required": ["type"], "additionalProperties": False}},
    "required": ["os-getVNCConsole"], "additionalProperties": False}

# Task states during which the guest's console is about to go away (upstream rejects the same).
_BUSY_TASK_STATES = ("deleting", "migrating")


def _check_policy(request: Request) -> None:
    common.authorize(request, "os_compute_api:os-remote-consoles")


async def vnc_console_url(request: Request, ref: lookup.ServerRef, console_type: str) -> str:
    """A fresh one-time URL for ``ref``'s noVNC console, or the HTTPError upstream answers."""
    svc = compute_api(request)
    conf = svc.conf
    if not conf.getbool("vnc", "enabled"):
        raise HTTPError(400, f"Unavailable console type {console_type}.")
    if console_type != "novnc":
        raise HTTPError(400, f"Invalid console type {console_type}")
    server = ref.server
    if ref.cell is None or ref.cell.is_cell0 or not server.get("host"):
        raise HTTPError(409, f"Instance {ref.uuid} is not ready")
    if server.get("task_state") in _BUSY_TASK_STATES:
        raise HTTPError(409, f"Cannot 'get_vnc_console' instance {ref.uuid} while it is in task_state "
                             f"{server['task_state']}")
    if server.get("vm_state") != "active":
        raise HTTPError(409, f"Cannot 'get_vnc_console' instance {ref.uuid} while it is in vm_state "
                             f"{server.get('vm_state')}")
    try:
        where = await svc.compute_rpc(server["host"]).call("get_vnc_console", instance=server)
    except RemoteError as exc:
        if exc.exc_type == "NotImplementedError":
            raise HTTPError(501, "The requested functionality is not supported.") from None
        raise HTTPError(409, f"Instance {ref.uuid} is not ready: {exc.message}") from None
    except NoSuchTarget:
        raise HTTPError(409, f"Compute host {server['host']} could not be reached.") from None
    except RPCError as exc:
        raise HTTPError(409, f"Instance {ref.uuid} is not ready: {exc}") from None
    token = console_tokens.new_token()
    await svc.api_db.write(console_tokens.create, token, instance_uuid=ref.uuid, console_type=console_type,
                           host=str(where["host"]), port=int(where["port"]),
                           ttl=conf.getint("consoleauth", "token_ttl"))
    return urls.access_url(conf, token)


async def create_remote_console(request: Request, server_id: str):
    if not microversions.want(request, "2.6"):
        raise HTTPError(404, "The resource could not be found.")
    body = await read_json(request)
    validation.validate(_create_schema_for(request), body)
    ctx = request.state.context
    ref = await lookup.find(compute_api(request), ctx, server_id)
    _check_policy(request)
    protocol, console_type = body["remote_console"]["protocol"], body["remote_console"]["type"]
    if protocol != "vnc":
        raise HTTPError(400, f"Unavailable console type {console_type}.")
    url = await vnc_console_url(request, ref, console_type)
    return json_response({"remote_console": {"protocol": protocol, "type": console_type, "url": url}})


async def get_vnc_console(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    """The ``os-getVNCConsole`` server action, replaced by remote-consoles in 2.6."""
    if microversions.want(request, "2.6"):
        raise HTTPError(404, "The resource could not be found.")
    validation.validate(GET_VNC_CONSOLE, body)
    _check_policy(request)
    console_type = body[key]["type"]
    url = await vnc_console_url(request, ref, console_type)
    return json_response({"console": {"type": console_type, "url": url}})


def register(router: Router) -> None:
    router.add("POST", "/v2.1/servers/{server_id}/remote-consoles", create_remote_console)
