"""What every network handler starts with: the service, the context, a visible resource,
and the shape of list answers."""
from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from starlette.requests import Request

from kilonova.common.context import RequestContext
from kilonova.common.http import json_response
from kilonova.network import errors, policy, query
from kilonova.network.db import networks


def service(request: Request):
    return request.state.app.state["service"]


def context(request: Request) -> RequestContext:
    return request.state.context


def network_visible_to(session, ctx: RequestContext, network_id: str) -> dict[str, Any]:
    """The network, read in ``session``'s transaction; 404 unless ``ctx`` may see it."""
    network = networks.get(session, network_id)
    if not policy.can_see_network(ctx, network):
        raise errors.not_found("network", network_id)
    return network


async def visible_network(request: Request, network_id: str) -> dict[str, Any]:
    return await service(request).db.read(network_visible_to, context(request), network_id)


async def write_retrying(request: Request, fn, *args, attempts: int = 3):
    """A write that may collide with a concurrent one on a unique key (an address, a MAC, a project's
    default security group): run again, so that it sees what the other wrote."""
    for attempt in range(attempts):
        try:
            return await service(request).db.write(fn, *args)
        except sqlalchemy.exc.IntegrityError:
            if attempt + 1 == attempts:
                raise


def respond_one(request: Request, resource: str, item: dict[str, Any], status: int = 200):
    fields = query.parse(request).fields if status == 200 else []
    return json_response({resource: query.project(item, fields)}, status=status)


def respond_list(request: Request, collection: str, items: list[dict[str, Any]], q: query.ListQuery,
                 special: set[str] = frozenset()):
    items = [item for item in items if query.matches(item, q, special)]
    chunk, links = query.page(request, items, q, collection)
    body: dict[str, Any] = {collection: [query.project(item, q.fields) for item in chunk]}
    if links:
        body[f"{collection}_links"] = links
    return json_response(body)


def creation_response(resource: str, collection: str, created: list[dict[str, Any]], bulk: bool):
    if bulk:
        return json_response({collection: created}, status=201)
    return json_response({resource: created[0]}, status=201)

