"""Rebuild and evacuate on the conductor: where the server is rebuilt, then the compute agent of that host.

* rebuild: on the server's own host. A new image is checked against that host first (upstream runs
  the scheduler restricted to the host: the image's required traits on the host's provider, the
  image properties filter); refused, the server goes to ERROR with the fault and keeps its old image.
* evacuate: the source host is down. A forced host (a host named before 2.29, or with ``force``)
  is claimed directly with a copy of the source's claim; otherwise the scheduler chooses (or checks
  the named host) and claims the destination, the source's claim being held meanwhile by the
  migration record. Either way the instance ends up holding both claims, as upstream: the source's
  is released when the source host's agent comes back (agent/operations/rebuild.py).

``reconcile_stuck_rebuilds``: a rebuild or evacuation not finished within ``[DEFAULT] instance_build_timeout``
(a lost message, a dead agent or conductor) ends in ERROR with a fault saying what to do; an
evacuation's destination claim is given back, its migration record says ``error`` and, when the
destination had started, its volume connections are replaced by reservations for the server.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from kilonova.common.db import NotFound
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError
from kilonova.compute import events, evacuation_claims, faults, move_claims
from kilonova.compute.conductor import group_check
from kilonova.compute.conductor.agent_reports import _host_cell_uuid
from kilonova.compute.conductor.tasks import reconcile, remote, volume_attachments
from kilonova.compute.db import aggregates, build_requests, host_view, instances, migrations
from kilonova.compute.db.api_models import RequestSpec
from kilonova.compute.db.instances import UnexpectedTaskState
from kilonova.compute.scheduler.filters import all_filters
from kilonova.compute.scheduler.host_state import HostState
from kilonova.compute.scheduler.host_cache import supported_instances
from kilonova.compute.scheduler.manager import traits_from_spec

LOG = logging.getLogger(__name__)

# The task states of a rebuild or evacuation under way (API, then the agent).
REBUILD_TASK_STATES = ("rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")
EVACUATION_UNDER_WAY = ("accepted", "pre-migrating")


class Refused(Exception):
    """The rebuild or evacuation cannot go on (no valid host, a claim refused): the message says why."""


class Aborted(Refused):
    """The forced destination of an evacuation breaks the server group's hard policy: upstream's destination
    aborts the rebuild (migration ``failed``) and rolls the server back to its state, not to ERROR."""


@remote
async def rebuild_instance(conductor, instance_uuid: str, request_id: str | None = None,
                           image_meta: dict | None = None, orig_image_ref: str | None = None,
                           admin_password: str | None = None, evacuate: bool = False, host: str | None = None,
                           force: bool = False, migration_uuid: str | None = None) -> None:
    cell = await conductor.cell_for_instance(instance_uuid)

    async def write(phase: str, **fields) -> None:
        await conductor.action_event(phase, **fields)

    # Upstream records both: the conductor method's event and, inside it, "rebuild_server".
    async with events.record(write, instance_uuid, request_id, "conductor_rebuild_instance") as outer, \
            events.record(write, instance_uuid, request_id, "rebuild_server") as step:
        try:
            instance = await cell.db.read(instances.get, instance_uuid)
        except NotFound:
            return  # deleted meanwhile: its delete released everything
        if instance["task_state"] != "rebuilding":
            LOG.info("rebuild of %s dropped: it is no longer rebuilding (%s)", instance_uuid, instance["task_state"])
            return
        try:
            if evacuate:
                await _evacuate(conductor, cell, instance, host, force, migration_uuid, admin_password, request_id)
            else:
                await _rebuild(conductor, cell, instance, image_meta or {}, orig_image_ref, admin_password,
                               request_id)
        except Aborted as exc:
            step.failed(exc)
            outer.failed(exc)
            LOG.warning("evacuation of %s aborted: %s", instance_uuid, exc)
            with contextlib.suppress(UnexpectedTaskState, NotFound):
                await cell.db.write(instances.update_with_fault, instance_uuid, {"task_state": None},
                                    faults.record(str(exc), None), expected_task_state=["rebuilding"])
            await conductor.action_finish(instance_uuid, request_id, "evacuate", "Error")
        except Refused as exc:
            step.failed(exc)
            outer.failed(exc)
            LOG.warning("%s of %s refused: %s", "evacuation" if evacuate else "rebuild", instance_uuid, exc)
            await _to_error(cell, instance_uuid, str(exc), host=instance["host"] if evacuate else None,
                            image_ref=orig_image_ref if not evacuate and orig_image_ref != instance["image_ref"]
                            else None)
            await conductor.action_finish(instance_uuid, request_id, "evacuate" if evacuate else "rebuild", "Error")


# ---------------------------------------------------------------------------------------------- rebuild

async def _rebuild(conductor, cell, instance: dict, image_meta: dict, orig_image_ref: str | None,
                   admin_password: str | None, request_id: str | None) -> None:
    uuid, host = instance["uuid"], instance["host"]
    if image_meta.get("id") and image_meta["id"] != orig_image_ref:
        await _check_image_on_host(conductor, cell, instance, image_meta)
        await conductor.cells.api_db.write(_set_spec_image, uuid, image_meta)
    try:
        await conductor.compute_rpc(host).cast("rebuild_instance", instance=instance, image_meta=image_meta,
                                               admin_password=admin_password, request_id=request_id)
    except NoSuchTarget:
        raise Refused(f"Compute host {host} could not be reached.") from None


async def _check_image_on_host(conductor, cell, instance: dict, image_meta: dict) -> None:
    """The new image must suit the server's own host (upstream schedules a rebuild to its host only)."""
    spec = {"flavor": instance["flavor"], "image": image_meta}
    required = {t for t in traits_from_spec({"flavor": {}, "image": image_meta}) if not t.startswith("!")}
    if required:
        forbidden = {t[1:] for t in traits_from_spec({"flavor": instance["flavor"], "image": {}}) if t.startswith("!")}
        if required & forbidden:
            raise Refused("No valid host was found. Image traits are part of forbidden traits in flavor associated "
                          "with the server. Either specify a different image during rebuild or create a new "
                          "server with the specified image and a compatible flavor.")
        provider = await evacuation_claims.provider_of(conductor.placement, instance["node"] or instance["host"])
        response = await conductor.placement.get(f"/resource_providers/{provider}/traits") if provider else None
        have = set(response.json().get("traits", [])) if response is not None and response.status_code == 200 else set()
        if required - have:
            raise Refused("No valid host was found. Image traits cannot be satisfied by the current resource "
                          "providers. Either specify a different image during rebuild or create a new server "
                          "with the specified image.")
    known = all_filters()
    filters = [known[name](conductor.conf) for name in conductor.conf.getlist("filter_scheduler", "enabled_filters")
               if name in known and known[name].run_on_rebuild]
    if not filters:
        return
    down_time = conductor.conf.getfloat("DEFAULT", "service_down_time")
    rows = [r for r in await cell.db.read(host_view.compute_hosts, down_time) if r["host"] == instance["host"]]
    if not rows:
        return
    row = rows[0]
    metadata = {}
    if any(flt.needs_aggregates for flt in filters):
        metadata = (await conductor.cells.api_db.read(aggregates.host_metadata)).get(row["host"], {})
    state = HostState(uuid=row["uuid"], host=row["host"], nodename=row["nodename"], cell_uuid=cell.uuid,
                      availability_zone=instance.get("availability_zone") or "", service_up=row["service_up"],
                      service_disabled=row["service_disabled"], hypervisor_type=row["hypervisor_type"],
                      supported_instances=list(supported_instances(row["cpu_info"])), cpu_info=row["cpu_info"] or "",
                      aggregates=metadata)
    for flt in filters:
        if not flt.host_passes(state, spec):
            raise Refused(f"No valid host was found. {type(flt).__name__} removed host {row['host']} "
                          f"({flt.explain(spec)}).")


