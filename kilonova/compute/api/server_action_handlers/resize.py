"""resize, confirmResize, revertResize and migrate (cold migration), as upstream's API answers them.

The checks that need no other service happen here, in upstream's order (policy, lock, state, then the
flavor, the quota of the growth); the move itself is the conductor's (``migrate_server``), which
schedules it and hands it to the destination. Confirm and revert go to the compute host that has
the step to do: confirm to the source (it removes what is left there), revert to the destination.
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from starlette.requests import Request

from kilonova.common.http import HTTPError, empty_response
from kilonova.common.rpc import NoSuchTarget
from kilonova.compute import move_claims, move_endings
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import create, disk_config, lookup, server_actions, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize, server_target
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute import quota
from kilonova.compute.db import migrations
from kilonova.compute.db.cell_models import ComputeNode

LOG = logging.getLogger(__name__)

RESIZE = {"type": "object", "properties": {"resize": {
    "type": "object",
    "properties": {"flavorRef": {"type": ["string", "integer"], "minLength": 1},
                   "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]}},
    "required": ["flavorRef"], "additionalProperties": False}},
    "required": ["resize"], "additionalProperties": False}
_HOST = {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"}
MIGRATE = {"type": "object", "properties": {"migrate": {"type": "null"}}, "required": ["migrate"],
           "additionalProperties": False}
MIGRATE_2_56 = {"type": "object", "properties": {"migrate": {
    "type": ["object", "null"], "properties": {"host": _HOST}, "additionalProperties": False}},
    "required": ["migrate"], "additionalProperties": False}
CONFIRM = {"type": "object", "properties": {"confirmResize": {"type": "null"}}, "required": ["confirmResize"],
           "additionalProperties": False}
REVERT = {"type": "object", "properties": {"revertResize": {"type": "null"}}, "required": ["revertResize"],
          "additionalProperties": False}

NOT_RESIZED = "Instance has not been resized."


def _check_state(request: Request, ref: lookup.ServerRef, key: str) -> None:
    """Lock and state rule before anything is looked up, in upstream's order (the compare-and-set comes later)."""
    action = ACTIONS[key]
    server_actions.check_policy(request, ref, action)
    if ref.cell is None or ref.cell.is_cell0 or not ref.server.get("host") or \
            not action.allows(ref.server["vm_state"], ref.server.get("task_state")):
        raise HTTPError(409, action.conflict_message(ref.uuid, ref.server["vm_state"], ref.server.get("task_state")))


async def check_growth_quota(svc, project_id: str, new: dict, current: dict) -> None:
    """Upstream's upsize check: only the cores and RAM a flavor change adds count against the quota (403)."""
    deltas = {"cores": new["vcpus"] - current["vcpus"], "ram": new["memory_mb"] - current["memory_mb"]}
    deltas = {k: v for k, v in deltas.items() if v > 0}
    if deltas:
        await quota.driver(svc).check_growth(project_id, deltas)


def _move_system_metadata(server: dict, auto_disk_config: bool | None) -> dict:
    """What the server was before the move (upstream's system_metadata old_vm_state: a stopped server
    comes back stopped after a revert or a failure), and its disk config for the move."""
    return {"system_metadata": {**disk_config.for_move(server, auto_disk_config), "old_vm_state": server["vm_state"]}}


async def _start_move(request: Request, ref: lookup.ServerRef, key: str, flavor: dict | None,
                      host: str | None, auto_disk_config: bool | None = None) -> None:
    ctx = request.state.context
    server = await server_actions.begin(request, ref, key, _move_system_metadata(ref.server, auto_disk_config))
    await compute_api(request).conductor.cast(
        "migrate_server", instance_uuid=server["uuid"], flavor=flavor, host=host, request_id=ctx.request_id,
        user_id=ctx.user_id, project_id=ctx.project_id)


