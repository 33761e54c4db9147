"""The ``group`` scheduler hint of a server create: the server group its servers join.

The group must be one the caller sees (its project's; any for an administrator), else 400 as upstream's
InstanceGroupNotFound; its members are recorded with the build requests, in the same transaction, with
the ``server_group_members`` quota counted there (403 as upstream): per user with the classic driver, per
group with unified limits, as upstream counts them.
"""
from __future__ import annotations

from typing import Any

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError
from kilonova.compute import quota
from kilonova.compute.db import server_groups

TOO_MANY = "Quota exceeded, too many servers in group"


async def requested_group(svc, ctx, hints: dict[str, Any]) -> dict[str, Any] | None:
    """The group named by the hint, with the caller's member limit (``member_limit``); None without one."""
    uuid = hints.get("group")
    if not uuid:
        return None
    try:
        group = await svc.api_db.read(server_groups.get, uuid)
    except NotFound:
        group = None
    if group is None or (group["project_id"] != ctx.project_id and not ctx.is_admin):
        raise HTTPError(400, f"Instance group {uuid} could not be found.")
    limits = await quota.limits(svc, ctx.project_id)
    # The classic driver counts the caller's own servers in the group, unified limits all of them (upstream).
    scope = quota.driver(svc).group_member_scope(ctx.user_id)
    held = len(group["members"]) if scope is None else await svc.api_db.read(server_groups.held, uuid, scope)
    limit = limits.get("server_group_members", -1)

    def refuse(counted: int, adding: int) -> HTTPError:
        return quota.refusal(svc, "server_group_members", limit, counted, adding, TOO_MANY)
    return dict(group, member_limit=limit, member_scope=scope, held=held, refuse=refuse)


def check_members(group: dict[str, Any] | None, count: int) -> None:
    """403 when ``count`` more servers would pass the group's member limit (before anything is made)."""
    if group is not None and 0 <= group["member_limit"] < group["held"] + count:
        raise group["refuse"](group["held"], count)


def record_members(session, group: dict[str, Any] | None, instance_uuids: list[str]) -> None:
    """In the transaction that records the build requests; 403 when the group would pass its limit."""
    if group is None:
        return
    try:
        server_groups.add_members(session, group["uuid"], instance_uuids, group["member_limit"],
                                  group["member_scope"])
    except server_groups.OverQuota as over:
        raise group["refuse"](over.held, len(instance_uuids)) from None
    except NotFound:  # deleted since it was looked up
        raise HTTPError(400, f"Instance group {group['uuid']} could not be found.") from None