def _set_spec_image(session, instance_uuid: str, image_meta: dict) -> None:
    """The request spec follows the server's new image (later moves schedule for it)."""
    row = session.scalar(sa.select(RequestSpec).where(RequestSpec.instance_uuid == instance_uuid))
    if row is not None:
        row.spec = {**(row.spec or {}), "image": image_meta}


# ---------------------------------------------------------------------------------------------- evacuate

async def _evacuate(conductor, cell, instance: dict, host: str | None, force: bool, migration_uuid: str,
                    admin_password: str | None, request_id: str | None) -> None:
    uuid, source = instance["uuid"], instance["host"]
    migration = await cell.db.read(migrations.get, migration_uuid)
    if migration["status"] != "accepted":
        LOG.info("evacuation %s of %s is %s already: nothing to do", migration_uuid, uuid, migration["status"])
        return
    spec = await conductor.cells.api_db.read(build_requests.get_spec, uuid) or {}
    spec = {**spec, "flavor": instance["flavor"], "project_id": instance["project_id"],
            "user_id": instance["user_id"], "num_instances": 1}
    spec.pop("requested_destination", None)  # the destination the server was created on is no rule now
    spec["requested_cell"] = cell.uuid  # no cross-cell evacuation, as upstream
    try:
        if host and force:
            if await conductor.cells.api_db.read(_host_cell_uuid, host) != cell.uuid:
                raise Refused(f"No valid host was found. Compute host {host} is not in the server's cell "
                              "(moves between cells are not allowed).")
            destination = await _claim_forced(conductor, instance, host)
            await _check_group(conductor, cell, spec, uuid, host, migration_uuid)
        else:
            destination = await _schedule(conductor, instance, spec, host, migration_uuid)
    except Refused:
        await _migration_status(cell, migration_uuid, "error", EVACUATION_UNDER_WAY)
        raise
    try:
        migration = await cell.db.write(migrations.update, migration_uuid,
                                        {"dest_compute": destination, "dest_node": destination}, ["accepted"])
    except migrations.UnexpectedStatus:
        # Given up on meanwhile (the reconcile pass, past the deadline): the claim just made is not kept.
        await _release_destination(conductor, uuid, destination)
        LOG.warning("evacuation %s of %s ended while its destination was chosen", migration_uuid, uuid)
        return
    try:
        await conductor.compute_rpc(destination).cast(
            "rebuild_instance", instance=instance, image_meta=spec.get("image") or {"id": instance["image_ref"]},
            admin_password=admin_password, evacuate=True, migration=migration, request_id=request_id)
    except NoSuchTarget:
        await _release_destination(conductor, uuid, destination)
        await _migration_status(cell, migration_uuid, "error", EVACUATION_UNDER_WAY)
        raise Refused(f"Compute host {destination} could not be reached.") from None
    LOG.info("evacuating %s from %s to %s", uuid, source, destination)


