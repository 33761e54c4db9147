"""Keystone's default policy, reduced to roles, on the shared engine (kilonova/common/policy.py).

Admin may do everything; others only about themselves (their user, project, domain, token). Any rule
can be overridden in ``[oslo_policy] policy_file`` with oslo.policy's check strings. ``enforce`` raises
Keystone's 403 when the rule says no; an action without a rule of its own is admin-only (the engine's
fallback).
"""
from __future__ import annotations

import functools
from typing import Any

from kilonova.common import policy
from kilonova.common.context import RequestContext
from kilonova.common.http import forbidden
from kilonova.common.policy import RuleDefault

ADMIN = "role:admin"
ANYONE = "@"
ADMIN_OR_OWNER = "role:admin or user_id:%(user_id)s"
ADMIN_OR_OWN_PROJECT = "role:admin or project_id:%(project_id)s"
ADMIN_OR_OWN_DOMAIN = "role:admin or domain_id:%(domain_id)s or project_domain_id:%(domain_id)s"
SERVICE_OR_TOKEN_SUBJECT = "role:admin or role:service or user_id:%(user_id)s"

_TABLE = {
    # tokens and the /v3/auth/* views of one's own token
    SERVICE_OR_TOKEN_SUBJECT: ["validate_token", "check_token", "revoke_token"],
    ANYONE: ["get_auth_catalog", "get_auth_projects", "get_auth_domains", "get_auth_system",
             "get_region", "list_regions",
             # unified limits: registered limits and the model are public, a list is narrowed to the caller
             "get_registered_limit", "list_registered_limits", "get_limit_model", "list_limits"],
    ADMIN_OR_OWNER: ["get_user", "list_user_projects"],
    ADMIN_OR_OWN_PROJECT: ["get_project"],
    ADMIN_OR_OWN_DOMAIN: ["get_domain"],
    f"{ADMIN_OR_OWN_PROJECT} or domain_id:%(domain_id)s or project_domain_id:%(domain_id)s": ["get_limit"],
    ADMIN: ["list_users", "create_user", "update_user", "delete_user",
            "list_projects", "create_project", "update_project", "delete_project",
            "list_domains", "create_domain", "update_domain", "delete_domain",
            "get_role", "list_roles", "create_role", "update_role", "delete_role",
            "get_implied_role", "list_implied_roles", "create_implied_role", "delete_implied_role",
            "list_role_inference_rules", "check_grant", "list_grants", "create_grant", "revoke_grant",
            "list_role_assignments", "create_region", "update_region", "delete_region",
            "get_service", "list_services", "create_service", "update_service", "delete_service",
            "get_endpoint", "list_endpoints", "create_endpoint", "update_endpoint", "delete_endpoint",
            "create_registered_limits", "update_registered_limit", "delete_registered_limit",
            "create_limits", "update_limit", "delete_limit"],
}

RULES = [RuleDefault("admin_required", ADMIN, "Who is an identity administrator.")] + [
    RuleDefault(f"identity:{action}", check, f"identity:{action}")
    for check, actions in _TABLE.items() for action in actions]


def admin(ctx: RequestContext, target: dict[str, Any] | None = None) -> bool:
    """The caller holds the admin role (for handlers that narrow what they show, as Keystone's)."""
    return "admin" in ctx.roles


@functools.lru_cache(maxsize=None)
def _default() -> policy.Enforcer:
    return policy.Enforcer("identity", RULES)


def enforcer_of(ctx_holder: Any) -> policy.Enforcer:
    return getattr(ctx_holder, "policy", None) or _default()


def enforce(ctx: RequestContext, action: str, target: dict[str, Any] | None = None,
            enforcer: policy.Enforcer | None = None) -> None:
    if not (enforcer or _default()).authorize(action, target or {}, ctx):
        raise forbidden(f"You are not authorized to perform the requested action: {action}.")
