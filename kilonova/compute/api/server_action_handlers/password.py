"""changePassword: set the guest's admin password through its host, waiting for the answer.

Upstream calls the compute host (it does not cast) so that a guest that cannot take the password
is reported to the caller: 409 when the guest has no agent or the agent failed, 501 when the
driver does not implement it. The task state is PASSWORD meanwhile.
"""
from __future__ import annotations

from kilonova.common.http import HTTPError, empty_response
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.server_actions import begin

CHANGE_PASSWORD = {
    "type": "object",
    "properties": {"changePassword": {
        "type": "object", "properties": {"adminPass": {"type": "string"}},
        "required": ["adminPass"], "additionalProperties": False}},
    "required": ["changePassword"], "additionalProperties": False,
}
# What the host's errors become (the agent says which one it was).
_CONFLICTS = ("InstancePasswordSetFailed", "SetAdminPasswdNotSupported", "InstanceAgentNotEnabled")


@handles("changePassword")
async def change_password(request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(CHANGE_PASSWORD, body)
    server = await begin(request, ref, "changePassword")
    svc = compute_api(request)
    try:
        await svc.compute_rpc(server["host"]).call("set_admin_password", instance=server,
                                                   new_pass=body[key]["adminPass"],
                                                   request_id=request.state.context.request_id)
    except RemoteError as exc:
        if exc.exc_type in _CONFLICTS:
            raise HTTPError(409, exc.message) from None
        if exc.exc_type == "NotImplementedError":
            raise HTTPError(501, "Unable to set password on instance") from None
        raise HTTPError(409, exc.message) from None  # e.g. the server was deleted meanwhile
    except NoSuchTarget:
        raise HTTPError(409, f"Compute host {server['host']} could not be reached.") from None
    except RPCError as exc:  # no answer in time: the host finishes (or its reconcile does) on its own
        raise HTTPError(504, f"Compute host {server['host']} did not answer in time: {exc}") from None
    return empty_response(202)
