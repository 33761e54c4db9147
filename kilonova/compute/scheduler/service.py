"""The scheduler service: serves ``select_destinations`` on the ``scheduler`` RPC target."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.db import Database
from kilonova.common.service import Service, ServiceEnv
from kilonova.compute import versions
from kilonova.compute.heartbeat import Heartbeat
from kilonova.compute.cells import Cells, discover_hosts
from kilonova.compute.scheduler.manager import SchedulerManager

LOG = logging.getLogger(__name__)
PLACEMENT_VERSION = "placement 1.36"


class SchedulerService(Service):
    name = "scheduler"

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        conf = env.conf
        self.cells = Cells(Database.shared(conf.get("api_database", "connection"), name="nova_api"))
        auth = ServiceAuth(env.endpoints.http_client("identity"), conf.get("service_user", "username"),
                           conf.get("service_user", "password"), conf.get("service_user", "project_name"))
        placement = ServiceClient(env.endpoints.http_client("placement"), auth,
                                  {"OpenStack-API-Version": PLACEMENT_VERSION})
        self.manager = SchedulerManager(conf, placement, self.cells)

        self.heartbeat = Heartbeat(versions.conductor_client(env.transport, conf),
                                   conf.get("DEFAULT", "host"), "nova-scheduler", conf.getfloat("DEFAULT", "report_interval"))

        self._discovery: asyncio.Task | None = None

    async def start(self) -> None:
        self.cells.load()
        await self.env.transport.serve("scheduler", self.manager, version=versions.SCHEDULER.latest)
        await self.heartbeat.start()
        interval = self.conf.getfloat("scheduler", "discover_hosts_in_cells_interval")
        if interval > 0:
            self._discovery = asyncio.create_task(self._discover_forever(interval), name="scheduler-discovery")

    async def _discover_forever(self, interval: float) -> None:
        """Periodic ``cell_v2 discover_hosts``: map compute hosts found in a cell's services table."""
        while True:
            await asyncio.sleep(interval)
            try:
                mapped = await asyncio.to_thread(self._discover_once)
            except Exception:  # noqa: BLE001 - another scheduler may have mapped the same host; next pass
                LOG.warning("host discovery failed; retrying in %ss", interval, exc_info=True)
                continue
            for host, cell in mapped:
                LOG.info("mapped compute host %s to cell %s", host, cell.name)

    def _discover_once(self):
        self.cells.load()
        return discover_hosts(self.cells.api_db, self.cells.real())

    async def stop(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        await self.heartbeat.stop()
        await self.env.transport.stop_serving("scheduler")
