"""The compute API service: owns the API database and cell mappings, serves /v2.1."""
from __future__ import annotations

from pathlib import Path

from kilonova.common import metrics, policy
from kilonova.common.auth import TokenValidator
from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.db import Database, migrate
from kilonova.common.rpc import TransportPool
from kilonova.common.service import Service, ServiceEnv
from kilonova.compute import cells as cells_mod
from kilonova.compute import policies, versions
from kilonova.compute.api import host_metrics
from kilonova.compute.api.app import create_app
from kilonova.compute.api.deleting import ServerDeleter
from kilonova.compute.cell_rpc import CellRouter, HostClient
from kilonova.compute.db import flavors
from kilonova.compute.db.api_models import APIBase

API_MIGRATIONS = Path(__file__).parent.parent / "db" / "api_migrations"


class ComputeAPIService(Service):
    name = "compute-api"
    service_type = "compute"

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        conf = env.conf
        self.api_db = Database.shared(conf.get("api_database", "connection"), name="nova_api")
        self.cells = cells_mod.Cells(self.api_db)
        identity = self.identity = env.endpoints.http_client("identity")
        self.validator = TokenValidator(identity, cache_seconds=conf.getfloat("keystone_authtoken", "token_cache_time"))
        auth = ServiceAuth(identity, conf.get("service_user", "username"), conf.get("service_user", "password"),
                           conf.get("service_user", "project_name"))
        self.placement = ServiceClient(env.endpoints.http_client("placement"), auth,
                                       {"OpenStack-API-Version": "placement 1.36"})
        self.image = env.endpoints.http_client("image")
        self.network = env.endpoints.http_client("network")
        self.network_admin = ServiceClient(env.endpoints.http_client("network"), auth)
        self.volume = env.endpoints.http_client("block-storage")  # with the caller's token
        self.volume_admin = ServiceClient(env.endpoints.http_client("block-storage"), auth)
        self.conductor = versions.conductor_client(env.transport, conf)
        # Actions go to a compute host over the transport of its cell.
        self.transports = TransportPool(env.transport, conf.get("DEFAULT", "transport_url"))
        self.router = CellRouter(self.cells, self.transports, conf.getfloat("DEFAULT", "rpc_response_timeout"),
                                 compute_pin=versions.compute_pin(conf))
        self.deleter = ServerDeleter(self)
        self.policy = policy.from_conf(conf, "compute", policies.RULES)   # read at start: a bad file stops it
        self.app = create_app(self.validator, self)

    def compute_rpc(self, host: str) -> HostClient:
        return self.router.client(host)

    def prepare(self) -> None:
        migrate(self.api_db, API_MIGRATIONS, APIBase.metadata)
        cells_mod.setup_cells(self.conf, self.api_db)
        self.cells.load()
        self.api_db.run_sync(flavors.ensure_defaults)

    async def start(self) -> None:
        self._metrics = host_metrics.refresher(self)
        metrics.add_refresher(self._metrics)

    async def stop(self) -> None:
        metrics.remove_refresher(getattr(self, "_metrics", None))
        await self.transports.close()
