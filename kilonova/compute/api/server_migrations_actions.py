"""Acting on a server's live migration under way (admin), as upstream's server_migrations controller:

* ``POST /v2.1/servers/{id}/migrations/{migration_id}/action`` ``{"force_complete": null}`` (2.22):
  only a ``running`` migration (else 400); the source host's driver pauses the guest so it finishes.
* ``DELETE /v2.1/servers/{id}/migrations/{migration_id}`` (2.24): abort a ``running`` migration; from
  2.65 a ``queued`` or ``preparing`` one too (else 400; an unknown migration is a 404 here).

Both need the server ACTIVE or PAUSED in task_state ``migrating`` (409 otherwise), record their own
instance action (``live_migration_force_complete`` / ``live_migration_cancel``) and cast to the source
host, which reaches the migration through its registry of live migrations under way. The read side
(GET .../migrations) lives in its own module.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, read_json
from kilonova.compute.api import common
from kilonova.compute.api import lookup, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_actions import tell_host
from kilonova.compute.db import instance_actions, migrations

FORCE_COMPLETE = {"type": "object", "properties": {"force_complete": {"type": "null"}},
                  "required": ["force_complete"], "additionalProperties": False}


def _not_found() -> HTTPError:
    return HTTPError(404, "The resource could not be found.")


def _check_state(ref: lookup.ServerRef, action: str) -> None:
    """Upstream's check_instance_state for both: vm_state ACTIVE or PAUSED, then task_state migrating."""
    server = ref.server
    if server.get("vm_state") not in ("active", "paused"):
        raise HTTPError(409, f"Cannot '{action}' instance {ref.uuid} while it is in vm_state {server.get('vm_state')}")
    if server.get("task_state") != "migrating":
        raise HTTPError(409, f"Cannot '{action}' instance {ref.uuid} while it is in task_state "
                             f"{server.get('task_state')}")


async def _migration(ref: lookup.ServerRef, migration_id: str) -> dict | None:
    try:
        number = int(migration_id)
    except ValueError:
        return None
    return await ref.cell.db.read(migrations.get_by_id, ref.uuid, number)


async def _server(request: Request, server_id: str, policy: str) -> lookup.ServerRef:
    ctx = request.state.context
    ref = await lookup.find(compute_api(request), ctx, server_id)
    common.authorize(request, f"os_compute_api:servers:migrations:{policy}", common.server_target(ref.server))
    if ref.cell is None or ref.cell.is_cell0:  # still being scheduled, or failed to be
        _check_state(ref, "force_complete" if policy == "force_complete" else "abort live migration")
    return ref


async def _record(request: Request, ref: lookup.ServerRef, action: str) -> None:
    ctx = request.state.context
    await ref.cell.db.write(instance_actions.start, ref.uuid, action, ctx.request_id, ctx.user_id, ctx.project_id)


async def migration_action(request: Request, server_id: str, migration_id: str):
    if not want(request, "2.22"):
        raise _not_found()
    body = await read_json(request)
    if isinstance(body, dict) and len(body) == 1 and next(iter(body)) != "force_complete":
        raise HTTPError(400, f"There is no such action: {next(iter(body))}")
    validation.validate(FORCE_COMPLETE, body)
    ref = await _server(request, server_id, "force_complete")
    _check_state(ref, "force_complete")
    migration = await _migration(ref, migration_id)
    if migration is None:
        raise HTTPError(400, f"Migration {migration_id} not found for instance {ref.uuid}")
    if migration["status"] != "running":
        raise HTTPError(400, f"Migration {migration_id} state of instance {ref.uuid} is {migration['status']}. "
                             f"Cannot force complete while the migration is in this state.")
    await _record(request, ref, "live_migration_force_complete")
    await tell_host(compute_api(request), ref.server, "live_migration_force_complete",
                    migration_id=migration["id"], request_id=request.state.context.request_id)
    return empty_response(202)


async def abort(request: Request, server_id: str, migration_id: str):
    if not want(request, "2.24"):
        raise _not_found()
    ref = await _server(request, server_id, "delete")
    _check_state(ref, "abort live migration")
    migration = await _migration(ref, migration_id)
    if migration is None:
        raise HTTPError(404, f"Migration {migration_id} not found for instance {ref.uuid}")
    allowed = ("running", "queued", "preparing") if want(request, "2.65") else ("running",)
    if migration["status"] not in allowed:
        raise HTTPError(400, f"Migration {migration_id} state of instance {ref.uuid} is {migration['status']}. "
                             f"Cannot abort live migration while the migration is in this state.")
    await _record(request, ref, "live_migration_cancel")
    await tell_host(compute_api(request), ref.server, "live_migration_abort", migration_id=migration["id"],
                    request_id=request.state.context.request_id)
    return empty_response(202)


def register(router: Router) -> None:
    router.add("POST", "/v2.1/servers/{server_id}/migrations/{migration_id}/action", migration_action)
    router.add("DELETE", "/v2.1/servers/{server_id}/migrations/{migration_id}", abort)
