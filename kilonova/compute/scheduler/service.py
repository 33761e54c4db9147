"""The scheduler service: serves ``select_destinations`` on the ``scheduler`` RPC target."""
from __future__ import annotations

from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.db import Database
from kilonova.common.rpc import RPCClient
from kilonova.common.service import Service, ServiceEnv
from kilonova.compute.heartbeat import Heartbeat
from kilonova.compute.cells import Cells
from kilonova.compute.scheduler.manager import SchedulerManager

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

        self.heartbeat = Heartbeat(RPCClient(env.transport, "conductor", conf.getfloat("DEFAULT", "rpc_response_timeout")),
                                   conf.get("DEFAULT", "host"), "nova-scheduler", conf.getfloat("DEFAULT", "report_interval"))

    async def start(self) -> None:
        self.cells.load()
        await self.env.transport.serve("scheduler", self.manager)
        await self.heartbeat.start()

    async def stop(self) -> None:
        await self.heartbeat.stop()
        await self.env.transport.stop_serving("scheduler")