async def _claim_forced(conductor, instance: dict, host: str) -> str:
    provider = await evacuation_claims.provider_of(conductor.placement, host)
    if provider is None:
        raise Refused(f"No valid host was found. Compute host {host} has no resource provider.")
    try:
        await evacuation_claims.add_provider(conductor.placement, instance["uuid"], provider,
                                             _resources(instance), instance["project_id"], instance["user_id"])
    except move_claims.ClaimError as exc:
        raise Refused(str(exc)) from None
    return host


async def _check_group(conductor, cell, spec: dict, uuid: str, host: str, migration_uuid: str) -> None:
    """A forced host skipped the scheduler's group filters; upstream's destination checks the hard policy before
    rebuilding there (the late check of builds) and, failing it, releases its claim and fails the migration."""
    broken = await group_check.violation(conductor.cells, spec, uuid, host)
    if broken:
        await _release_destination(conductor, uuid, host)
        await _migration_status(cell, migration_uuid, "failed", EVACUATION_UNDER_WAY)
        raise Aborted(f"Build of instance {uuid} aborted: Build of instance {uuid} was re-scheduled: {broken}")


def _resources(instance: dict) -> dict[str, int]:
    from kilonova.compute.scheduler.manager import resources_from_spec
    return resources_from_spec({"flavor": {"root_gb": 0, **instance["flavor"]}})


async def _schedule(conductor, instance: dict, spec: dict, host: str | None, migration_uuid: str) -> str:
    """The scheduler claims a destination for the instance while the migration holds the source's claim;
    then the instance holds both."""
    uuid, project, user = instance["uuid"], instance["project_id"], instance["user_id"]
    if host:
        spec["requested_destination"] = {"host": host}
    try:
        # A redelivered request (its conductor died) finds the source's claim with the migration already:
        # what the instance holds then is an earlier destination claim, which the scheduler keeps or replaces.
        if not (await move_claims.held(conductor.placement, migration_uuid))[0]:
            await move_claims.hand_to_migration(conductor.placement, uuid, migration_uuid, project, user)
    except move_claims.ClaimError as exc:
        raise Refused(str(exc)) from None
    try:
        selections = await conductor.scheduler.call("select_destinations", request_spec=spec,
                                                    instance_uuids=[uuid], ignore_hosts=[instance["host"]])
    except (RemoteError, RPCError) as exc:
        await move_claims.give_back_to_instance(conductor.placement, migration_uuid, uuid, project, user)
        raise Refused(exc.message if isinstance(exc, RemoteError) else str(exc)) from None
    await evacuation_claims.merge_into(conductor.placement, migration_uuid, uuid, project, user)
    return selections[0][0]["host"]


async def _release_destination(conductor, uuid: str, destination: str | None) -> None:
    provider = await evacuation_claims.provider_of(conductor.placement, destination) if destination else None
    if provider is not None:
        await evacuation_claims.remove_provider(conductor.placement, uuid, provider)


# ---------------------------------------------------------------------------------------------- shared

async def _migration_status(cell, migration_uuid: str, status: str, expected: tuple) -> bool:
    try:
        await cell.db.write(migrations.update, migration_uuid, {"status": status}, list(expected))
        return True
    except (migrations.UnexpectedStatus, NotFound):
        return False


