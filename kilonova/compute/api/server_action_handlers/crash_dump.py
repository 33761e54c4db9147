"""trigger_crash_dump (from 2.17): an NMI to the guest, cast to its host.

Before 2.17 the action does not exist: 404, as upstream answers for an action below its version.
The body must be ``{"trigger_crash_dump": null}``. A server without a host is "not ready" (409).
"""
from __future__ import annotations

from kilonova.common.http import HTTPError, empty_response
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.server_actions import begin, check_startable, tell_host

TRIGGER_CRASH_DUMP = {"type": "object", "properties": {"trigger_crash_dump": {"type": "null"}},
                      "required": ["trigger_crash_dump"], "additionalProperties": False}


@handles("trigger_crash_dump")
async def trigger_crash_dump(request, ref: lookup.ServerRef, key: str, body: dict):
    if not want(request, "2.17"):
        raise HTTPError(404, "The resource could not be found.")
    validation.validate(TRIGGER_CRASH_DUMP, body)
    check_startable(request, ref, key)
    if not ref.server.get("host"):
        raise HTTPError(409, f"Instance {ref.uuid} is not ready")
    server = await begin(request, ref, key)
    await tell_host(compute_api(request), server, "trigger_crash_dump", request_id=request.state.context.request_id)
    return empty_response(202)
