"""``POST /v3/{project_id}/snapshots/{id}/action``: ``os-update_snapshot_status``, how the compute service reports
an assisted snapshot (os-assisted-volume-snapshots) of an in-use file-backed volume: ``creating`` with its
progress when the guest's disk was switched onto the new file, ``error`` when it could not be; ``deleting`` /
``error_deleting`` for a merge. Cinder's rules: only a snapshot ``creating`` or ``deleting`` is updated, to a
status its own may become; 202. The volume service's snapshot task waits for this report."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, read_json
from kilonova.volume import policy, repo
from kilonova.volume.schemas import snapshots as schemas
from kilonova.volume.validation import validate
from kilonova.volume.errors import bad_request
from kilonova.volume.lookup import context, service

# Cinder's: a snapshot in the key's status may be set to these.
MOVES = {"creating": ("creating", "available", "error"), "deleting": ("deleting", "error_deleting")}


async def action(request: Request, project_id: str, snapshot_id: str):
    ctx = context(request, project_id)
    body = await read_json(request)
    if not isinstance(body, dict) or len(body) != 1 or "os-update_snapshot_status" not in body:
        raise bad_request("Invalid request body: the snapshot actions are os-update_snapshot_status only.")
    policy.check_admin(ctx, "snapshot_extension:snapshot_actions:update_snapshot_status")
    args = validate(request, body, schemas.UPDATE_STATUS)["os-update_snapshot_status"]
    status, progress = args["status"], args.get("progress")
    svc = service(request)
    snapshot = await svc.db.read(repo.get_snapshot, snapshot_id)
    current = snapshot["status"]
    if current not in MOVES:
        raise HTTPError(400, f"Snapshot status {current} not allowed for update_snapshot_status")
    if status not in MOVES[current]:
        raise HTTPError(400, f"Provided snapshot status {status} not allowed for snapshot with status {current}.")
    if await svc.db.write(repo.set_snapshot_status, snapshot_id, status, (current,)) is None:
        raise HTTPError(400, f"Snapshot status {current} not allowed for update_snapshot_status")
    await svc.snapshot_reported(snapshot_id, status, progress)
    return empty_response(202)


def register(router: Router) -> None:
    router.add("POST", "/v3/{project_id}/snapshots/{snapshot_id}/action", action)
