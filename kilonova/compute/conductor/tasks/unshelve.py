"""Unshelve on the conductor, the periodic offload of shelved servers, and the reconcile pass of shelving.

unshelve_instance: a SHELVED server kept its guest and claim: its host powers it on (task powering-on,
as upstream's start_instance). A SHELVED_OFFLOADED one is scheduled again through Placement (its
request spec, the zone it is pinned to, the host an admin named from 2.91, its own cell), then its new
host spawns it from the shelved image. A failure before the host takes over leaves it
SHELVED_OFFLOADED holding nothing, with a fault.

The reconcile pass gives every shelving state a deadline (``[compute] shelve_timeout``): a shelve cut
short is cleared (the guest is where it was) and its snapshot image deleted, an offload cut short is
finished (by its host when that is up, else here), an unshelve cut short goes back to SHELVED_OFFLOADED
with its claim released; and an offloaded server never keeps a claim.
"""
from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timedelta

from kilonova.common.db import NotFound
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError
from kilonova.compute import events, shelved_images
from kilonova.compute.cells import Cell
from kilonova.compute.cleanup import release_allocations
from kilonova.compute.conductor.tasks import reconcile, remote
from kilonova.compute.db import build_requests, instance_actions, instances, services
from kilonova.compute.db.instances import UnexpectedTaskState
from kilonova.compute.shelved_images import SHELVING_TASK_STATES as SHELVING, shelved_image_id, without_shelved_keys

LOG = logging.getLogger(__name__)


def _event(cell: Cell, uuid: str, request_id: str | None, name: str):
    async def write(phase: str, **fields) -> None:
        if phase == "start":
            await cell.db.write(instance_actions.event_start, uuid, request_id, name, fields.get("host"))
        else:
            await cell.db.write(instance_actions.event_finish, uuid, request_id, name, fields["result"],
                                fields.get("details"), fields.get("traceback"), fields.get("host"))
    return events.record(write, uuid, request_id, name)


async def _fail(cell: Cell, uuid: str, expected: list[str], message: str, details: str | None = None,
                vm_state: str = "shelved_offloaded", action: str | None = "unshelve", **values) -> bool:
    """Back to ``vm_state`` with no task (and, offloaded, no host) and ``values``, with a fault; False if it
    changed meanwhile."""
    values["task_state"] = None
    if vm_state == "shelved_offloaded":
        values.update(host=None, node=None)
    try:
        await cell.db.write(_update_with_fault, uuid, values, expected, vm_state, message, details, action)
    except (NotFound, UnexpectedTaskState):
        return False
    return True


def _update_with_fault(session, uuid: str, values: dict, expected: list[str], vm_state: str, message: str,
                       details: str | None, action: str | None) -> None:
    instances.update(session, uuid, values, expected_task_state=expected, expected_vm_state=[vm_state])
    instances.add_fault(session, uuid, 500, message, details)
    if action is not None:  # the user's action failed: os-instance-actions says so
        instance_actions.finish(session, uuid, action, "Error")


@remote
async def unshelve_instance(conductor, instance_uuid: str, host: str | None = None,
                            request_id: str | None = None) -> None:
    cell = await conductor.cell_for_instance(instance_uuid)
    try:
        instance = await cell.db.read(instances.get, instance_uuid)
    except NotFound:
        return
    if instance["task_state"] != "unshelving":
        LOG.info("unshelve of %s dropped: it is %s/%s", instance_uuid, instance["vm_state"], instance["task_state"])
        return
    async with _event(cell, instance_uuid, request_id, "conductor_unshelve_instance") as event:
        if instance["vm_state"] == "shelved":
            await _power_on_in_place(conductor, cell, instance, request_id, event)
        else:
            await _schedule_and_spawn(conductor, cell, instance, host, request_id, event)


async def _power_on_in_place(conductor, cell: Cell, instance: dict, request_id: str | None, event) -> None:
    uuid = instance["uuid"]
    try:
        instance = await cell.db.write(instances.update, uuid, {"task_state": "powering-on"},
                                       expected_task_state=["unshelving"], expected_vm_state=["shelved"])
    except (NotFound, UnexpectedTaskState):
        return
    try:
        await conductor.compute_rpc(instance["host"]).cast("unshelve_instance", instance=instance,
                                                          request_id=request_id)
    except NoSuchTarget as exc:
        event.failed(exc)
        await _fail(cell, uuid, ["powering-on"], f"Compute host {instance['host']} could not be reached.",
                    vm_state="shelved")


