"""``/v2.0/security-groups``: create (single or bulk), list, show, update, delete; each project's
``default`` group appears on its first use."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, read_json
from kilonova.network import attributes as A
from kilonova.network import errors, policy, query, views
from kilonova.network.db import security_groups as groups
from kilonova.network.lookup import context, creation_response, respond_list, respond_one, service, write_retrying

ATTRS = {
    "name": A.Attr(A.to_string), "description": A.Attr(A.to_string), "stateful": A.Attr(A.to_bool),
    "tags": A.Attr(A.to_string_list, allow_put=False), "project_id": A.Attr(A.to_string, allow_put=False),
    "tenant_id": A.Attr(A.to_string, allow_put=False),
}


def _check_name(values: dict[str, Any]) -> None:
    if str(values.get("name", "")).lower() == groups.DEFAULT_NAME:
        raise errors.fault(409, "SecurityGroupDefaultAlreadyExists", "Default security group already exists.")


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("project_id", "tenant_id")}


async def ensure_default(request: Request, project_id: str | None) -> None:
    """The project's default group, made on its first use (a list, a port, a group of its own)."""
    if not project_id:
        return
    db = service(request).db
    if await db.read(groups.default_group_id, project_id) is None:
        await write_retrying(request, groups.ensure_default, project_id)


def visible(ctx, group: dict[str, Any]) -> bool:
    return policy.privileged(ctx) or group["project_id"] == ctx.project_id


async def _owned_group(request: Request, group_id: str, rule: str) -> dict[str, Any]:
    ctx = context(request)
    group = await service(request).db.read(groups.get_group, group_id)
    if not visible(ctx, group):
        raise groups.group_not_found(group_id)
    policy.check_can_write(ctx, rule)
    return group


async def create(request: Request):
    ctx = context(request)
    body = await read_json(request)
    policy.check_can_write(ctx, "rule:create_security_group")
    rows = []
    for item in A.bulk_items(body, "security_group", "security_groups"):
        values = A.parse(item, "security_group", ATTRS)
        _check_name(values)
        rows.append({"project_id": policy.project_for(ctx, values), **_columns(values)})

    def create_all(session):
        return [groups.create_group(session, row) for row in rows]

    created = await write_retrying(request, create_all)
    return creation_response("security_group", "security_groups", [views.security_group(g) for g in created],
                             bulk="security_groups" in body)


def listing_project(ctx, q: query.ListQuery) -> str | None:
    """Whose default group a list makes sure of: the project filtered on, or the caller's own."""
    wanted = q.first("project_id")
    if wanted and (policy.privileged(ctx) or wanted == ctx.project_id):
        return wanted
    return ctx.project_id


async def respond_listing(request: Request, read, collection: str, view):
    """A list of groups or rules: the caller's default group made first, as Neutron's lists do."""
    ctx = context(request)
    q = query.parse(request)
    await ensure_default(request, listing_project(ctx, q))
    visible_to = None if policy.privileged(ctx) else ctx.project_id
    rows = await service(request).db.read(read, visible_to, q.filters)
    return respond_list(request, collection, [view(row) for row in rows], q)


async def index(request: Request):
    return await respond_listing(request, groups.list_groups, "security_groups", views.security_group)


async def show(request: Request, group_id: str):
    group = await service(request).db.read(groups.get_group, group_id)
    if not visible(context(request), group):
        raise groups.group_not_found(group_id)
    return respond_one(request, "security_group", views.security_group(group))


async def update(request: Request, group_id: str):
    values = A.parse(await read_json(request), "security_group", ATTRS, update=True)
    group = await _owned_group(request, group_id, "rule:update_security_group")
    if "name" in values and not group["is_default"]:
        _check_name(values)
    updated = await service(request).db.write(groups.update_group, group_id, _columns(values))
    if "stateful" in values:
        service(request).sg_notifier.groups_changed([group_id])
    return respond_one(request, "security_group", views.security_group(updated))


async def delete(request: Request, group_id: str):
    await _owned_group(request, group_id, "rule:delete_security_group")
    await service(request).db.write(groups.delete_group, group_id, policy.privileged(context(request)))
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2.0/security-groups", create)
    router.add("GET", "/v2.0/security-groups", index)
    router.add("GET", "/v2.0/security-groups/{group_id}", show)
    router.add("PUT", "/v2.0/security-groups/{group_id}", update)
    router.add("DELETE", "/v2.0/security-groups/{group_id}", delete)
