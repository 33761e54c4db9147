"""The port quota at server create, as upstream Nova's network API checks it before anything is recorded.

Each requested network without a port of the user's own needs a new port per server. Their number is
checked against the project's port quota in the network service (with the caller's token): fewer free
ports than ``min_count`` servers need is a 403 ``Maximum number of ports exceeded`` (upstream's
PortLimitExceeded), and ``max_count`` is lowered to the servers that fit, instead of builds failing on
their hosts when the network service refuses their ports.
"""
from __future__ import annotations

from typing import Any

from kilonova.common.http import HTTPError
from kilonova.common.context import RequestContext


async def servers_that_fit(svc, ctx: RequestContext, networks: list[dict[str, Any]], min_count: int,
                           max_count: int) -> int:
    """How many of ``max_count`` servers the project's free ports allow (403 when not ``min_count``)."""
    per_server = sum(1 for entry in networks if not entry.get("port_id"))
    if not per_server:
        return max_count
    # The quota's details hold the count upstream gets by listing the project's ports: one cheap request.
    quota = await svc.network.get(f"/v2.0/quotas/{ctx.project_id}/details", headers={"X-Auth-Token": ctx.token})
    ports = quota.json()["quota"].get("port") if quota.status_code == 200 else None
    if not ports or ports["limit"] == -1:
        return max_count
    limit, used = ports["limit"], ports["used"]
    free = limit - used
    if free < 0:
        raise HTTPError(403, f"The number of defined ports: {used} is over the limit: {limit}")
    fits = min(max_count, free // per_server)
    if fits < min_count:
        raise HTTPError(403, "Maximum number of ports exceeded")
    return fits
