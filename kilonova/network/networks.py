"""``/v2.0/networks``: create (single or bulk), list, show, update, delete."""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, read_json
from kilonova.network import attributes as A
from kilonova.network import policy, query, views
from kilonova.network.errors import bad_request
from kilonova.network.db import networks, usage
from kilonova.network.lookup import context, creation_response, respond_list, respond_one, service, visible_network

ATTRS = {
    "name": A.Attr(A.to_string), "admin_state_up": A.Attr(A.to_bool), "shared": A.Attr(A.to_bool),
    "router:external": A.Attr(A.to_bool), "mtu": A.Attr(A.to_int), "description": A.Attr(A.to_string),
    "port_security_enabled": A.Attr(A.to_bool), "availability_zone_hints": A.Attr(A.to_string_list, allow_put=False),
    "tags": A.Attr(A.to_string_list), "project_id": A.Attr(A.to_string, allow_put=False),
    "tenant_id": A.Attr(A.to_string, allow_put=False),
    "provider:network_type": A.Attr(A.to_optional_string, allow_put=False),
    "provider:physical_network": A.Attr(A.to_optional_string, allow_put=False),
    "provider:segmentation_id": A.Attr(A.to_optional_int, allow_put=False),
}
ADMIN_ONLY = ("shared", "router:external", "provider:network_type", "provider:physical_network",
              "provider:segmentation_id")
RENAMED = {"router:external": "external", "provider:network_type": "network_type",
           "provider:physical_network": "physical_network", "provider:segmentation_id": "segmentation_id"}


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    return {RENAMED.get(k, k): v for k, v in values.items() if k not in ("project_id", "tenant_id")}


def new_row(ctx, values: dict[str, Any]) -> dict[str, Any]:
    policy.check_can_write(ctx, "rule:create_network")
    policy.check_admin_attributes(ctx, "create_network", values, ADMIN_ONLY)
    row = {"id": str(uuid.uuid4()), "project_id": policy.project_for(ctx, values), **_columns(values)}
    if row.get("mtu") is not None and not 68 <= row["mtu"] <= 9000:
        raise bad_request(f"Invalid input for mtu. Reason: '{row['mtu']}' is not in range 68 through 9000.")
    return row


async def create(request: Request):
    ctx = context(request)
    body = await read_json(request)
    items = A.bulk_items(body, "network", "networks")
    rows = [new_row(ctx, A.parse(item, "network", ATTRS)) for item in items]

    def create_all(session):
        usage.check_quota(session, "network", [row["project_id"] for row in rows])
        return [networks.create(session, row) for row in rows]

    created = await service(request).db.write(create_all)
    shown = [views.network(n, policy.privileged(ctx)) for n in created]
    return creation_response("network", "networks", shown, bulk="networks" in body)


async def index(request: Request):
    ctx = context(request)
    q = query.parse(request)
    visible_to = None if policy.privileged(ctx) else ctx.project_id
    rows = await service(request).db.read(networks.list_networks, visible_to, q.filters)
    return respond_list(request, "networks", [views.network(n, policy.privileged(ctx)) for n in rows], q)


async def show(request: Request, network_id: str):
    network = await visible_network(request, network_id)
    return respond_one(request, "network", views.network(network, policy.privileged(context(request))))


async def update(request: Request, network_id: str):
    ctx = context(request)
    values = A.parse(await read_json(request), "network", ATTRS, update=True)
    network = await service(request).db.read(networks.get, network_id)
    policy.check_owner(ctx, "network", network, policy.can_see_network(ctx, network), "rule:update_network")
    policy.check_admin_attributes(ctx, "update_network", values, ADMIN_ONLY)
    updated = await service(request).db.write(networks.update, network_id, _columns(values))
    return respond_one(request, "network", views.network(updated, policy.privileged(ctx)))


async def delete(request: Request, network_id: str):
    ctx = context(request)
    network = await service(request).db.read(networks.get, network_id)
    policy.check_owner(ctx, "network", network, policy.can_see_network(ctx, network), "rule:delete_network")
    await service(request).db.write(networks.delete, network_id)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v2.0/networks", create)
    router.add("GET", "/v2.0/networks", index)
    router.add("GET", "/v2.0/networks/{network_id}", show)
    router.add("PUT", "/v2.0/networks/{network_id}", update)
    router.add("DELETE", "/v2.0/networks/{network_id}", delete)
