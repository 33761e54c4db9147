"""Neutron's default policy, in the few rules this service needs.

Admins (and the ``service`` role the compute agents' service user may carry)
see and manage everything. A project sees its own resources and shared or
external networks; it changes only its own. Readers only read. Binding
attributes, ``shared``, ``router:external`` and ``provider:*`` are admin-only.
Resources a caller may not see are "not found", not "forbidden".
"""
from __future__ import annotations

from typing import Any

from kilonova.common.context import RequestContext
from kilonova.network.errors import bad_request, not_found, policy_denied


def privileged(ctx: RequestContext) -> bool:
    return ctx.is_admin or "service" in ctx.roles


def can_see_network(ctx: RequestContext, network: dict[str, Any]) -> bool:
    return (privileged(ctx) or network["project_id"] == ctx.project_id or network["shared"]
            or network["external"])


def check_can_write(ctx: RequestContext, rule: str) -> None:
    if not (privileged(ctx) or ctx.can_write):
        raise policy_denied(rule)


def check_owner(ctx: RequestContext, resource: str, item: dict[str, Any], visible: bool, rule: str) -> None:
    """Changing ``item``: its own project or an admin; 404 when unseen, 403 when seen but not owned."""
    if privileged(ctx):
        return
    if not visible:
        raise not_found(resource, item["id"])
    if item["project_id"] != ctx.project_id or not ctx.can_write:
        raise policy_denied(rule)


def check_admin_attributes(ctx: RequestContext, action: str, body: dict[str, Any], names: tuple[str, ...]) -> None:
    if privileged(ctx):
        return
    for name in names:
        if name in body:
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
