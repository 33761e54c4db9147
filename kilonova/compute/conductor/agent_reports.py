"""What compute agents report, written for them: a compute agent never opens a database.

Instance state changes (compare-and-set), faults, heartbeats, compute node usage, and the instances,
migration records and action events of a host.
"""
from __future__ import annotations

import logging
from datetime import datetime

from kilonova.common.db import NotFound
from kilonova.common.rpc import error_payload
from kilonova.compute.conductor.part import ConductorPart
from kilonova.compute.db import compute_nodes, instance_actions, instances, migrations, services

LOG = logging.getLogger(__name__)


class AgentReports(ConductorPart):
    async def instance_update(self, instance_uuid: str, values: dict, expected_task_state: list | None = None,
                              expected_vm_state: list | None = None, expected_host: str | None = None,
                              fault: dict | None = None) -> dict:
        """An agent's state change; with ``expected_*`` an atomic compare-and-set (UnexpectedTaskState if not);
        ``fault`` is recorded with it, in the same transaction."""
        cell = await self._cell_for_instance(instance_uuid)
        return await cell.db.write(instances.update_with_fault, instance_uuid, values, fault,
                                   expected_task_state=expected_task_state, expected_vm_state=expected_vm_state,
                                   expected_host=expected_host)

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

    async def action_event(self, phase: str, instance_uuid: str, request_id: str, event: str,
                           host: str | None = None, result: str | None = None, details: str | None = None,
                           traceback: str | None = None, finish_action: str | None = None) -> bool:
        """A step of an instance action began (``phase`` "start") or ended ("finish", with its result).

        ``finish_action`` (RPC 1.5): the step was the operation's last: its end also finishes that action
        (message Error when the step's result is), as ``action_finish`` would.
        """
        cell = await self._cell_for_instance(instance_uuid)
        if phase == "start":
            return await cell.db.write(instance_actions.event_start, instance_uuid, request_id, event, host)
        if finish_action is not None:
            return await cell.db.write(instance_actions.finish_last_event, instance_uuid, request_id, event,
                                       result, details, traceback, host, finish_action)
        return await cell.db.write(instance_actions.event_finish, instance_uuid, request_id, event, result,
                                   details, traceback, host)

    async def action_finish(self, instance_uuid: str, request_id: str, action: str,
                            message: str | None = None) -> None:
        """The operation of an instance action is over (``message`` "Error" when it failed)."""
        cell = await self._cell_for_instance(instance_uuid)
        await cell.db.write(instance_actions.finish, instance_uuid, action, message, request_id)

    async def migration_get(self, instance_uuid: str, migration_uuid: str) -> dict:
        cell = await self._cell_for_instance(instance_uuid)
        return await cell.db.read(migrations.get, migration_uuid)

    async def migration_update(self, instance_uuid: str, migration_uuid: str, values: dict,
                               expected_status: list | None = None) -> dict:
        """Change a migration record (compare-and-set on its status with ``expected_status``); a live
        migration's copy figures also move the server's ``progress`` (100 less the share of the data left, as
        upstream's libvirt driver reports it)."""
        cell = await self._cell_for_instance(instance_uuid)
        progress = _copy_progress(values)
        if progress is None:
            return await cell.db.write(migrations.update, migration_uuid, values, expected_status)

        def update_both(session):
            updated = migrations.update(session, migration_uuid, values, expected_status)
            instances.update(session, instance_uuid, {"progress": progress})
            return updated
        return await cell.db.write(update_both)

    async def migrations_on_host(self, host: str, statuses: list) -> list[dict]:
        """The moves this host is source or destination of, in ``statuses`` (an agent's start-up checks)."""
        cell = await self._cell_for_host(host)
        return await cell.db.read(migrations.on_host, host, tuple(statuses))

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


def _copy_progress(values: dict) -> int | None:
    """The percentage of a live migration's data (memory and disks) copied, from its progress report."""
    totals = [values.get(f"{kind}_total") for kind in ("memory", "disk")]
    if not any(totals):
        return None
    total = sum(value or 0 for value in totals)
    remaining = sum(values.get(f"{kind}_remaining") or 0 for kind in ("memory", "disk"))
    return max(0, min(100, 100 - int(remaining * 100 / total)))
