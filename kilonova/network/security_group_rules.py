"""``/v2.0/security-group-rules``: create (single or bulk, one group at a time), list, show, delete."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, read_json
from kilonova.network import attributes as A
from kilonova.network import errors, policy, sg_rules, views
from kilonova.network.db import security_groups as groups
from kilonova.network.lookup import context, creation_response, respond_one, service, write_retrying
from kilonova.network.security_groups import respond_listing, visible


def _port(name: str, value: Any) -> int | None:
    return sg_rules.port(value)


ATTRS = {
    "security_group_id": A.Attr(A.to_string), "direction": A.Attr(lambda _n, v: sg_rules.direction(v)),
    "ethertype": A.Attr(lambda _n, v: sg_rules.ethertype(v)), "protocol": A.Attr(lambda _n, v: sg_rules.protocol(v)),
    "port_range_min": A.Attr(_port), "port_range_max": A.Attr(_port),
    "remote_ip_prefix": A.Attr(lambda _n, v: sg_rules.remote_ip_prefix(v)),
    "remote_group_id": A.Attr(lambda name, value: A.to_optional_string(name, value) or None),
    "description": A.Attr(A.to_string), "project_id": A.Attr(A.to_string), "tenant_id": A.Attr(A.to_string),
}
REQUIRED = ("security_group_id", "direction")


def _new_rule(ctx, item: dict[str, Any]) -> dict[str, Any]:
    values = A.parse(item, "security_group_rule", ATTRS)
    given = item["security_group_rule"].get("remote_ip_prefix")  # as written, for Neutron's conflict message
    for name in REQUIRED:
        if name not in values:
            raise errors.bad_request(f"Failed to parse request. Required attribute '{name}' not specified")
    rule = {"ethertype": "IPv4", "protocol": None, **values, "project_id": policy.project_for(ctx, values),
            "_given_prefix": given}
    rule.pop("tenant_id", None)
    sg_rules.check(rule)
    rule.pop("_given_prefix")
    return rule


async def create(request: Request):
    ctx = context(request)
    body = await read_json(request)
    policy.check_can_write(ctx, "rule:create_security_group_rule")
    rules = [_new_rule(ctx, item) for item in A.bulk_items(body, "security_group_rule", "security_group_rules")]
    group_ids = {rule["security_group_id"] for rule in rules}
    if len(group_ids) > 1:
        raise errors.bad_request("Only allowed to update rules for one security profile at a time")
    group_id = group_ids.pop()

    def create_all(session):
        group = groups.get_group(session, group_id)
        if not visible(ctx, group):
            raise groups.group_not_found(group_id)
        for rule in rules:
            remote = rule.get("remote_group_id")
            if remote and not (policy.privileged(ctx) or groups.get_group(session, remote)["project_id"]
                               == rule["project_id"]):
                raise groups.group_not_found(remote)
        return groups.create_rules(session, group_id, rules)

    created = await write_retrying(request, create_all)
    service(request).sg_notifier.groups_changed([group_id])
    return creation_response("security_group_rule", "security_group_rules",
                             [views.security_group_rule(r) for r in created], bulk="security_group_rules" in body)


def _visible(ctx, rule: dict[str, Any]) -> bool:
    return policy.privileged(ctx) or ctx.project_id in (rule["project_id"], rule["group_project_id"])


async def index(request: Request):
    return await respond_listing(request, groups.list_rules, "security_group_rules", views.security_group_rule)


async def show(request: Request, rule_id: str):
    rule = await service(request).db.read(groups.get_rule, rule_id)
    if not _visible(context(request), rule):
        raise groups.rule_not_found(rule_id)
    return respond_one(request, "security_group_rule", views.security_group_rule(rule))


async def delete(request: Request, rule_id: str):
    ctx = context(request)
    rule = await service(request).db.read(groups.get_rule, rule_id)
    if not _visible(ctx, rule):
        raise groups.rule_not_found(rule_id)
    policy.check_can_write(ctx, "rule:delete_security_group_rule")
    await service(request).db.write(groups.delete_rule, rule_id)
    service(request).sg_notifier.groups_changed([rule["security_group_id"]])
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2.0/security-group-rules", create)
    router.add("GET", "/v2.0/security-group-rules", index)
    router.add("GET", "/v2.0/security-group-rules/{rule_id}", show)
    router.add("DELETE", "/v2.0/security-group-rules/{rule_id}", delete)
