"""restore and forceDelete: the two ways out of SOFT_DELETED before the reclaim (upstream's deferred delete).

restore powers the guest on again on its host (ACTIVE) when the project's quota still has room for it
(a soft-deleted server does not count, as upstream); forceDelete deletes the server at once, in
any state, through the ordinary delete path (which records the "delete" action, as upstream).
"""
from __future__ import annotations

from types import SimpleNamespace

from kilonova.common.http import empty_response
from kilonova.compute.api import lookup
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.create import allowed_count
from kilonova.compute.api.server_actions import begin, check_policy, check_startable, tell_host
from kilonova.compute.actions import ACTIONS


@handles("restore")
async def restore(request, ref: lookup.ServerRef, key: str, body: dict):
    """A soft-deleted server does not count in its project's quota: restoring it must fit again (403)."""
    check_startable(request, ref, key)
    owner = SimpleNamespace(project_id=ref.server["project_id"])
    await allowed_count(compute_api(request), owner, ref.server["flavor"], 1, 1)
    server = await begin(request, ref, key, {"deleted_at": None})
    await tell_host(compute_api(request), server, "restore_instance", request_id=request.state.context.request_id)
    return empty_response(202)


@handles("forceDelete")
async def force_delete(request, ref: lookup.ServerRef, key: str, body: dict):
    ctx = request.state.context
    check_policy(request, ref, ACTIONS[key])
    await compute_api(request).deleter.delete(ctx, ref, force=True)
    return empty_response(202)
