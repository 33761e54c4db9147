"""Keystone's default policy, reduced to roles: admin may do everything; others only about themselves.

A rule is a function of the caller's context and the target's attributes.
``enforce`` raises Keystone's 403 when the rule says no.
"""
from __future__ import annotations

from typing import Any, Callable

from kilonova.common.context import RequestContext
from kilonova.common.http import forbidden

Rule = Callable[[RequestContext, dict[str, Any]], bool]


def admin(ctx: RequestContext, target: dict[str, Any]) -> bool:
    return "admin" in ctx.roles


def anyone(ctx: RequestContext, target: dict[str, Any]) -> bool:
    return True


def admin_or_owner(ctx: RequestContext, target: dict[str, Any]) -> bool:
    return admin(ctx, target) or (ctx.user_id is not None and ctx.user_id == target.get("user_id"))


def admin_or_own_project(ctx: RequestContext, target: dict[str, Any]) -> bool:
    return admin(ctx, target) or (ctx.project_id is not None and ctx.project_id == target.get("project_id"))


def admin_or_own_domain(ctx: RequestContext, target: dict[str, Any]) -> bool:
    return admin(ctx, target) or (ctx.domain_id is not None and ctx.domain_id == target.get("domain_id"))


def service_or_token_subject(ctx: RequestContext, target: dict[str, Any]) -> bool:
    return admin(ctx, target) or "service" in ctx.roles or ctx.user_id == target.get("user_id")


RULES: dict[str, Rule] = {
    # tokens and the /v3/auth/* views of one's own token
    "identity:validate_token": service_or_token_subject,
    "identity:check_token": service_or_token_subject,
    "identity:revoke_token": service_or_token_subject,
    "identity:get_auth_catalog": anyone,
    "identity:get_auth_projects": anyone,
    "identity:get_auth_domains": anyone,
    "identity:get_auth_system": anyone,
    # users
    "identity:get_user": admin_or_owner,
    "identity:list_users": admin,
    "identity:create_user": admin,
    "identity:update_user": admin,
    "identity:delete_user": admin,
    "identity:list_user_projects": admin_or_owner,
    # projects and domains
    "identity:get_project": admin_or_own_project,
    "identity:list_projects": admin,
    "identity:create_project": admin,
    "identity:update_project": admin,
    "identity:delete_project": admin,
    "identity:get_domain": admin_or_own_domain,
    "identity:list_domains": admin,
    "identity:create_domain": admin,
    "identity:update_domain": admin,
    "identity:delete_domain": admin,
    # roles, implications, grants, assignments
    "identity:get_role": admin,
    "identity:list_roles": admin,
    "identity:create_role": admin,
    "identity:update_role": admin,
    "identity:delete_role": admin,
    "identity:get_implied_role": admin,
    "identity:list_implied_roles": admin,
    "identity:create_implied_role": admin,
    "identity:delete_implied_role": admin,
    "identity:list_role_inference_rules": admin,
    "identity:check_grant": admin,
    "identity:list_grants": admin,
    "identity:create_grant": admin,
    "identity:revoke_grant": admin,
    "identity:list_role_assignments": admin,
    # catalog
    "identity:get_region": anyone,
    "identity:list_regions": anyone,
    "identity:create_region": admin,
    "identity:update_region": admin,
    "identity:delete_region": admin,
    "identity:get_service": admin,
    "identity:list_services": admin,
    "identity:create_service": admin,
    "identity:update_service": admin,
    "identity:delete_service": admin,
    "identity:get_endpoint": admin,
    "identity:list_endpoints": admin,
    "identity:create_endpoint": admin,
    "identity:update_endpoint": admin,
    "identity:delete_endpoint": admin,
}


def enforce(ctx: RequestContext, action: str, target: dict[str, Any] | None = None) -> None:
    rule = RULES.get(action, admin)
    if not rule(ctx, target or {}):
        raise forbidden(f"You are not authorized to perform the requested action: {action}.")