async def _request_spec(conductor, instance: dict, host: str | None, cell: Cell) -> dict:
    spec = dict(await conductor.cells.api_db.read(build_requests.get_spec, instance["uuid"]) or {})
    image_id = shelved_image_id(instance)
    image = dict(spec.get("image") or {})
    if image_id:
        image["id"] = image_id
    # The zone is the one the server is pinned to (at create, or by an earlier unshelve), if any.
    spec.update(project_id=instance["project_id"], user_id=instance["user_id"], flavor=instance["flavor"],
                image=image, num_instances=1, availability_zone=spec.get("availability_zone"))
    # An unshelve stays in the server's cell (upstream refuses cross-cell unshelve); to the host an admin
    # named (2.91) if any, never to the one a create named.
    spec["requested_cell"] = cell.uuid
    spec.pop("requested_destination", None)
    if host:
        spec["requested_destination"] = {"host": host}
    return spec


async def _schedule_and_spawn(conductor, cell: Cell, instance: dict, host: str | None, request_id: str | None,
                              event) -> None:
    uuid = instance["uuid"]
    spec = await _request_spec(conductor, instance, host, cell)
    try:
        selections = await conductor.scheduler.call("select_destinations", request_spec=spec, instance_uuids=[uuid])
    except (RemoteError, RPCError) as exc:
        reason = exc.message if isinstance(exc, RemoteError) else str(exc)
        LOG.info("no host to unshelve %s: %s", uuid, reason)
        event.failed(exc)
        await release_allocations(conductor.placement, uuid)
        await _fail(cell, uuid, ["unshelving"], reason[:255], reason)
        return
    chosen = selections[0][0]
    try:
        instance = await cell.db.write(instances.update, uuid, {
            "host": chosen["host"], "node": chosen["nodename"], "availability_zone": chosen.get("availability_zone")},
            expected_task_state=["unshelving"], expected_vm_state=["shelved_offloaded"])
    except (NotFound, UnexpectedTaskState):  # deleted, or given up by the reconcile pass, meanwhile
        await release_allocations(conductor.placement, uuid)
        return
    try:
        await conductor.compute_rpc(chosen["host"]).cast("unshelve_instance", instance=instance,
                                                        image=spec.get("image") or {}, request_id=request_id)
    except NoSuchTarget as exc:
        event.failed(exc)
        if await _fail(cell, uuid, ["unshelving"], f"Compute host {chosen['host']} could not be reached."):
            await release_allocations(conductor.placement, uuid)


# ---------------------------------------------------------------------------------------------- periodic offload

_last_offload_poll: dict[int, float] = {}


@reconcile
async def offload_shelved(conductor) -> int:
    """Servers SHELVED longer than ``[DEFAULT] shelved_offload_time`` (> 0) are offloaded by their host,
    looked for every ``[DEFAULT] shelved_poll_interval`` seconds (upstream's _poll_shelved_instances)."""
    offload_time = conductor.conf.getint("DEFAULT", "shelved_offload_time")
    if offload_time <= 0:
        return 0
    now = time.monotonic()
    last = _last_offload_poll.get(id(conductor))
    if last is not None and now - last < conductor.conf.getfloat("DEFAULT", "shelved_poll_interval"):
        return 0
    _last_offload_poll[id(conductor)] = now
    horizon = datetime.utcnow() - timedelta(seconds=offload_time)
    offloaded = 0
    for cell in conductor.cells.real():
        shelved = await cell.db.read(instances.query, project_id=None,
                                     filters={"vm_state": "shelved", "task_state": None}, limit=None)
        for instance in shelved:
            shelved_at = (instance.get("system_metadata") or {}).get("shelved_at")
            if not shelved_at or datetime.fromisoformat(shelved_at) > horizon or not instance.get("host"):
                continue
            try:
                instance = await cell.db.write(instances.update, instance["uuid"], {"task_state": "shelving_offloading"},
                                               expected_task_state=[None], expected_vm_state=["shelved"])
            except (NotFound, UnexpectedTaskState):
                continue
            with contextlib.suppress(NoSuchTarget):  # an unreachable host: the reconcile pass finishes it
                await conductor.compute_rpc(instance["host"]).cast("shelve_offload_instance", instance=instance)
            offloaded += 1
    return offloaded


# ---------------------------------------------------------------------------------------------- reconcile

@reconcile
async def reconcile_shelving(conductor) -> int:
    healed = 0
    for cell in conductor.cells.real():
        try:
            healed += await _reconcile_cell(conductor, cell)
        except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
            LOG.warning("reconciling shelving in cell %s failed; next pass retries", cell.name, exc_info=True)
    return healed


async def _reconcile_cell(conductor, cell: Cell) -> int:
    timeout = conductor.conf.getfloat("compute", "shelve_timeout")
    horizon = datetime.utcnow() - timedelta(seconds=timeout)
    down_time = conductor.conf.getfloat("DEFAULT", "service_down_time")
    healed = 0
    for task_state in (*SHELVING, "shelving_offloading", "unshelving", "spawning", "powering-on"):
        for instance in await cell.db.read(instances.find_stuck, None, horizon, task_state=task_state):
            if not _is_ours(instance):
                continue
            if not await cell.db.write(instances.claim_stale, instance["uuid"], task_state, horizon):
                continue  # another conductor is on it
            if await _heal(conductor, cell, instance, timeout, down_time):
                healed += 1
    healed += await _release_offloaded_claims(conductor, cell)
    return healed


