"""Neutron's default policy on the shared engine (kilonova/common/policy.py).

Admins (and the ``service`` role the compute agents' service user may carry) see and manage everything.
A project sees its own resources and shared or external networks; it changes only its own. Readers only
read. Binding attributes, ``shared``, ``router:external`` and ``provider:*`` are admin-only. Resources a
caller may not see are "not found", not "forbidden". The create/update/delete rules and the admin-only
attribute rules below are Neutron's names and can be overridden in the policy file; what a caller sees
(``privileged``) is the ``context_is_admin or service_api`` decision, asked once per request.
"""
from __future__ import annotations

from typing import Any

from kilonova.common import policy
from kilonova.common.context import RequestContext
from kilonova.common.policy import RuleDefault
from kilonova.network.errors import bad_request, not_found, policy_denied

ADMIN_OR_SERVICE = "rule:context_is_admin or rule:service_api"
MEMBER = "rule:admin_or_service or rule:project_member"

BASE = [
    RuleDefault("context_is_admin", "role:admin", "Decides what is required for the 'is_admin:True' check."),
    RuleDefault("service_api", "role:service", "The service role (the compute agents' service user)."),
    RuleDefault("admin_or_service", ADMIN_OR_SERVICE, "Sees and manages every project's resources."),
    RuleDefault("project_member", "role:member and project_id:%(project_id)s", "A member of the project."),
    RuleDefault("network_owner", "project_id:%(network:project_id)s", "The project that owns the port's network."),
]
_WRITES = [f"{verb}_{kind}" for kind in ("network", "subnet", "port", "router", "floatingip", "security_group")
           for verb in ("create", "update", "delete")] + [
    "create_security_group_rule", "delete_security_group_rule", "add_router_interface", "remove_router_interface"
] + [f"update_{kind}:tags" for kind in ("network", "subnet", "port", "router", "floatingip", "security_group")]
_ADMIN_ATTRIBUTES = [f"{verb}_network:{name}" for verb in ("create", "update") for name in (
    "shared", "router:external", "provider:network_type", "provider:physical_network",
    "provider:segmentation_id")] + [f"{verb}_port:{name}" for verb in ("create", "update")
                                    for name in ("binding:host_id", "binding:profile")]

# A port's attributes that only the network's owner (or an admin) sets (asked with the network's project).
_OWNER_ATTRIBUTES = [f"{verb}_port:{name}" for verb in ("create", "update")
                     for name in ("device_owner", "fixed_ips:ip_address", "mac_address")] + ["create_port:network"]
_ADMIN_ATTRIBUTES += ["create_floatingip:floating_ip_address"] + [
    f"{verb}_router:external_gateway_info:{key}" for verb in ("create", "update")
    for key in ("enable_snat", "external_fixed_ips")]

RULES = BASE + [RuleDefault(name, MEMBER, name, scope_types=["project"]) for name in _WRITES] + [
    RuleDefault(name, "rule:admin_or_service", name, scope_types=["project"]) for name in _ADMIN_ATTRIBUTES] + [
    RuleDefault(name, "rule:admin_or_service or rule:network_owner", name, scope_types=["project"])
    for name in _OWNER_ATTRIBUTES]


def _allowed(ctx: RequestContext, rule: str, target: dict[str, Any] | None = None) -> bool:
    name = rule.removeprefix("rule:")
    return policy.service_enforcer("network").authorize(name, target or {"project_id": ctx.project_id}, ctx)


def privileged(ctx: RequestContext) -> bool:
    """Sees and changes everything; asked once per request (lists ask it for every item)."""
    known = ctx.__dict__.get("_network_privileged")
    if known is None:
        known = ctx.__dict__["_network_privileged"] = _allowed(ctx, "admin_or_service")
    return known


def can_see_network(ctx: RequestContext, network: dict[str, Any]) -> bool:
    return (privileged(ctx) or network["project_id"] == ctx.project_id or network["shared"]
            or network["external"])


def check_can_write(ctx: RequestContext, rule: str) -> None:
    if not (privileged(ctx) or _allowed(ctx, rule)):
        raise policy_denied(rule)


def check_owner(ctx: RequestContext, resource: str, item: dict[str, Any], visible: bool, rule: str) -> None:
    """Changing ``item``: its own project or an admin; 404 when unseen, 403 when seen but not owned."""
    if privileged(ctx):
        return
    if not visible:
        raise not_found(resource, item["id"])
    if not _allowed(ctx, rule, {"project_id": item["project_id"]}):
        raise policy_denied(rule)


def check_attribute(ctx: RequestContext, rule: str, network_project: str | None = None) -> None:
    """An attribute only some may set (``create_port:mac_address``, ...): 403 with Neutron's text unless its
    rule allows it (on the network's project where the rule looks at the network's owner)."""
    if privileged(ctx):
        return
    if not _allowed(ctx, rule, {"project_id": ctx.project_id, "network:project_id": network_project}):
        raise policy_denied(rule)


def check_admin_attributes(ctx: RequestContext, action: str, body: dict[str, Any], names: tuple[str, ...]) -> None:
    if privileged(ctx):
        return
    for name in names:
        if name in body and not _allowed(ctx, f"{action}:{name}"):
            raise policy_denied(f"rule:{action}:{name}")


def project_for(ctx: RequestContext, body: dict[str, Any]) -> str:
    """The owning project of a new resource; only admins may name another project."""
    wanted = body.get("project_id") or body.get("tenant_id")
    if body.get("project_id") and body.get("tenant_id") and body["project_id"] != body["tenant_id"]:
        raise bad_request("'project_id' and 'tenant_id' do not match")
    if wanted and wanted != ctx.project_id and not privileged(ctx):
        raise bad_request("Specifying 'project_id' or 'tenant_id' other than the authenticated project "
                          "in request requires admin privileges")
    if not wanted and not ctx.project_id:
        raise bad_request("'project_id' is required when the token is not scoped to a project")
    return wanted or ctx.project_id  # type: ignore[return-value]


def can_see_port(ctx: RequestContext, port: dict[str, Any], network_owner: str | None) -> bool:
    return privileged(ctx) or ctx.project_id in (port["project_id"], network_owner)
