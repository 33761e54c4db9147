"""/v2.1/servers/{id}/tags (2.26): a server's tags, listed, replaced, checked, added and removed one by one.

Tags live on the instance row in its cell database (``instances.tags``), so they go wherever the server
goes (moves keep the row) and lists can filter on them (``server_query``). At most 50 per server, each
1 to 60 characters without '/' or ','.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import common, lookup, query_params, validation, views
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_schemas import MAX_TAGS, TAG
from kilonova.compute.db import instances

_RULE = "os_compute_api:os-server-tags:"
_REPLACE = {"type": "object", "required": ["tags"], "additionalProperties": False,
            "properties": {"tags": {"type": "array", "items": TAG, "maxItems": MAX_TAGS}}}
# Upstream lets tags be changed only in these states (409 otherwise, a build request included).
_CHANGEABLE = ("active", "paused", "suspended", "stopped")


def _since_2_26(request: Request) -> None:
    if not want(request, "2.26"):
        raise HTTPError(404, "The resource could not be found.")


async def _server(request: Request, server_id: str, rule: str, action: str | None = None) -> lookup.ServerRef:
    """The server (404 before 2.26, as any unknown resource), its ``rule`` checked; for a change
    (``action``, upstream's name for it in the 409), its state."""
    _since_2_26(request)
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.authorize(request, _RULE + rule, common.server_target(ref.server))
    if action is not None:
        state = ref.server["vm_state"]
        if ref.cell is None or state not in _CHANGEABLE:
            raise HTTPError(409, f"Cannot '{action}' instance {ref.uuid} while it is in vm_state {state}")
    return ref


async def list_tags(request: Request, server_id: str):
    query_params.closed_from_2102(request)
    ref = await _server(request, server_id, "index")
    return json_response({"tags": list(ref.server.get("tags") or [])})


async def check_tag(request: Request, server_id: str, tag: str):
    query_params.closed_from_2102(request)
    ref = await _server(request, server_id, "show")
    if tag not in (ref.server.get("tags") or []):
        raise HTTPError(404, f"Server {server_id} has no tag '{tag}'")
    return empty_response(204)


async def replace_tags(request: Request, server_id: str):
    _since_2_26(request)
    body = await read_json(request)
    validation.validate(_REPLACE, body)  # the body first, as upstream's schema decorator
    ref = await _server(request, server_id, "update_all", "update tags")
    tags = list(dict.fromkeys(body["tags"]))  # a repeated tag is kept once
    await ref.cell.db.write(_change, ref.uuid, lambda _current: tags)
    return json_response({"tags": tags})


async def delete_all_tags(request: Request, server_id: str):
    ref = await _server(request, server_id, "delete_all", "delete tags")
    await ref.cell.db.write(_change, ref.uuid, lambda _current: [])
    return empty_response(204)


async def add_tag(request: Request, server_id: str, tag: str):
    ref = await _server(request, server_id, "update", "update tag")
    problem = validation.first_error(TAG, tag)
    if problem:
        raise HTTPError(400, f"Tag '{tag}' is invalid. It must be a non empty string without characters '/' "
                             f"and ','. Validation error message: {problem}")

    def added(current: list[str]) -> list[str]:
        if len(current) >= MAX_TAGS:  # checked first, as upstream: even for a tag the server has
            raise HTTPError(400, f"The number of tags exceeded the per-server limit {MAX_TAGS}")
        return current if tag in current else current + [tag]
    before = await ref.cell.db.write(_change, ref.uuid, added)
    if tag in before:
        return empty_response(204)
    return empty_response(201, headers={"Location": views.links(request, "servers", server_id)[0]["href"]
                                        + f"/tags/{tag}"})


async def delete_tag(request: Request, server_id: str, tag: str):
    ref = await _server(request, server_id, "delete", "delete tag")

    def removed(current: list[str]) -> list[str]:
        if tag not in current:
            raise HTTPError(404, f"Instance {server_id} has no tag '{tag}'")
        return [kept for kept in current if kept != tag]
    await ref.cell.db.write(_change, ref.uuid, removed)
    return empty_response(204)


def _change(session, uuid: str, change) -> list[str]:
    """Apply ``change`` (current tags -> new tags) in one transaction; the tags before it."""
    current: list[Any] = list(instances.get(session, uuid).get("tags") or [])
    new = change(current)
    if new != current:
        instances.update(session, uuid, {"tags": new})
    return current


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/tags", list_tags)
    router.add("PUT", "/v2.1/servers/{server_id}/tags", replace_tags)
    router.add("DELETE", "/v2.1/servers/{server_id}/tags", delete_all_tags)
    router.add("GET", "/v2.1/servers/{server_id}/tags/{tag}", check_tag)
    router.add("PUT", "/v2.1/servers/{server_id}/tags/{tag}", add_tag)
    router.add("DELETE", "/v2.1/servers/{server_id}/tags/{tag}", delete_tag)
