"""The network service: owns the network database, serves Neutron's v2.0 API."""
from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy.exc

from kilonova.common import policy
from kilonova.common.auth import TokenValidator
from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.db import Database, migrate
from kilonova.common.projects import ProjectLookupError, identity_service_client, project_id_by_name
from kilonova.common.service import Service, ServiceEnv
from kilonova.network import bootstrap
from kilonova.network.app import create_app
from kilonova.network.compute_notifier import ComputeNotifier
from kilonova.network.l3_rpc import L3Notifier
from kilonova.network.models import NetworkBase
from kilonova.network.sg_notifier import SecurityGroupNotifier

LOG = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


class NetworkService(Service):
    name = "network"
    service_type = "network"

    def __init__(self, env: ServiceEnv, validator=None):
        super().__init__(env)
        conf = env.conf
        self.policy = policy.configure(conf, "network")   # read at start: a bad policy file stops it
        self.db = Database.shared(conf.get("network_database", "connection"), name="neutron")
        self.validator = validator or TokenValidator(
            env.endpoints.http_client("identity"),
            cache_seconds=conf.getfloat("keystone_authtoken", "token_cache_time"))
        self.notifier = ComputeNotifier(self._compute_client(env))
        self.sg_notifier = SecurityGroupNotifier(self.db, env.transport)
        self.l3 = L3Notifier(env.transport)  # routers changed: the L3 agents converge their namespaces
        self.app = create_app(self.validator, self)

    @staticmethod
    def _compute_client(env: ServiceEnv):
        """The compute API as the service user, for the port events it is sent (None: none are sent)."""
        conf = env.conf
        if not conf.getbool("network", "notify_compute_on_port_status_changes") or \
                "compute" not in env.endpoints.urls:
            return None
        identity = env.endpoints.http_client("identity")
        auth = ServiceAuth(identity, conf.get("service_user", "username"), conf.get("service_user", "password"),
                           conf.get("service_user", "project_name"))
        return ServiceClient(env.endpoints.http_client("compute"), auth)

    async def stop(self) -> None:
        await self.notifier.stop()
        await self.sg_notifier.stop()
        await self.l3.stop()

    def prepare(self) -> None:
        migrate(self.db, MIGRATIONS, NetworkBase.metadata)

    async def after_start(self) -> None:
        try:
            owner = await project_id_by_name(identity_service_client(self.conf, self.env.endpoints), "admin")
        except ProjectLookupError as exc:
            LOG.error("the default network %s was not created: %s", bootstrap.NETWORK_NAME, exc)
            return
        await self.ensure_default_network(owner)
        try:
            await self.db.write(bootstrap.ensure_public_network, owner)
        except sqlalchemy.exc.IntegrityError:  # another network API process made them at the same moment
            await self.db.write(bootstrap.ensure_public_network, owner)
        self.l3.routers_updated([bootstrap.ROUTER_ID])  # router1, made just now or before: the agents converge

    async def ensure_default_network(self, owner: str) -> dict:
        return await self.db.write(bootstrap.ensure_default_network, owner)
