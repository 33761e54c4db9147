"""The build flow: schedule, write each server into its cell, hand it to its host; reschedule on a host's
failure; bury what cannot be placed in cell0; give every build a deadline (``reconcile_stuck_builds``)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime, timedelta

import sqlalchemy as sa

from kilonova.common.db import NotFound
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError, redelivered
from kilonova.compute import volume_api
from kilonova.compute.cleanup import release_prepared_volumes
from kilonova.compute.conductor import group_check
from kilonova.compute.conductor.part import ConductorPart
from kilonova.compute.db import block_devices, build_requests, instance_actions, instances, mappings
from kilonova.compute.db.instances import UnexpectedTaskState

LOG = logging.getLogger(__name__)
# select_destinations calls one conductor has under way at once.
SCHEDULING_CALLS = 8


class BuildFlow(ConductorPart):
    def __init__(self, conductor):
        super().__init__(conductor)
        # Seconds each select_destinations call took, per server (for benchmarks: get_stats).
        self._decisions: deque[float] = deque(maxlen=100000)
        # Servers whose build this process is scheduling right now: after a broker restart the
        # broker hands their unacknowledged cast back while the first delivery is still running here.
        self._in_flight: set[str] = set()
        self._scheduling = asyncio.Semaphore(SCHEDULING_CALLS)

    async def schedule_and_build_instances(self, instance_uuids: list[str], request_spec: dict) -> None:
        if redelivered():
            mine = [uuid for uuid in instance_uuids if uuid in self._in_flight]
            if mine:
                LOG.info("%s are still being scheduled by this conductor; ignoring their redelivery", mine)
            instance_uuids = await self._restart_builds([u for u in instance_uuids if u not in mine])
        if not instance_uuids:
            return
        self._in_flight.update(instance_uuids)
        try:
            await self._schedule_and_build(instance_uuids, request_spec)
        finally:
            self._in_flight.difference_update(instance_uuids)

    async def _schedule_and_build(self, instance_uuids: list[str], request_spec: dict) -> None:
        try:
            # A burst of builds waits here, not inside the RPC call: the scheduler answers a few at a
            # time anyway, and a call queued behind hundreds of others would outlive its timeout.
            async with self._scheduling:
                asked = time.monotonic()
                selections = await self.scheduler.call("select_destinations", request_spec=request_spec,
                                                       instance_uuids=instance_uuids)
            self._decisions.append((time.monotonic() - asked) / max(1, len(instance_uuids)))
        except (RemoteError, RPCError) as exc:
            reason = exc.message if isinstance(exc, RemoteError) else str(exc)
            LOG.info("no host for %s: %s", instance_uuids, reason)
            for uuid in instance_uuids:
                await self._bury_in_cell0(uuid, reason)
            return
        for uuid, hosts in zip(instance_uuids, selections):
            await self._create_and_build(uuid, hosts, request_spec)

    async def _restart_builds(self, instance_uuids: list[str]) -> list[str]:
        """A conductor died while building these: undo what it did for the ones still pending.

        A server still a build request is scheduled again from scratch (its claim released, rows it
        may have written to a cell before dying removed). One already promoted to a cell is left
        to its host, or to the stuck-build reconciler if the cast to the host was lost.
        """
        pending = []
        for uuid in instance_uuids:
            if await self.cells.api_db.read(build_requests.get, uuid) is None:
                continue
            await self._release(uuid)
            for cell in self.cells.all():
                await cell.db.write(instances.purge, uuid)
            pending.append(uuid)
        LOG.info("restarting the builds of %s after a conductor failure", pending)
        return pending

    async def _create_and_build(self, uuid: str, hosts: list[dict], spec: dict) -> None:
        chosen, alternates = hosts[0], hosts[1:]
        pending = await self.cells.api_db.read(build_requests.get, uuid)
        if pending is None:  # deleted by the user while it was being scheduled
            await self._release(uuid)
            return
        cell = self.cells.get(chosen["cell_uuid"])
        values = {k: v for k, v in pending.items() if not k.startswith("_")}
        values.update(host=chosen["host"], node=chosen["nodename"], task_state=None)
        values["availability_zone"] = chosen.get("availability_zone") or values.get("availability_zone") or \
            self.conf.get("DEFAULT", "default_availability_zone")
        instance = await cell.db.write(_create_with_action, values, spec)
        if not await self.cells.api_db.write(_promote_build_request, uuid, cell.uuid):
            await cell.db.write(instances.soft_delete, uuid)
            await self._release(uuid)
            return
        self._cell_of[uuid] = cell
        await self._send_build(instance, spec, alternates, attempt=1)

    async def _send_build(self, instance: dict, spec: dict, alternates: list[dict], attempt: int) -> None:
        broken = await group_check.violation(self.cells, spec, instance["uuid"], instance["host"])
        if broken:  # a parallel build of the same server group took this host meanwhile
            await self.build_failed(instance["uuid"], instance["host"], broken, spec, alternates, attempt)
            return
        try:
            await self.compute_rpc(instance["host"]).cast(
                "build_and_run_instance", instance=instance, request_spec=spec, alternates=alternates,
                attempt=attempt, deadline=time.time() + self.conf.getfloat("DEFAULT", "instance_build_timeout"))
        except NoSuchTarget:
            await self.build_failed(instance["uuid"], instance["host"], f"compute host {instance['host']} "
                                    "is not reachable", spec, alternates, attempt)

    async def _bury_in_cell0(self, uuid: str, reason: str) -> bool:
        """Put a build request that cannot be scheduled into cell0 with a fault; False if not ours to bury.

        Safe beside another conductor burying it too, and after a crash half-way: the cell0 row is
        written once (its uuid is unique) and only the caller that removes the build request owns
        the server's fate.
        """
        pending = await self.cells.api_db.read(build_requests.get, uuid)
        if pending is None:
            return False
        values = {k: v for k, v in pending.items() if not k.startswith("_")}
        values.update(vm_state="error", task_state=None)
        cell0 = self.cells.cell0
        spec = await self.cells.api_db.read(build_requests.get_spec, uuid) or {}
        ctx = spec.get("context") or {}
        try:
            await cell0.db.write(_create_with_fault, values, 500, reason[:255], reason, ctx,
                                 self.conf.get("DEFAULT", "host"))
        except sa.exc.IntegrityError:
            pass  # written by another conductor burying it now, or by one that died before the next step
        if await self.cells.api_db.write(_promote_build_request, uuid, cell0.uuid):
            await self._release(uuid)
            await self._give_back_volumes(uuid, spec)
            return True
        mapping = await self.cells.api_db.read(mappings.get_instance_mapping, uuid)
        if mapping is None or self.cells.by_id(mapping.cell_id) is not cell0:
            await cell0.db.write(instances.purge, uuid)  # scheduled to a host or deleted meanwhile
        return False

    async def _give_back_volumes(self, uuid: str, spec: dict) -> None:
        """A server that will never run: the volumes the API reserved go back, those it made for it go."""
        rows = (spec.get("block_devices") or {}).get(uuid) or []
        if rows and self.volumes is not None:
            volumes = await volume_api.as_service(self.volumes)
            await release_prepared_volumes(volumes, uuid, rows)

    async def build_failed(self, instance_uuid: str, host: str, reason: str, request_spec: dict,
                           alternates: list[dict], attempt: int, aborted: bool = False) -> None:
        """A host could not build the server: retry on an alternate, or ERROR when none is left (at once when
        the host says no host could build it: ``aborted``, with the reason as the fault's message).

        A report that no longer matches the server (it was rescheduled, timed out to ERROR, or this
        is a repeated delivery) is ignored: releasing now would take a claim that is not that host's.
        """
        cell = await self._cell_for_instance(instance_uuid)
        try:
            current = await cell.db.read(instances.get, instance_uuid)
        except NotFound:
            await self._release(instance_uuid)
            return
        if current["vm_state"] != "building" or current["host"] != host:
            LOG.info("ignoring a stale build failure of %s on %s", instance_uuid, host)
            return
        await self._release(instance_uuid)
        max_attempts = self.conf.getint("scheduler", "max_attempts")
        remaining = [] if aborted else list(alternates)
        while remaining and attempt < max_attempts:
            alternate = remaining.pop(0)
            body = {"allocations": alternate["allocation_request"]["allocations"],
                    "project_id": request_spec["project_id"], "user_id": request_spec["user_id"],
                    "consumer_generation": None}
            response = await self.placement.put(f"/allocations/{instance_uuid}", json=body)
            if response.status_code != 204:
                continue
            try:
                instance = await cell.db.write(instances.update, instance_uuid, {
                    "host": alternate["host"], "node": alternate["nodename"], "task_state": None},
                    expected_vm_state=["building"], expected_host=host)
            except (NotFound, UnexpectedTaskState):  # deleted, or timed out, meanwhile
                await self._release(instance_uuid)
                return
            LOG.info("rescheduling %s from %s to %s: %s", instance_uuid, host, alternate["host"], reason)
            await self._send_build(instance, request_spec, remaining, attempt + 1)
            return
        if aborted:
            message = f"Build of instance {instance_uuid} aborted: {reason}"
        elif attempt > 1 or alternates:
            message = ("Exceeded maximum number of retries. Exhausted all hosts available for retrying build "
                       f"failures for instance {instance_uuid}.")
        else:
            message = f"Build of instance {instance_uuid} failed on host {host}."
        try:
            await cell.db.write(_set_error, instance_uuid, 500, message, f"Last failure on {host}: {reason}", host)
        except (NotFound, UnexpectedTaskState):
            pass

    async def recover_build_requests(self) -> int:
        """Schedule again the build requests whose cast was lost (a restart of an in-process deployment)."""
        pending = await self.cells.api_db.read(build_requests.list_for, None)
        for server in pending:
            spec = await self.cells.api_db.read(build_requests.get_spec, server["uuid"])
            if spec is None:
                continue
            await self._release(server["uuid"])  # a claim made before the restart would block a new one
            await self.schedule_and_build_instances([server["uuid"]], dict(spec, num_instances=1))
        return len(pending)

    async def reconcile_stuck_builds(self) -> int:
        """Servers still building past ``[DEFAULT] instance_build_timeout`` go to ERROR and give back their claim."""
        timeout = self.conf.getfloat("DEFAULT", "instance_build_timeout")
        horizon = datetime.utcnow() - timedelta(seconds=timeout)
        healed = 0
        for cell in self.cells.real():
            for instance in await cell.db.read(instances.find_stuck, "building", horizon):
                if instance["task_state"] == "deleting":
                    continue  # being deleted: the stuck-delete sweep's, not a failed build
                try:
                    await cell.db.write(_set_error, instance["uuid"], 500,
                                        f"Build did not finish within {timeout:.0f} seconds.",
                                        "The compute host did not report the build as finished.", instance["host"])
                except (NotFound, UnexpectedTaskState):
                    continue  # finished, deleted, or timed out by another conductor meanwhile
                await self._release(instance["uuid"])
                healed += 1
        for server in await self.cells.api_db.read(build_requests.list_for, None):
            if datetime.fromisoformat(server["created_at"]) < horizon and await self._bury_in_cell0(
                    server["uuid"], f"Build request was not scheduled within {timeout:.0f} seconds."):
                healed += 1
        return healed

    async def get_stats(self) -> dict:
        """What this conductor measured: scheduler decision times in seconds (most recent last)."""
        return {"select_destinations": list(self._decisions)}


def _promote_build_request(session, uuid: str, cell_uuid: str) -> bool:
    """Point the mapping at the cell and drop the build request; False when the user deleted it."""
    if not build_requests.delete(session, uuid):
        return False
    mappings.set_instance_cell(session, uuid, cell_uuid)
    return True


def _create_with_action(session, values: dict, spec: dict) -> dict:
    instance = instances.create(session, values)
    # Its volumes (block_device_mapping_v2), as the API reserved or made them: connected by its host.
    block_devices.create_many(session, values["uuid"], (spec.get("block_devices") or {}).get(values["uuid"]) or [])
    ctx = spec.get("context") or {}
    instance_actions.start(session, values["uuid"], "create", ctx.get("request_id"), ctx.get("user_id"),
                           ctx.get("project_id"))
    return instance


def _create_with_fault(session, values: dict, code: int, message: str, details: str, ctx: dict,
                       host: str | None) -> dict:
    """A server buried in cell0: its row, its fault, and (as upstream records it) a failed "create" action
    whose one event, conductor_schedule_and_build_instances, says why."""
    instance = instances.create(session, values)
    instances.add_fault(session, values["uuid"], code, message, details)
    instance_actions.record_failed(session, values["uuid"], "create", ctx.get("request_id"), ctx.get("user_id"),
                                   ctx.get("project_id"), "conductor_schedule_and_build_instances", details[:1000],
                                   host=host)
    return instance


def _set_error(session, uuid: str, code: int, message: str, details: str, host: str) -> None:
    """A build that failed for good: ERROR with a fault, once (UnexpectedTaskState if no longer building)."""
    instances.update(session, uuid, {"vm_state": "error", "task_state": None, "power_state": 0},
                     expected_vm_state=["building"])
    instances.add_fault(session, uuid, code, message, details, host)
    instance_actions.finish(session, uuid, "create", "Error")

