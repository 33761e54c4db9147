"""``/v2.0/{networks,subnets,ports,routers,floatingips,security-groups}/{id}/tags[/{tag}]``: Neutron's tag API on
the standard resources."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.network import attributes as A
from kilonova.network import errors, l3_errors, policy
from kilonova.network.db import floating_ips, networks, ports, routers, security_groups, subnets, usage
from kilonova.network.lookup import context, service

COLLECTIONS = {"networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
               "floatingips": "floatingip", "security-groups": "security_group"}
# Resources that only their own project (and admins) see.
PROJECT_OWNED = {"router": (routers.get, l3_errors.router_not_found),
                 "floatingip": (floating_ips.get, l3_errors.floatingip_not_found),
                 "security_group": (security_groups.get_group, security_groups.group_not_found)}


async def _resource(request: Request, collection: str, resource_id: str, write: bool) -> tuple[str, dict]:
    """The resource (visible to the caller, and changeable when ``write``) behind a tag URL."""
    if collection not in COLLECTIONS:
        raise errors.fault(404, "HTTPNotFound", "The resource could not be found.")
    resource = COLLECTIONS[collection]
    ctx = context(request)
    db = service(request).db
    if resource == "network":
        item = await db.read(networks.get, resource_id)
        visible = policy.can_see_network(ctx, item)
    elif resource == "subnet":
        item, network = await db.read(subnets.get_with_network, resource_id)
        visible = policy.can_see_network(ctx, network) or item["project_id"] == ctx.project_id
    elif resource in PROJECT_OWNED:
        read, missing = PROJECT_OWNED[resource]
        item = await db.read(read, resource_id)
        if not (policy.privileged(ctx) or item["project_id"] == ctx.project_id):
            raise missing(resource_id)
        visible = True
    else:
        item, network = await db.read(ports.get_with_network, resource_id)
        visible = policy.can_see_port(ctx, item, network["project_id"])
    if not visible:
        raise errors.not_found(resource, resource_id)
    if write:
        policy.check_owner(ctx, resource, item, visible, f"rule:update_{resource}:tags")
    return resource, item


def _tag(tag: str) -> str:
    return A.to_string("tag", tag, max_len=255)


async def index(request: Request, collection: str, resource_id: str):
    _, item = await _resource(request, collection, resource_id, write=False)
    return json_response({"tags": item["tags"]})


async def replace_all(request: Request, collection: str, resource_id: str):
    body = await read_json(request)
    tags: Any = body.get("tags") if isinstance(body, dict) else None
    tags = [_tag(t) for t in A.to_string_list("tags", tags)]
    resource, _ = await _resource(request, collection, resource_id, write=True)
    stored = await service(request).db.write(usage.set_tags, resource, resource_id, tags)
    return json_response({"tags": stored})


async def remove_all(request: Request, collection: str, resource_id: str):
    resource, _ = await _resource(request, collection, resource_id, write=True)
    await service(request).db.write(usage.set_tags, resource, resource_id, [])
    return empty_response(204)


async def check(request: Request, collection: str, resource_id: str, tag: str):
    _, item = await _resource(request, collection, resource_id, write=False)
    if tag not in item["tags"]:
        raise errors.fault(404, "TagNotFound", f"Tag {tag} could not be found for {collection[:-1]} {resource_id}.")
    return empty_response(204)


async def add(request: Request, collection: str, resource_id: str, tag: str):
    resource, item = await _resource(request, collection, resource_id, write=True)
    await service(request).db.write(usage.set_tags, resource, resource_id, [*item["tags"], _tag(tag)])
    return empty_response(201)


async def remove(request: Request, collection: str, resource_id: str, tag: str):
    resource, item = await _resource(request, collection, resource_id, write=True)
    if tag not in item["tags"]:
        raise errors.fault(404, "TagNotFound", f"Tag {tag} could not be found for {resource} {resource_id}.")
    await service(request).db.write(usage.set_tags, resource, resource_id, [t for t in item["tags"] if t != tag])
    return empty_response(204)


def register(router: Router) -> None:
    base = "/v2.0/{collection}/{resource_id}/tags"
    router.add("GET", base, index)
    router.add("PUT", base, replace_all)
    router.add("DELETE", base, remove_all)
    router.add("GET", base + "/{tag}", check)
    router.add("PUT", base + "/{tag}", add)
    router.add("DELETE", base + "/{tag}", remove)
