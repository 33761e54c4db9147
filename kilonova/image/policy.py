"""Glance's default policy: who may see and change an image.

Admins see and manage everything. A project sees its own images, public and
community ones, and shared ones it is a member of; it changes only its own.
Readers never change anything. Making an image public takes an admin.
"""
from __future__ import annotations

from kilonova.common.context import RequestContext
from kilonova.image.errors import image_not_found, not_authorized


def can_see(ctx: RequestContext, image: dict, member_projects: set[str]) -> bool:
    if ctx.is_admin or image["owner"] == ctx.project_id:
        return True
    if image["visibility"] in ("public", "community"):
        return True
    return image["visibility"] == "shared" and ctx.project_id in member_projects


def check_visible(ctx: RequestContext, image: dict, member_projects: set[str]) -> None:
    if not can_see(ctx, image, member_projects):
        raise image_not_found(image["id"])


def check_owner(ctx: RequestContext, image: dict, action: str) -> None:
    """Writes: an admin, or a member of the owning project."""
    if ctx.is_admin:
        return
    if not ctx.can_write or image["owner"] != ctx.project_id:
        raise not_authorized(action)


def check_create(ctx: RequestContext, values: dict) -> None:
    if not ctx.can_write:
        raise not_authorized("add_image")
    if values.get("visibility") == "public" and not ctx.is_admin:
        raise not_authorized("publicize_image")
    if values.get("owner") not in (None, ctx.project_id) and not ctx.is_admin:
        raise not_authorized("add_image")


def check_visibility_change(ctx: RequestContext, visibility: str) -> None:
    if visibility == "public" and not ctx.is_admin:
        raise not_authorized("publicize_image")
