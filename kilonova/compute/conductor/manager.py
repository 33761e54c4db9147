"""The conductor: the only way compute agents reach a database, and the control of long operations.

The manager only dispatches: each ``conductor`` RPC method is served by one part --

* ``build.BuildFlow`` -- ``schedule_and_build_instances``, ``build_failed``, the stuck-build reconciler;
* ``deletes.StuckDeletes`` -- deletes no compute agent finishes;
* ``agent_reports.AgentReports`` -- ``instance_update`` / ``add_fault`` / ``service_report`` / ... for agents;
* the task modules of ``kilonova.compute.conductor.tasks`` -- one per long-running operation
  (resize, migrations, evacuate, rebuild, unshelve, ...), with their own reconcile passes.

Several conductors may run at once: each change they make is a compare-and-set on the instance's (or
the migration record's) state, so only one of them acts.
"""
from __future__ import annotations

import asyncio
import functools
import logging

from kilonova.common.db import NotFound
from kilonova.compute.cells import Cell, Cells
from kilonova.compute.cleanup import release_allocations
from kilonova.compute.conductor import tasks
from kilonova.compute.conductor.agent_reports import AgentReports, _host_cell_uuid
from kilonova.compute.conductor.build import BuildFlow
from kilonova.compute.conductor.deletes import StuckDeletes
from kilonova.compute.db import mappings

LOG = logging.getLogger(__name__)


class ConductorManager:
    def __init__(self, conf, cells: Cells, scheduler, compute_rpc, placement, network=None, images=None,
                 volumes=None):
        self.conf = conf
        self.cells = cells
        self.scheduler = scheduler
        self.compute_rpc = compute_rpc  # host -> RPCClient
        self.placement = placement
        self.network = network  # the network service as the service user: ports of deletes finished here
        self.images = images  # the image service as the service user: snapshots of shelves cut short
        self.volumes = volumes  # the volume service as the service user: volumes of deletes finished here
        self._cell_of: dict[str, Cell] = {}
        tasks.load()
        self._parts = (BuildFlow(self), StuckDeletes(self), AgentReports(self))

    def __getattr__(self, name: str):
        """An RPC method (or reconcile pass) of one of the parts, or of a task module (found once per name:
        every RPC message looks its method up)."""
        if name.startswith("_"):
            raise AttributeError(name)
        found = self.__dict__.setdefault("_remote", {}).get(name)
        if found is not None:
            return found
        for part in self.__dict__.get("_parts", ()):
            if asyncio.iscoroutinefunction(getattr(type(part), name, None)):
                found = getattr(part, name)
                break
        else:
            task = tasks.REMOTE.get(name)
            if task is None:
                raise AttributeError(f"{type(self).__name__} has no attribute {name}")
            found = functools.partial(task, self)
        self._remote[name] = found
        return found

    def reconcile_passes(self) -> list:
        """Every periodic pass, in order: builds, deletes, then each task's own."""
        return [self.reconcile_stuck_builds, self.reconcile_stuck_deletes,
                *(functools.update_wrapper(functools.partial(p, self), p) for p in tasks.RECONCILERS)]

    # ------------------------------------------------------------------ shared by the parts and tasks

    async def cell_for_instance(self, uuid: str) -> Cell:
        return await self._cell_for_instance(uuid)

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