@handles("resize")
async def resize(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(RESIZE, body)
    _check_state(request, ref, key)
    svc, ctx = compute_api(request), request.state.context
    flavor_id = create._ref_id(str(body["resize"]["flavorRef"]))
    flavor = await svc.api_db.read(lambda s: create._flavor_snapshot(s, ctx, flavor_id))
    if flavor is None or flavor.get("disabled"):
        raise HTTPError(400, f"Flavor {flavor_id} could not be found.")
    current = ref.server["flavor"]
    if flavor["id"] == current.get("id"):
        raise HTTPError(400, "When resizing, instances must change flavor!")
    if not flavor["root_gb"] and current.get("root_gb"):
        raise HTTPError(400, "Server disk was unable to be resized because: Resize to zero disk flavor is not "
                             "allowed.")
    await check_growth_quota(svc, ref.server["project_id"], flavor, current)
    await _start_move(request, ref, key, flavor, None, disk_config.requested(body["resize"]))
    return empty_response(202)


def _compute_host_in_cell(session, host: str) -> bool:
    return session.scalar(sa.select(ComputeNode.id).where(ComputeNode.host == host, ComputeNode.deleted == 0)
                          .limit(1)) is not None


@handles("migrate")
async def migrate(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    authorize(request, "os_compute_api:os-migrate-server:migrate", server_target(ref.server))
    validation.validate(MIGRATE_2_56 if want(request, "2.56") else MIGRATE, body)
    host = (body.get("migrate") or {}).get("host")
    if host is not None:
        authorize(request, "os_compute_api:os-migrate-server:migrate:host", server_target(ref.server))
    _check_state(request, ref, key)
    if host is not None:
        if host == ref.server.get("host"):
            raise HTTPError(400, "Cannot migrate to the host where the server exists.")
        # Cross-cell moves are refused as upstream does by default: a host of another cell is not found.
        if not await ref.cell.db.read(_compute_host_in_cell, host):
            raise HTTPError(400, f"Compute host {host} could not be found.")
    await _start_move(request, ref, key, None, host)
    return empty_response(202)


async def _finished_migration(ref: lookup.ServerRef) -> dict:
    found = await ref.cell.db.read(migrations.in_progress_for, ref.uuid, None, ("finished",))
    if found is None:
        raise HTTPError(400, NOT_RESIZED)
    return found


async def _hand_over(request: Request, ref: lookup.ServerRef, key: str, migration: dict, status: str,
                     values: dict | None = None) -> dict:
    """The migration record to ``status`` and the action begun; the record goes back if the action cannot."""
    if await move_endings.CellStore(ref.cell).migration_update(ref.uuid, migration["uuid"], {"status": status},
                                                               expected_status=["finished"]) is None:
        raise HTTPError(400, NOT_RESIZED)  # confirmed or reverted meanwhile
    try:
        return await server_actions.begin(request, ref, key, values)
    except HTTPError:
        await ref.cell.db.write(migrations.update, migration["uuid"], {"status": "finished"}, [status])
        raise


@handles("confirmResize")
async def confirm_resize(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(CONFIRM, body)
    _check_state(request, ref, key)
    migration = await _finished_migration(ref)
    await _hand_over(request, ref, key, migration, "confirming")
    svc = compute_api(request)
    try:
        await svc.compute_rpc(migration["source_compute"]).cast(
            "confirm_resize", instance=ref.server, migration=migration, request_id=request.state.context.request_id)
    except NoSuchTarget:
        # The source host is away: the guest is where it should stay, so confirm without it (what is left
        # of the guest there is removed by that host's own clean-up when it comes back).
        LOG.warning("source host %s of %s unreachable; confirming its resize here", migration["source_compute"],
                    ref.uuid)
        await move_endings.confirm(move_endings.CellStore(ref.cell), svc.placement, migration,
                                   request_id=request.state.context.request_id)
    return empty_response(204)


@handles("revertResize")
async def revert_resize(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(REVERT, body)
    _check_state(request, ref, key)
    migration = await _finished_migration(ref)
    svc = compute_api(request)
    if ref.server.get("old_flavor"):  # reverting a shrink grows the server again
        await check_growth_quota(svc, ref.server["project_id"], ref.server["old_flavor"], ref.server["flavor"])
    server = await _hand_over(request, ref, key, migration, "reverting")
    try:
        await svc.compute_rpc(migration["dest_compute"]).cast(
            "revert_resize", instance=server, migration=migration, request_id=request.state.context.request_id)
    except NoSuchTarget:
        await ref.cell.db.write(migrations.update, migration["uuid"], {"status": "finished"}, ["reverting"])
        await move_endings.CellStore(ref.cell).instance_update(ref.uuid, {"task_state": None},
                                                               expected_task_state=["resize_reverting"])
        raise HTTPError(409, f"Compute host {migration['dest_compute']} could not be reached.") from None
    return empty_response(202)


async def before_delete(svc, ref: lookup.ServerRef) -> None:
    """A server being deleted during a resize or cold migration: the migration's claim on the source goes
    with it, as upstream confirms a resize it deletes (a move still under way ends in error; the
    source host is told to remove what is left of the guest there)."""
    if ref.cell is None or ref.cell.is_cell0:
        return
    for migration in await ref.cell.db.read(migrations.list_for_instance, ref.uuid, None,
                                            migrations.IN_PROGRESS):
        if migration["migration_type"] not in ("resize", "migration"):
            continue
        store = move_endings.CellStore(ref.cell)
        await move_claims.drop(svc.placement, migration["uuid"])
        status = "confirmed" if migration["status"] in ("finished", "confirming") else "error"
        if await store.migration_update(ref.uuid, migration["uuid"], {"status": status, "step": "server deleted"},
                                        expected_status=list(migrations.IN_PROGRESS)) is None:
            continue
        if status == "confirmed" and migration["source_compute"] != migration["dest_compute"]:
            try:
                await svc.compute_rpc(migration["source_compute"]).cast(
                    "confirm_resize", instance=ref.server, migration={**migration, "status": status},
                    request_id=None)
            except NoSuchTarget:
                pass
