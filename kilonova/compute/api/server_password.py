"""/v2.1/servers/{id}/os-server-password: the admin password a guest left, encrypted with the server's
key, for its owner to read and then clear.

Upstream's guests post it to the metadata service; Kilonova's metadata service takes no posts, so the
password is empty unless one was recorded (system_metadata ``password``), and clearing always succeeds.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.compute.api import common, lookup, query_params
from kilonova.compute.api.app import compute_api
from kilonova.compute.db import instances

PASSWORD = "password"


async def show_password(request: Request, server_id: str):
    query_params.closed_from_2102(request)
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.authorize(request, "os_compute_api:os-server-password:show", common.server_target(ref.server))
    return json_response({"password": (ref.server.get("system_metadata") or {}).get(PASSWORD) or ""})


async def clear_password(request: Request, server_id: str):
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.authorize(request, "os_compute_api:os-server-password:clear", common.server_target(ref.server))
    if ref.cell is not None and (ref.server.get("system_metadata") or {}).get(PASSWORD):
        await ref.cell.db.write(_clear, ref.uuid)
    return empty_response(204)


def _clear(session, uuid: str) -> None:
    recorded = dict(instances.get(session, uuid).get("system_metadata") or {})
    recorded.pop(PASSWORD, None)
    instances.update(session, uuid, {"system_metadata": recorded})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/os-server-password", show_password)
    router.add("DELETE", "/v2.1/servers/{server_id}/os-server-password", clear_password)
