"""The conductor: the build flow, and the only way compute agents reach a database.

RPC methods (target ``conductor``):

* ``schedule_and_build_instances`` — ask the scheduler, write each server into
  its cell, hand it to its host; bury it in cell0 with a fault when no host fits.
* ``build_failed`` — a host could not spawn: release its claim, claim the next
  alternate and retry there, or put the server in ERROR when none is left.
* ``instance_update`` / ``instance_destroy`` / ``add_fault`` / ``service_report`` /
  ``compute_node_update`` / ``instances_on_host`` — state reported by agents.

Reconcile passes (``reconcile_stuck_builds``, ``reconcile_stuck_deletes``) give every
build and delete a deadline. Several conductors may run them at once: each change
they make is a compare-and-set on the instance's state, so only one of them acts.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import datetime, timedelta

import sqlalchemy as sa

from kilonova.common.db import NotFound
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError, error_payload, redelivered
from kilonova.compute.cells import Cell, Cells
from kilonova.compute.cleanup import delete_locally, release_allocations
from kilonova.compute.db import build_requests, compute_nodes, instance_actions, instances, mappings, services
from kilonova.compute.db.instances import UnexpectedTaskState

LOG = logging.getLogger(__name__)
# select_destinations calls one conductor has under way at once.
SCHEDULING_CALLS = 8


class ConductorManager:
    def __init__(self, conf, cells: Cells, scheduler, compute_rpc, placement, network=None):
        self.conf = conf
        self.cells = cells
        self.scheduler = scheduler
        self.compute_rpc = compute_rpc  # host -> RPCClient
        self.placement = placement
        self.network = network  # the network service as the service user: ports of deletes finished here
        self._cell_of: dict[str, Cell] = {}
        # Seconds each select_destinations call took, per server (for benchmarks: get_stats).
        self._decisions: deque[float] = deque(maxlen=100000)
        # Servers whose build this process is scheduling right now: after a broker restart the
        # broker hands their unacknowledged cast back while the first delivery is still running here.
        self._in_flight: set[str] = set()
        self._scheduling = asyncio.Semaphore(SCHEDULING_CALLS)

    # ------------------------------------------------------------------ helpers

    async def _cell_for_instance(self, uuid: str) -> Cell:
        cell = self._cell_of.get(uuid)
        if cell is None:
            mapping = await self.cells.api_db.read(mappings.get_instance_mapping, uuid)
            if mapping is None or mapping.cell_id is None:
                raise NotFound(f"Instance {uuid} is not mapped to a cell.")
            cell = self.cells.by_id(mapping.cell_id)
            if len(self._cell_of) > 100000:
                self._cell_of.clear()
            self._cell_of[uuid] = cell
        return cell

    async def _release(self, uuid: str) -> None:
        await release_allocations(self.placement, uuid)

    async def _cell_for_host(self, host: str, wanted: str | None = None) -> Cell:
        mapping_cell = await self.cells.api_db.read(_host_cell_uuid, host)
        if mapping_cell is None:
            # Automatic host discovery: a new compute host joins the cell it asks for, else the default one.
            cell = self._named_cell(wanted) if wanted else self.cells.default
            await self.cells.api_db.write(mappings.map_host, host, cell.uuid)
            return cell
        if mapping_cell not in {c.uuid for c in self.cells.all()}:
            self.cells.load()  # a cell mapped after this conductor started
        return self.cells.get(mapping_cell)

    def _named_cell(self, name: str) -> Cell:
        cell = self.cells.named(name)
        if cell is None:
            self.cells.load()
            cell = self.cells.named(name)
        if cell is None or cell.is_cell0:
            LOG.warning("a host asked for cell %r, which is not mapped; using %s", name, self.cells.default.name)
            return self.cells.default
        return cell

    # ------------------------------------------------------------------ build flow

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
            self.conf.get("compute", "default_availability_zone")
        instance = await cell.db.write(_create_with_action, values, spec)
        if not await self.cells.api_db.write(_promote_build_request, uuid, cell.uuid):
            await cell.db.write(instances.soft_delete, uuid)
            await self._release(uuid)
            return
        self._cell_of[uuid] = cell
        await self._send_build(instance, spec, alternates, attempt=1)

    async def _send_build(self, instance: dict, spec: dict, alternates: list[dict], attempt: int) -> None:
        try:
            await self.compute_rpc(instance["host"]).cast(
                "build_and_run_instance", instance=instance, request_spec=spec, alternates=alternates,
                attempt=attempt, deadline=time.time() + self.conf.getfloat("compute", "build_timeout"))
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
        try:
            await cell0.db.write(_create_with_fault, values, 500, reason[:255], reason)
        except sa.exc.IntegrityError:
            pass  # written by another conductor burying it now, or by one that died before the next step
        if await self.cells.api_db.write(_promote_build_request, uuid, cell0.uuid):
            await self._release(uuid)
            return True
        mapping = await self.cells.api_db.read(mappings.get_instance_mapping, uuid)
        if mapping is None or self.cells.by_id(mapping.cell_id) is not cell0:
            await cell0.db.write(instances.purge, uuid)  # scheduled to a host or deleted meanwhile
        return False

    async def build_failed(self, instance_uuid: str, host: str, reason: str, request_spec: dict,
                           alternates: list[dict], attempt: int) -> None:
        """A host could not build the server: retry on an alternate, or ERROR when none is left.

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
        max_attempts = self.conf.getint("filter_scheduler", "max_attempts")
        remaining = list(alternates)
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
        message = ("Exceeded maximum number of retries. Exhausted all hosts available for retrying build "
                   f"failures for instance {instance_uuid}.") if attempt > 1 or alternates else \
            f"Build of instance {instance_uuid} failed on host {host}."
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
        """Servers still building past ``[compute] build_timeout`` go to ERROR and give back their claim."""
        timeout = self.conf.getfloat("compute", "build_timeout")
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

    async def reconcile_stuck_deletes(self) -> int:
        """Finish here the deletes no compute agent finishes: its host is down, or ``[compute] delete_timeout``
        has passed (the message was lost, the agent gave up on a dead conductor, the API died before
        sending it). Ports, claims, then the row, as the agent would; a live host is told again, so
        that it destroys the guest when it can."""
        finished = 0
        for cell in self.cells.real():
            try:
                finished += await self._finish_stuck_deletes(cell)
            except Exception:  # noqa: BLE001 - a cell that is down must not hold up the others
                LOG.warning("finishing stuck deletes in cell %s failed; next pass retries", cell.name, exc_info=True)
        return finished

    async def _finish_stuck_deletes(self, cell: Cell) -> int:
        timeout = self.conf.getfloat("compute", "delete_timeout")
        down_time = self.conf.getfloat("DEFAULT", "service_down_time")
        now = datetime.utcnow()
        deadline = now - timedelta(seconds=timeout)
        quiet = now - timedelta(seconds=min(timeout, down_time))  # a down host had this long to report
        finished = 0
        for instance in await cell.db.read(instances.find_stuck, None, quiet, task_state="deleting"):
            uuid, host = instance["uuid"], instance["host"]
            overdue = datetime.fromisoformat(instance["updated_at"] or instance["created_at"]) < deadline
            host_up = bool(host) and await cell.db.read(services.compute_is_up, host, down_time)
            if host_up and not overdue:
                continue
            if not await cell.db.write(instances.claim_stale, uuid, "deleting", quiet):
                continue  # another conductor is finishing it
            LOG.warning("finishing the delete of %s without its compute host %s (%s)", uuid, host,
                        "past its deadline" if host_up else "the host is down")
            if host_up:
                with contextlib.suppress(RPCError):
                    await self.compute_rpc(host).cast("terminate_instance", instance=instance)
            if await delete_locally(cell, self.placement, self.network, instance):
                finished += 1
            self._cell_of.pop(uuid, None)
        return finished

    async def get_stats(self) -> dict:
        """What this conductor measured: scheduler decision times in seconds (most recent last)."""
        return {"select_destinations": list(self._decisions)}

    # ------------------------------------------------------------------ agent reports

    async def instance_update(self, instance_uuid: str, values: dict, expected_task_state: list | None = None,
                              expected_vm_state: list | None = None, expected_host: str | None = None) -> dict:
        """An agent's state change; with ``expected_*`` an atomic compare-and-set (UnexpectedTaskState if not)."""
        cell = await self._cell_for_instance(instance_uuid)
        return await cell.db.write(instances.update, instance_uuid, values, expected_task_state=expected_task_state,
                                   expected_vm_state=expected_vm_state, expected_host=expected_host)

    async def instance_get(self, instance_uuid: str) -> dict:
        cell = await self._cell_for_instance(instance_uuid)
        return await cell.db.read(instances.get, instance_uuid)

    async def instance_destroy(self, instance_uuid: str) -> None:
        cell = await self._cell_for_instance(instance_uuid)
        try:
            await cell.db.write(instances.soft_delete, instance_uuid)
        except NotFound:
            pass
        await cell.db.write(instance_actions.finish, instance_uuid, "delete")
        self._cell_of.pop(instance_uuid, None)

    async def add_fault(self, instance_uuid: str, code: int, message: str, details: str | None = None,
                        host: str | None = None) -> None:
        cell = await self._cell_for_instance(instance_uuid)
        await cell.db.write(instances.add_fault, instance_uuid, code, message, details, host)

    async def service_report(self, host: str, binary: str, topic: str | None = None, cell: str | None = None,
                             version: int = 1) -> dict:
        cell = await self._cell_for_host(host, cell) if binary == "nova-compute" else self.cells.default
        return await cell.db.write(services.report, host, binary, topic, version)

    async def compute_node_update(self, host: str, nodename: str, values: dict, service_id: int | None) -> str:
        cell = await self._cell_for_host(host)
        return await cell.db.write(compute_nodes.upsert, host, nodename, values, service_id)

    async def report_many(self, reports: list[dict]) -> list[dict]:
        """Heartbeats and usage reports of many hosts of one compute process, in one call.

        ``reports``: [{"method": "service_report" | "compute_node_update", "args": {...}}]. Replies
        in the same order, each {"result": ...} or {"error": {...}}. The hosts' cells are looked up
        in one query and each cell's reports are written in one transaction (one by one if that fails).
        """
        replies: list[dict | None] = [None] * len(reports)
        by_cell: dict[str, list[int]] = {}
        cells_of = await self.cells.api_db.read(_host_cells, sorted({r["args"]["host"] for r in reports}))
        for index, report in enumerate(reports):
            method, args = report.get("method"), report.get("args") or {}
            if method not in ("service_report", "compute_node_update"):
                replies[index] = {"error": {"type": "NoSuchMethod", "message": f"{method} cannot be batched"}}
            elif args["host"] not in cells_of or (method == "service_report" and args.get("binary") != "nova-compute"):
                replies[index] = await self._one_report(method, args)  # a new host: maps it to its cell
            else:
                by_cell.setdefault(cells_of[args["host"]], []).append(index)
        for cell_uuid, indexes in by_cell.items():
            try:
                cell = self.cells.get(cell_uuid)
            except KeyError:  # a cell mapped after this conductor started
                self.cells.load()
                cell = self.cells.get(cell_uuid)
            try:
                results = await cell.db.write(_apply_reports, [reports[i] for i in indexes])
                for index, result in zip(indexes, results):
                    replies[index] = {"result": result}
            except Exception:  # noqa: BLE001 - find which one fails, keep the others
                LOG.warning("a batch of %d reports failed in cell %s; writing them one by one", len(indexes),
                            cell.name, exc_info=True)
                for index in indexes:
                    replies[index] = await self._one_report(reports[index]["method"], reports[index]["args"])
        return replies  # type: ignore[return-value]

    async def _one_report(self, method: str, args: dict) -> dict:
        try:
            return {"result": await getattr(self, method)(**args)}
        except Exception as exc:  # noqa: BLE001 - goes back to that host's caller
            return {"error": error_payload(exc)}

    async def instances_on_host(self, host: str) -> list[dict]:
        cell = await self._cell_for_host(host)
        return await cell.db.read(instances.list_by_host, host)