def _is_ours(instance: dict) -> bool:
    """Spawning and powering-on are also a build's and a start's: only a shelved server's are this pass's."""
    if instance["task_state"] in ("spawning", "unshelving"):
        return instance["vm_state"] == "shelved_offloaded" or \
            (instance["task_state"] == "unshelving" and instance["vm_state"] == "shelved")
    if instance["task_state"] == "powering-on":
        return instance["vm_state"] == "shelved"
    return True


async def _heal(conductor, cell: Cell, instance: dict, timeout: float, down_time: float) -> bool:
    uuid, task_state, host = instance["uuid"], instance["task_state"], instance["host"]
    late = f"did not finish within {timeout:.0f} seconds"
    if task_state in SHELVING:
        LOG.warning("shelve of %s on %s %s: cleared, the server stays as it was", uuid, host, late)
        if not await _fail(cell, uuid, [task_state], f"Shelve {late}; the server was left as it was.",
                           vm_state=instance["vm_state"], action="shelve",
                           system_metadata=without_shelved_keys(instance.get("system_metadata"))):
            return False
        # Its snapshot was never finished, and only its host (dead, or discarding it too) knew it.
        await shelved_images.delete(conductor.images, shelved_image_id(instance))
        return True
    if task_state == "powering-on" or (task_state == "unshelving" and instance["vm_state"] == "shelved"):
        return await _fail(cell, uuid, [task_state], f"Unshelve {late}; the server is still shelved.",
                           vm_state="shelved")
    if task_state == "shelving_offloading":
        if host and await cell.db.read(services.compute_is_up, host, down_time):
            LOG.warning("shelve offload of %s on %s %s: asking the host again", uuid, host, late)
            with contextlib.suppress(RPCError):
                await conductor.compute_rpc(host).cast("shelve_offload_instance", instance=instance)
                return True
        LOG.warning("shelve offload of %s %s and its host %s is down: finished here", uuid, late, host)
        return await _offload_here(conductor, cell, instance)
    # unshelving / spawning of an offloaded server: back to SHELVED_OFFLOADED, holding nothing.
    LOG.warning("unshelve of %s (%s on %s) %s: back to SHELVED_OFFLOADED", uuid, task_state, host, late)
    if not await _fail(cell, uuid, [task_state], f"Unshelve {late} (on host {host}); the server is shelved "
                                                 "offloaded again and can be unshelved again."):
        return False
    await _unbind_ports(conductor, instance.get("network_info") or [])
    await release_allocations(conductor.placement, uuid)
    return True


async def _offload_here(conductor, cell: Cell, instance: dict) -> bool:
    """An offload whose host is down: its guest is that host's to remove (an orphan when it comes back)."""
    uuid = instance["uuid"]
    try:
        await cell.db.write(instances.update, uuid, {"vm_state": "shelved_offloaded", "task_state": None,
                                                     "power_state": 0, "host": None, "node": None},
                            expected_task_state=["shelving_offloading"])
    except (NotFound, UnexpectedTaskState):
        return False
    await _unbind_ports(conductor, instance.get("network_info") or [])
    await release_allocations(conductor.placement, uuid)
    return True


async def _unbind_ports(conductor, network_info: list[dict]) -> None:
    if conductor.network is None:
        return
    for vif in network_info:
        with contextlib.suppress(Exception):
            await conductor.network.put(f"/v2.0/ports/{vif['port_id']}", json={"port": {"binding:host_id": ""}})


async def _release_offloaded_claims(conductor, cell: Cell) -> int:
    """A SHELVED_OFFLOADED server with no task holds no claim: one left by a crash half-way is released."""
    released = 0
    offloaded = await cell.db.read(instances.query, project_id=None,
                                   filters={"vm_state": "shelved_offloaded", "task_state": None}, limit=None)
    for instance in offloaded:
        reply = await conductor.placement.get(f"/allocations/{instance['uuid']}", headers=_PLACEMENT_1_28)
        if reply.status_code != 200 or not reply.json().get("allocations"):
            continue
        # Emptied only if nothing claimed for it since it was read (an unshelve starting now bumps the
        # consumer's generation, and Placement then refuses this write).
        held = reply.json()
        emptied = await conductor.placement.put(f"/allocations/{instance['uuid']}", headers=_PLACEMENT_1_28, json={
            "allocations": {}, "project_id": held.get("project_id") or instance["project_id"],
            "user_id": held.get("user_id") or instance["user_id"], "consumer_generation": held.get("consumer_generation")})
        if emptied.status_code == 204:
            LOG.warning("offloaded server %s still held a claim: released", instance["uuid"])
            released += 1
    return released


_PLACEMENT_1_28 = {"OpenStack-API-Version": "placement 1.28"}
