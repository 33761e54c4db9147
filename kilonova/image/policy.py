"""Glance's default policy: who may see and change an image, on the shared engine (kilonova/common/policy.py).

Admins see and manage everything. A project sees its own images, public and community ones, and shared
ones it is a member of; it changes only its own. Readers never change anything. Making an image public
takes an admin. The change rules (Glance's names) can be overridden in the policy file; an image a caller
may not see is "not found" before any rule is asked.
"""
from __future__ import annotations

from kilonova.common import policy
from kilonova.common.context import RequestContext
from kilonova.common.policy import RuleDefault
from kilonova.image.errors import image_not_found, not_authorized

ADMIN = "role:admin"
ADMIN_OR_PROJECT_MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"

RULES = [RuleDefault("context_is_admin", ADMIN, "Decides what is required for the 'is_admin:True' check.")] + [
    RuleDefault(name, ADMIN_OR_PROJECT_MEMBER, f"{name} (on an image of the project)", scope_types=["project"])
    for name in ("add_image", "modify_image", "delete_image", "upload_image", "add_member", "delete_member")
] + [RuleDefault("publicize_image", ADMIN, "Make an image public", scope_types=["project"])]


def _allowed(ctx: RequestContext, action: str, project_id: str | None) -> bool:
    return policy.service_enforcer("image").authorize(action, {"project_id": project_id}, ctx)


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
    if not _allowed(ctx, action, image["owner"]):
        raise not_authorized(action)


def check_create(ctx: RequestContext, values: dict) -> None:
    if not _allowed(ctx, "add_image", values.get("owner") or ctx.project_id):
        raise not_authorized("add_image")
    check_visibility_change(ctx, values.get("visibility"))


def check_visibility_change(ctx: RequestContext, visibility: str | None) -> None:
    if visibility == "public" and not _allowed(ctx, "publicize_image", ctx.project_id):
        raise not_authorized("publicize_image")
