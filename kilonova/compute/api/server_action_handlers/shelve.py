"""The ``shelve``, ``shelveOffload`` and ``unshelve`` server actions, as upstream's shelve controller.

shelve: the snapshot image "<name>-shelved" (made as the caller), then the state change recording its
id (``shelved_image_id``), then the server's host is told. shelveOffload: the host is told. unshelve:
checked here (zone from 2.77, host from 2.91 with upstream's rules), then the conductor schedules it
again (unshelve_instance).
"""
from __future__ import annotations

import functools

import sqlalchemy as sa
from starlette.requests import Request

from kilonova.common.http import HTTPError, empty_response
from kilonova.common.rpc import NoSuchTarget
from kilonova.compute import quota
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import create_image, lookup, server_actions, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize, server_target
from kilonova.compute.api.availability_zones import available_zones
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.services import host_zones
from kilonova.compute.db import build_requests, mappings
from kilonova.compute.db import shelved_images as shelved_image_ledger
from kilonova.compute.shelved_images import without_shelved_keys
from kilonova.compute.db.api_models import RequestSpec

UNSHELVE_2_77 = {"type": "object", "properties": {"unshelve": {
    "type": ["object", "null"], "properties": {"availability_zone": validation.NAME},
    "required": ["availability_zone"], "additionalProperties": False}},
    "required": ["unshelve"], "additionalProperties": False}
UNSHELVE_2_91 = {"type": "object", "properties": {"unshelve": {"oneOf": [
    {"type": ["object"], "properties": {"availability_zone": {"oneOf": [{"type": ["null"]}, {"type": "string"}]},
                                        "host": {"type": "string"}},
     "additionalProperties": False},
    {"type": ["null"]}]}},
    "required": ["unshelve"], "additionalProperties": False}


@handles("shelve")
async def shelve(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    ctx = request.state.context
    svc = compute_api(request)
    server_actions.check_startable(request, ref, "shelve")  # refused before an image is made for it
    image = await create_image.create_snapshot_image(svc, ctx, ref.server,
                                                     f"{ref.server.get('display_name') or ''}-shelved", {})
    # As upstream, the image the server booted from is remembered for the unshelve. The snapshot's id is
    # recorded with the state change: if the host dies mid-shelve, the conductor deletes the image.
    system_metadata = {**(ref.server.get("system_metadata") or {}),
                       "image_base_image_ref": ref.server.get("image_ref") or "", "shelved_image_id": image["id"]}
    # The ledger of shelve snapshots records it in the same write: a deletion cut short is swept later.
    try:
        server = await server_actions.begin(request, ref, "shelve", {"system_metadata": system_metadata},
                                            also=functools.partial(shelved_image_ledger.record, image_id=image["id"],
                                                                   instance_uuid=ref.uuid))
    except BaseException:
        await create_image.discard_image(svc, ctx.token, image["id"])
        raise
    try:
        await server_actions.tell_host(svc, server, "shelve_instance", image_id=image["id"],
                                       request_id=ctx.request_id)
    except HTTPError:
        await server_actions.undo_begin(ref, "shelve", ctx.request_id,
                                        {"system_metadata": without_shelved_keys(server.get("system_metadata"))})
        await create_image.discard_image(svc, ctx.token, image["id"])
        raise
    return empty_response(202)


@handles("shelveOffload")
async def shelve_offload(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    server = await server_actions.begin(request, ref, "shelveOffload")
    try:
        await server_actions.tell_host(compute_api(request), server, "shelve_offload_instance",
                                       request_id=request.state.context.request_id)
    except HTTPError:
        await server_actions.undo_begin(ref, "shelveOffload", request.state.context.request_id)
        raise
    return empty_response(202)


_UNSET = object()


@handles("unshelve")
async def unshelve(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    ctx = request.state.context
    svc = compute_api(request)
    if want(request, "2.91"):
        validation.validate(UNSHELVE_2_91, body)
    elif want(request, "2.77"):
        validation.validate(UNSHELVE_2_77, body)
    args = body.get("unshelve") if isinstance(body.get("unshelve"), dict) else {}
    new_az = args.get("availability_zone", _UNSET) if want(request, "2.77") else _UNSET
    host = args.get("host") if want(request, "2.91") else None
    if host:
        authorize(request, "os_compute_api:os-shelve:unshelve_to_host", server_target(ref.server))
    action = ACTIONS["unshelve"]
    server_actions.check_policy(request, ref, action)
    server = ref.server
    if ref.cell is None or ref.cell.is_cell0 or not action.allows(server["vm_state"], server.get("task_state")):
        raise HTTPError(409, action.conflict_message(ref.uuid, server["vm_state"], server.get("task_state")))

    if (new_az is not _UNSET or host) and server["vm_state"] != "shelved_offloaded":
        raise HTTPError(409, f"Specifying an availability zone or a host when unshelving server "
                             f"\"{ref.uuid}\" with status \"{server['vm_state']}\" is not supported. "
                             f"The server status must be SHELVED_OFFLOADED.")
    host_zone = None
    if host:
        if await svc.api_db.read(mappings.get_host_mapping, host) is None:
            raise HTTPError(400, f"Compute host {host} could not be found.")
        host_zone = (await host_zones(svc)).get(host) or svc.conf.get("DEFAULT", "default_availability_zone")
    if new_az not in (_UNSET, None) and new_az not in await available_zones(svc):
        raise HTTPError(400, "The requested availability zone is not available")
    spec = await svc.api_db.read(build_requests.get_spec, ref.uuid) or {}
    pinned = spec.get("availability_zone")
    zone = pinned if new_az is _UNSET else new_az  # the zone the server is pinned to after this unshelve
    if host and zone and host_zone != zone:
        raise HTTPError(409, f"Host \"{host}\" is not in the availability zone \"{zone}\".")

    if server["vm_state"] == "shelved_offloaded":  # counted from Placement, its cores and RAM count again
        await quota.driver(svc).check_unshelve(server["project_id"], server["flavor"], bool(spec.get("is_bfv")))
    values = {}
    if new_az is not _UNSET:
        values["availability_zone"] = new_az  # pinned (or unpinned) as upstream; the host's zone after scheduling
    server = await server_actions.begin(request, ref, "unshelve", values, needs_host=False)
    if new_az is not _UNSET and spec:
        await svc.api_db.write(pin_zone, ref.uuid, new_az)
    try:
        await svc.conductor.cast("unshelve_instance", instance_uuid=ref.uuid, host=host,
                                 request_id=ctx.request_id)
    except NoSuchTarget:
        await server_actions.undo_begin(ref, "unshelve", ctx.request_id)
        raise HTTPError(409, "The conductor could not be reached.") from None
    return empty_response(202)


def pin_zone(session, uuid: str, zone: str | None) -> None:
    """The request spec's zone: where every later scheduling of the server (unshelve, moves) goes."""
    spec = build_requests.get_spec(session, uuid)
    if spec is not None:
        session.execute(sa.update(RequestSpec).where(RequestSpec.instance_uuid == uuid)
                        .values(spec={**spec, "availability_zone": zone}))