def _host_cell_uuid(session, host: str) -> str | None:
    from kilonova.compute.db.api_models import CellMapping, HostMapping
    import sqlalchemy as sa

    return session.scalar(sa.select(CellMapping.uuid).join(HostMapping, HostMapping.cell_id == CellMapping.id)
                          .where(HostMapping.host == host))


def _host_cells(session, hosts: list[str]) -> dict[str, str]:
    """host -> cell uuid for the mapped ones among ``hosts``."""
    from kilonova.compute.db.api_models import CellMapping, HostMapping
    import sqlalchemy as sa

    rows = session.execute(sa.select(HostMapping.host, CellMapping.uuid)
                           .join(CellMapping, HostMapping.cell_id == CellMapping.id)
                           .where(HostMapping.host.in_(hosts)))
    return {host: cell_uuid for host, cell_uuid in rows}


def _apply_reports(session, reports: list[dict]) -> list:
    """service_report (nova-compute) / compute_node_update of hosts of one cell, in the caller's transaction.

    The heartbeats of services already registered are one UPDATE and one SELECT for all of them.
    """
    import sqlalchemy as sa

    from kilonova.compute.db.cell_models import Service

    results: list = [None] * len(reports)
    beats = {i: r["args"] for i, r in enumerate(reports) if r["method"] == "service_report"}
    if beats:
        hosts = sorted({args["host"] for args in beats.values()})
        now = datetime.utcnow()
        registered = sa.and_(Service.host.in_(hosts), Service.binary == "nova-compute", Service.deleted == 0)
        session.execute(sa.update(Service).where(registered)
                        .values(report_count=Service.report_count + 1, updated_at=now, last_seen_up=now)
                        .execution_options(synchronize_session=False))
        found = {row.host: row for row in session.execute(
            sa.select(Service.id, Service.uuid, Service.host, Service.disabled, Service.forced_down,
                      Service.version).where(registered))}
        for index, args in beats.items():
            row, version = found.get(args["host"]), args.get("version", 1)
            if row is None:
                results[index] = services.report(session, args["host"], args["binary"], args.get("topic"), version)
                continue
            if row.version != version:  # the host was upgraded (or pinned) since its last heartbeat
                session.execute(sa.update(Service).where(Service.id == row.id).values(version=version))
            results[index] = {"id": row.id, "uuid": row.uuid, "disabled": bool(row.disabled),
                              "forced_down": bool(row.forced_down)}
    for index, report in enumerate(reports):
        if report["method"] != "service_report":
            args = report["args"]
            results[index] = compute_nodes.upsert(session, args["host"], args["nodename"], args["values"],
                                                  args.get("service_id"))
    return results


def _promote_build_request(session, uuid: str, cell_uuid: str) -> bool:
    """Point the mapping at the cell and drop the build request; False when the user deleted it."""
    if not build_requests.delete(session, uuid):
        return False
    mappings.set_instance_cell(session, uuid, cell_uuid)
    return True


def _create_with_action(session, values: dict, spec: dict) -> dict:
    instance = instances.create(session, values)
    ctx = spec.get("context") or {}
    instance_actions.start(session, values["uuid"], "create", ctx.get("request_id"), ctx.get("user_id"),
                           ctx.get("project_id"))
    return instance


def _create_with_fault(session, values: dict, code: int, message: str, details: str) -> dict:
    instance = instances.create(session, values)
    instances.add_fault(session, values["uuid"], code, message, details)
    return instance


def _set_error(session, uuid: str, code: int, message: str, details: str, host: str) -> None:
    """A build that failed for good: ERROR with a fault, once (UnexpectedTaskState if no longer building)."""
    instances.update(session, uuid, {"vm_state": "error", "task_state": None, "power_state": 0},
                     expected_vm_state=["building"])
    instances.add_fault(session, uuid, code, message, details, host)
    instance_actions.finish(session, uuid, "create", "Error")

