"""Cinder's default policy: a project's members use its volumes, readers only look, admins do everything
(and see every project's volumes when they ask with ``all_tenants``); volume types and quotas are admins'."""
from __future__ import annotations

from kilonova.common.context import RequestContext
from kilonova.volume.errors import policy_denied, volume_not_found


def check_visible(ctx: RequestContext, volume: dict) -> None:
    if not ctx.is_admin and volume["project_id"] != ctx.project_id:
        raise volume_not_found(volume["id"])


def check_read(ctx: RequestContext, action: str) -> None:
    if not ctx.can_read:
        raise policy_denied(action)


def check_write(ctx: RequestContext, action: str) -> None:
    if not ctx.can_write:
        raise policy_denied(action)


def check_admin(ctx: RequestContext, action: str) -> None:
    if not ctx.is_admin:
        raise policy_denied(action)


def check_project(ctx: RequestContext, project_id: str, action: str) -> None:
    """The URL's project must be the token's (an admin may name any)."""
    if not ctx.is_admin and project_id != ctx.project_id:
        raise policy_denied(action)
