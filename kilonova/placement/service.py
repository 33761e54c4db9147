"""The Placement service: owns the Placement database and serves the Placement API at its root."""
from __future__ import annotations

from pathlib import Path

from kilonova.common.auth import TokenValidator
from kilonova.common.db import Database, migrate
from kilonova.common.service import Service, ServiceEnv
from kilonova.placement.app import create_app
from kilonova.placement.objects import resource_classes, traits
from kilonova.placement.objects.models import PlacementBase

MIGRATIONS = Path(__file__).parent / "migrations"


def sync_standards(session) -> None:
    resource_classes.sync_standard(session)
    traits.sync_standard(session)


class PlacementService(Service):
    name = "placement"
    service_type = "placement"

    def __init__(self, env: ServiceEnv, validator=None):
        """``validator`` replaces the identity-backed token check (tests pass a fake one)."""
        super().__init__(env)
        conf = env.conf
        self.db = Database.shared(conf.get("placement_database", "connection"), name="placement")
        self.max_candidates = conf.getint("placement", "max_allocation_candidates")
        if validator is None:
            validator = TokenValidator(env.endpoints.http_client("identity"),
                                       cache_seconds=conf.getfloat("keystone_authtoken", "token_cache_time"))
        self.validator = validator
        self.app = create_app(validator, self)

    def prepare(self) -> None:
        migrate(self.db, MIGRATIONS, PlacementBase.metadata)
        self.db.run_sync(sync_standards)
