"""The conductor service: serves the ``conductor`` RPC target."""
from __future__ import annotations

import asyncio
import logging

from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.db import Database
from kilonova.common.rpc import TransportPool
from kilonova.common.service import Service, ServiceEnv
from kilonova.compute.cell_rpc import CellRouter
from kilonova.compute import versions
from kilonova.compute.cells import Cells
from kilonova.compute.conductor.manager import ConductorManager
from kilonova.compute.heartbeat import Heartbeat

LOG = logging.getLogger(__name__)


class ConductorService(Service):
    name = "conductor"

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        conf = env.conf
        timeout = conf.getfloat("DEFAULT", "rpc_response_timeout")
        self.cells = Cells(Database.shared(conf.get("api_database", "connection"), name="nova_api"))
        auth = ServiceAuth(env.endpoints.http_client("identity"), conf.get("service_user", "username"),
                           conf.get("service_user", "password"), conf.get("service_user", "project_name"))
        placement = ServiceClient(env.endpoints.http_client("placement"), auth,
                                  {"OpenStack-API-Version": "placement 1.36"})
        scheduler = versions.scheduler_client(env.transport, conf)
        # Builds go to a host over its cell's transport; the scheduler stays on the top-level one.
        self.transports = TransportPool(env.transport, conf.get("DEFAULT", "transport_url"))
        self.router = CellRouter(self.cells, self.transports, timeout, compute_pin=versions.compute_pin(conf))
        network = ServiceClient(env.endpoints.http_client("network"), auth)
        images = ServiceClient(env.endpoints.http_client("image"), auth)
        volumes = ServiceClient(env.endpoints.http_client("block-storage"), auth)
        self.manager = ConductorManager(conf, self.cells, scheduler, self.router.client, placement, network,
                                        images=images, volumes=volumes)
        self.heartbeat: Heartbeat | None = None
        self._reconciler: asyncio.Task | None = None
        self._cell_transports: set[str] = set()  # cell transport URLs this conductor also serves on

    async def _serve_cell_transports(self) -> None:
        """Serve ``conductor`` on every cell's own transport too, where that cell's hosts report.

        The conductor plays both roles of upstream's split: super-conductor on the top-level
        transport (builds from the API) and cell conductor on each cell's (agents' reports).
        """
        for cell in self.cells.real():
            url = cell.transport_url
            if self.transports.is_default(url) or url.rstrip("/") in self._cell_transports:
                continue
            try:
                await self.transports.get(url).serve("conductor", self.manager, concurrency=256,
                                                     version=versions.CONDUCTOR.latest)
            except Exception as exc:  # noqa: BLE001 - one cell's broker being away must not stop the others
                LOG.warning("cannot serve cell %s on its transport yet (%s); retrying later", cell.name, exc)
                continue
            self._cell_transports.add(url.rstrip("/"))
            LOG.info("conductor also serves cell %s on its transport", cell.name)

    async def start(self) -> None:
        self.cells.load()
        await self._serve_cell_transports()
        # Builds hold a worker while they wait for their turn at the scheduler (the manager runs a few
        # select_destinations at once); agents' short calls (heartbeats, state updates) share the queue
        # and must still find a free worker behind a burst of thousands of builds.
        # (In one process, the in-process transport runs one task per worker: fewer.)
        inproc = self.conf.get("DEFAULT", "transport_url").startswith("inproc")
        await self.env.transport.serve("conductor", self.manager, concurrency=256 if inproc else 4096,
                                       version=versions.CONDUCTOR.latest)
        conductor = versions.conductor_client(self.env.transport, self.conf)
        self.heartbeat = Heartbeat(conductor, self.conf.get("DEFAULT", "host"), "nova-conductor",
                                   self.conf.getfloat("DEFAULT", "report_interval"))
        await self.heartbeat.start()

    async def _reconcile_forever(self) -> None:
        interval = self.conf.getfloat("conductor", "reconcile_interval")
        steps = (self._refresh_cells, *self.manager.reconcile_passes())
        while True:
            await asyncio.sleep(interval)
            for step in steps:  # one failing step does not hold up the others
                try:
                    await step()
                except Exception:  # noqa: BLE001 - the loop must survive a bad pass and try again
                    LOG.exception("reconcile step %s failed; retrying in %ss", step.__name__, interval)

    async def _refresh_cells(self) -> None:
        self.cells.load()  # cells created since: serve their transports too
        await self._serve_cell_transports()

    async def after_start(self) -> None:
        self._reconciler = asyncio.create_task(self._reconcile_forever(), name="conductor-reconcile")
        if self.conf.get("DEFAULT", "transport_url").startswith("inproc"):
            # In one process no other conductor can own them: every build request left is an orphan.
            await self.manager.recover_build_requests()

    async def stop(self) -> None:
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self._reconciler is not None:
            self._reconciler.cancel()
        await self.env.transport.stop_serving("conductor")
        await self.transports.close()
