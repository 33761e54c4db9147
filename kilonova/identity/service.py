"""The identity service: Keystone v3 on its own database, with Fernet tokens."""
from __future__ import annotations

from pathlib import Path

from kilonova.common.db import Database, migrate
from kilonova.common.service import Service, ServiceEnv
from kilonova.identity import bootstrap
from kilonova.identity.api.app import create_app
from kilonova.identity.core import IdentityCore
from kilonova.identity.models import IdentityBase

MIGRATIONS = Path(__file__).parent / "migrations"


class IdentityService(Service):
    name = "identity"
    service_type = "identity"

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        self.db = Database.shared(env.conf.get("identity_database", "connection"), name="keystone")
        self.core = IdentityCore(env.conf, self.db)
        self.app = create_app(self.core)

    def prepare(self) -> None:
        migrate(self.db, MIGRATIONS, IdentityBase.metadata)
        self.core.load_keys()
        self.db.run_sync(bootstrap.run, self.conf, self.core.hash_password)
        self.core.revocations.invalidate()
