"""restore and forceDelete: the two ways out of SOFT_DELETED before the reclaim (upstream's deferred delete).

restore powers the guest on again on its host (ACTIVE); forceDelete deletes the server at once, in
any state, through the ordinary delete path (which records the "delete" action, as upstream).
"""
from __future__ import annotations

from kilonova.common.http import empty_response
from kilonova.compute.api import lookup
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.server_actions import begin, check_policy, tell_host
from kilonova.compute.actions import ACTIONS


@handles("restore")
async def restore(request, ref: lookup.ServerRef, key: str, body: dict):
    server = await begin(request, ref, key, {"deleted_at": None})
    await tell_host(compute_api(request), server, "restore_instance", request_id=request.state.context.request_id)
    return empty_response(202)


@handles("forceDelete")
async def force_delete(request, ref: lookup.ServerRef, key: str, body: dict):
    ctx = request.state.context
    check_policy(ctx, ref, ACTIONS[key])
    await compute_api(request).deleter.delete(ctx, ref, force=True)
    return empty_response(202)
