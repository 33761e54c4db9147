"""The identity service: Keystone v3 on its own database, with Fernet tokens."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kilonova.common.db import Database, migrate
from kilonova.common.service import Service, ServiceEnv
from kilonova.identity import bootstrap, revocation
from kilonova.identity.api.app import create_app
from kilonova.identity.core import IdentityCore
from kilonova.identity.models import IdentityBase

LOG = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
PRUNE_INTERVAL = 3600.0


class IdentityService(Service):
    name = "identity"
    service_type = "identity"

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        self.db = Database.shared(env.conf.get("identity_database", "connection"), name="keystone")
        self.core = IdentityCore(env.conf, self.db)
        self.app = create_app(self.core)
        self._pruner: asyncio.Task | None = None

    def prepare(self) -> None:
        migrate(self.db, MIGRATIONS, IdentityBase.metadata)
        self.core.load_keys()
        stored = self.db.run_sync(bootstrap.stored_hashes, list(bootstrap.wanted_passwords(self.conf)), write=False)
        with ThreadPoolExecutor(max_workers=4) as pool:   # scrypt releases the GIL: the hashes run side by side
            # Made now, not on the event loop by the first login of an unknown user.
            dummy = pool.submit(lambda: self.core.dummy_hash)
            hashes = bootstrap.new_hashes(self.conf, stored, self.core.hash_password, pool)
            dummy.result()
        self.db.run_sync(bootstrap.run, self.conf, hashes)
        self.core.revocations.invalidate()

    async def start(self) -> None:
        self._pruner = asyncio.create_task(self._prune_revocations())

    async def stop(self) -> None:
        self.core.hashing.close()
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner

    async def _prune_revocations(self) -> None:
        """Drop revocation events no live token can match any more (older than the token lifetime)."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            try:
                await self.core.write(revocation.prune, time.time() - self.core.token_lifetime - 60, revokes=True)
            except Exception:  # noqa: BLE001 - keep pruning on the next round
                LOG.exception("identity: pruning revocation events failed")