async def _to_error(cell, uuid: str, message: str, *, host: str | None = None, image_ref: str | None = None,
                    expected: tuple = ("rebuilding",)) -> bool:
    """The server to ERROR (back on ``host``, with its old image when given) with a fault; False when it
    was not in ``expected`` task states any more."""
    values: dict = {"vm_state": "error", "task_state": None}
    if host:
        values.update(host=host, node=host)
    if image_ref:
        values["image_ref"] = image_ref
    try:
        await cell.db.write(instances.update_with_fault, uuid, values, faults.record(message, None),
                            expected_task_state=list(expected))
    except (UnexpectedTaskState, NotFound):
        return False
    return True


# ---------------------------------------------------------------------------------------------- reconcile

@reconcile
async def reconcile_stuck_rebuilds(conductor) -> int:
    """Rebuilds and evacuations past ``[DEFAULT] instance_build_timeout``: ERROR with a fault, nothing held twice."""
    timeout = conductor.conf.getfloat("DEFAULT", "instance_build_timeout")
    deadline = datetime.utcnow() - timedelta(seconds=timeout)
    ended = 0
    for cell in conductor.cells.real():
        try:
            ended += await _reconcile_cell(conductor, cell, deadline, timeout)
        except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
            LOG.warning("reconciling stuck rebuilds in cell %s failed; next pass retries", cell.name, exc_info=True)
    return ended


async def _reconcile_cell(conductor, cell, deadline: datetime, timeout: float) -> int:
    ended = 0
    for state in REBUILD_TASK_STATES:
        for instance in await cell.db.read(instances.find_stuck, None, deadline, task_state=state):
            if not await cell.db.write(instances.claim_stale, instance["uuid"], state, deadline):
                continue  # another conductor has it
            if await _give_up(conductor, cell, instance, state, timeout):
                ended += 1
    # Evacuation records left under way by an evacuation that ended otherwise (its server deleted, ...).
    for migration in await cell.db.read(migrations.find_stale, deadline, EVACUATION_UNDER_WAY, "evacuation"):
        try:
            instance = await cell.db.read(instances.get, migration["instance_uuid"])
        except NotFound:
            instance = None
        if instance is None or instance["task_state"] not in REBUILD_TASK_STATES:
            await _migration_status(cell, migration["uuid"], "error", EVACUATION_UNDER_WAY)
    return ended


async def _give_up(conductor, cell, instance: dict, state: str, timeout: float) -> bool:
    uuid, host = instance["uuid"], instance["host"]
    migration = await cell.db.read(migrations.in_progress_for, uuid, "evacuation", EVACUATION_UNDER_WAY)
    if migration is None:
        message = (f"Rebuild did not finish within {timeout:.0f} seconds (stuck in task state {state} on host "
                   f"{host}). The server is in ERROR: rebuild it again once its host is up, or delete it.")
        if not await _to_error(cell, uuid, message, expected=(state,)):
            return False
        LOG.warning("rebuild of %s gave up: %s", uuid, message)
        await conductor.action_finish(uuid, None, "rebuild", "Error")
        return True
    source = migration["source_compute"]
    if not await _migration_status(cell, migration["uuid"], "error", EVACUATION_UNDER_WAY):
        return False  # the destination finished it (or the source took it) meanwhile
    # The source's claim goes back to the instance (if the migration held it mid-scheduling); the
    # destination's claim is dropped.
    project, user = instance["project_id"], instance["user_id"]
    if not await move_claims.give_back_to_instance(conductor.placement, migration["uuid"], uuid, project, user):
        await _release_destination(conductor, uuid, migration.get("dest_node") or migration.get("dest_compute"))
    message = (f"Evacuation from {source} to {migration.get('dest_compute') or 'a new host'} did not finish within "
               f"{timeout:.0f} seconds (stuck in task state {state}); its destination claim was released and the "
               f"server is back on {source} in ERROR. Evacuate it again, or delete it.")
    back = await _to_error(cell, uuid, message, host=source, expected=(None, state))
    if back and migration["status"] == "pre-migrating":
        # The destination had started: its volume connections (half made perhaps) go, the volumes stay reserved.
        try:
            await volume_attachments.reserve_again(conductor, cell, uuid)
        except Exception:  # noqa: BLE001 - the volume service's reaper removes what stays half made
            LOG.warning("volumes of %s not reserved again after its evacuation gave up", uuid, exc_info=True)
    LOG.warning("evacuation of %s gave up: %s", uuid, message)
    await conductor.action_finish(uuid, None, "evacuate", "Error")
    return True
