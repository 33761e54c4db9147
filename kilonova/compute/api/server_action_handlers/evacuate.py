"""POST /servers/{id}/action {"evacuate": ...} (admin): rebuild a server elsewhere because its host failed.

Only from a host whose compute service is down (or forced down): a live host answers upstream's 400.
The migration record (type ``evacuation``, status ``accepted``) is written here, as upstream's
tombstone the failed host finds when its agent comes back; the conductor (tasks/rebuild.py)
chooses or claims the destination. Microversions: ``onSharedStorage`` until 2.14 (and the
password in the answer), ``force`` from 2.29 until 2.68 (before 2.29 a named host is forced).
"""
from __future__ import annotations

import functools
import secrets
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request

from kilonova.common.http import HTTPError, empty_response, json_response
from kilonova.compute.api import lookup, server_actions, server_schemas, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute import evacuate_target
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute.api.server_action_handlers.rebuild import _check_state
from kilonova.compute.db import migrations, services
from kilonova.compute.db.api_models import Flavor

_TRUE = ("1", "t", "true", "on", "y", "yes")


def _bool(value: Any) -> bool:
    return value is True or str(value).strip().lower() in _TRUE


@functools.lru_cache(maxsize=None)
def schema(version: tuple[int, int]) -> dict:
    props: dict[str, Any] = {"host": server_schemas.FQDN, "adminPass": {"type": "string"}}
    required = []
    if version < (2, 14):
        props["onSharedStorage"] = server_schemas._BOOLEAN
        required = ["onSharedStorage"]
    if (2, 29) <= version < (2, 68):
        props["force"] = server_schemas._BOOLEAN
    evacuate = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        evacuate["required"] = required
    return {"type": "object", "properties": {"evacuate": evacuate}, "required": ["evacuate"],
            "additionalProperties": False}


def _password(request: Request, args: dict, on_shared_storage: bool) -> str | None:
    if want(request, "2.14") or not on_shared_storage:
        return args["adminPass"] if "adminPass" in args else secrets.token_urlsafe(9)
    if "adminPass" in args:
        raise HTTPError(400, "admin password can't be changed on existing disk")
    return None


@handles("evacuate")
async def evacuate(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(schema(request.state.version), body)
    args = body["evacuate"]
    svc, ctx = compute_api(request), request.state.context
    server_actions.check_policy(request, ref, server_actions.ACTIONS[key])
    host = args.get("host")
    on_shared_storage = False if want(request, "2.14") else _bool(args["onSharedStorage"])
    force = False
    if want(request, "2.29") and not want(request, "2.68"):
        force = _bool(args.get("force", False))
        if force and not host:
            raise HTTPError(400, "Can't force to a non-provided destination")
    elif host and not want(request, "2.29"):
        force = True  # before 2.29 a named host was used as it is, without the scheduler
    password = _password(request, args, on_shared_storage)
    down_time = svc.conf.getfloat("DEFAULT", "service_down_time")
    if host is not None and not await _compute_service_exists(svc, host):
        raise HTTPError(404, f"Compute host {host} not found.")
    if ref.server.get("host") == host:
        raise HTTPError(400, "The target host can't be the same one.")
    _check_state(request, ref, key)
    source = ref.server["host"]
    if await ref.cell.db.read(services.compute_is_up, source, down_time):
        raise HTTPError(400, f"Compute service of {source} is still in use.")
    if on_shared_storage:
        # Guests' disks live on their host here: upstream's compute would fail the evacuation with this.
        raise HTTPError(400, "Invalid state of instance files on shared storage: instance disks are not on "
                             "shared storage on this cloud; evacuate with onSharedStorage false.")
    flavor_id = await svc.api_db.read(_flavor_row_id, (ref.server.get("flavor") or {}).get("id"))
    # 2.95: the server ends STOPPED at its destination, whatever it was; the agent reads the mark.
    stop = {"system_metadata": evacuate_target.marked(ref.server)} if want(request, "2.95") else None
    server = await server_actions.begin(request, ref, key, stop)
    migration = await ref.cell.db.write(migrations.create, {
        "instance_uuid": ref.uuid, "migration_type": "evacuation", "status": "accepted",
        "source_compute": source, "source_node": server.get("node") or source,
        "dest_compute": host, "dest_node": host, "old_instance_type_id": flavor_id,
        "new_instance_type_id": flavor_id, "user_id": server["user_id"], "project_id": server["project_id"]})
    await svc.conductor.cast("rebuild_instance", instance_uuid=ref.uuid, evacuate=True, host=host, force=force,
                             migration_uuid=migration["uuid"], admin_password=password,
                             request_id=ctx.request_id)
    if not want(request, "2.14") and svc.conf.getbool("api", "enable_instance_password"):
        return json_response({"adminPass": password})
    return empty_response(200)


def _flavor_row_id(session, flavorid: str | None) -> int | None:
    """The flavor's database id, which migration records keep (None once the flavor is deleted)."""
    return session.scalar(sa.select(Flavor.id).where(Flavor.flavorid == flavorid)) if flavorid else None


async def _compute_service_exists(svc, host: str) -> bool:
    for cell in svc.cells.real():
        if await cell.db.read(services.find, host, "nova-compute") is not None:
            return True
    return False
