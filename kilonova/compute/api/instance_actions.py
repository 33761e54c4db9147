"""GET /v2.1/servers/{id}/os-instance-actions and /{request_id}: what was done to a server, and its steps.

Microversions as upstream: 2.21 finds deleted servers too; 2.51 shows the events to the server's owner
(without tracebacks, which stay admin-only); 2.58 adds ``updated_at`` and pages the list (``limit``,
``marker`` = a request id, ``changes-since``; 2.66 ``changes-before``); 2.62 adds the event's ``hostId``
for everyone and its ``host`` for admins; 2.84 adds the event's ``details``.
Policy as upstream's defaults: the server's project (or an admin) lists and shows; events with their
tracebacks and hosts are the admin's.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import common, lookup, query_params, views
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.cells import CellDown
from kilonova.compute.db import instance_actions, instances, mappings

ACTION_KEYS = ("action", "instance_uuid", "request_id", "user_id", "project_id", "start_time", "message")
ACTION_KEYS_2_58 = ACTION_KEYS + ("updated_at",)
EVENT_KEYS = ("event", "start_time", "finish_time", "result")

# Upstream's query schemas: before 2.58 anything goes (and is ignored); from 2.58 only these.
_QUERY_2_58 = {"limit": query_params.NON_NEGATIVE_INT, "marker": query_params.STRING,
               "changes-since": query_params.DATE_TIME}
_QUERY_2_66 = {**_QUERY_2_58, "changes-before": query_params.DATE_TIME}


async def find_server(request: Request, server_id: str) -> lookup.ServerRef:
    """The server as os-instance-actions sees it: from 2.21 a deleted one too (404 when it never existed,
    or belongs to another project for a non-admin)."""
    svc, ctx = compute_api(request), request.state.context
    try:
        return await lookup.find(svc, ctx, server_id)
    except HTTPError as exc:
        if exc.status != 404 or not want(request, "2.21"):
            raise
    mapping = await svc.api_db.read(mappings.get_instance_mapping, server_id)
    if mapping is None or mapping.cell_id is None or (not ctx.is_admin and mapping.project_id != ctx.project_id):
        raise lookup.not_found(server_id)
    cell = svc.cells.by_id(mapping.cell_id)
    if cell is None:
        svc.cells.load()
        cell = svc.cells.by_id(mapping.cell_id)
    try:
        return lookup.ServerRef(await cell.read(instances.get, server_id, read_deleted=True), cell)
    except NotFound:
        raise lookup.not_found(server_id) from None
    except CellDown:
        raise lookup.cell_unavailable(cell) from None


def _action_view(action: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: action.get(key) for key in keys}


def _event_view(event: dict[str, Any], project_id: str, *, traceback: bool, host: bool, host_id: bool,
                details: bool) -> dict[str, Any]:
    view = {key: event.get(key) for key in EVENT_KEYS}
    if traceback:
        view["traceback"] = event.get("traceback")
    if host:
        view["host"] = event.get("host")
    if host_id:
        view["hostId"] = views.host_id(project_id, event.get("host")) if event.get("host") else ""
    if details:
        view["details"] = event.get("details")
    return view


async def list_actions(request: Request, server_id: str):
    paged = want(request, "2.58")
    if paged:
        query_params.validate(request, _QUERY_2_66 if want(request, "2.66") else _QUERY_2_58)
    ref = await find_server(request, server_id)
    common.authorize(request, "os_compute_api:os-instance-actions:list", common.server_target(ref.server))
    kwargs: dict[str, Any] = {}
    if paged:
        since, before = query_params.time_range(request, with_before=want(request, "2.66"))
        limit, marker = common.limit_and_marker(request)
        kwargs = {"limit": limit, "marker": marker, "changes_since": since, "changes_before": before}
    rows = []
    if ref.cell is not None:  # a server still being scheduled has no actions in a cell yet
        try:
            rows = await ref.cell.read(instance_actions.list_for, ref.uuid, **kwargs)
        except instance_actions.MarkerNotFound:
            # Upstream's message names no marker: its database layer reports the lookup's empty result.
            raise HTTPError(400, "Marker None could not be found.") from None
        except CellDown:
            raise lookup.cell_unavailable(ref.cell) from None
    actions = [_action_view(row, ACTION_KEYS_2_58 if paged else ACTION_KEYS) for row in rows]
    body: dict[str, Any] = {"instanceActions": actions}
    if paged:
        links = common.next_links(request, f"servers/{server_id}/os-instance-actions",
                                  [a["request_id"] for a in actions], kwargs["limit"])
        if links:
            body["links"] = links
    return json_response(body)


async def show_action(request: Request, server_id: str, request_id: str):
    ref = await find_server(request, server_id)
    common.authorize(request, "os_compute_api:os-instance-actions:show", common.server_target(ref.server))
    action = None
    if ref.cell is not None:
        try:
            action = await ref.cell.read(instance_actions.get, ref.uuid, request_id)
        except CellDown:
            raise lookup.cell_unavailable(ref.cell) from None
    if action is None:
        raise HTTPError(404, f"Action {request_id} not found")
    view = _action_view(action, ACTION_KEYS_2_58 if want(request, "2.58") else ACTION_KEYS)
    target = common.server_target(ref.server)
    details = common.allowed(request, "os_compute_api:os-instance-actions:events:details", target)
    if want(request, "2.51") or common.allowed(request, "os_compute_api:os-instance-actions:events", target):
        project_id = action.get("project_id") or ref.server.get("project_id") or ""
        view["events"] = [_event_view(event, project_id, traceback=details, host=details and want(request, "2.62"),
                                      host_id=want(request, "2.62"), details=want(request, "2.84"))
                          for event in action["events"]]
    return json_response({"instanceAction": view})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/os-instance-actions", list_actions)
    router.add("GET", "/v2.1/servers/{server_id}/os-instance-actions/{request_id}", show_action)
