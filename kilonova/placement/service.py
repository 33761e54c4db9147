"""The Placement service: owns the Placement database and serves the Placement API at its root."""
from __future__ import annotations

from pathlib import Path

from kilonova.common import metrics
from kilonova.common.auth import TokenValidator
from kilonova.common.db import Database, migrate
from kilonova.common.policy import policy_path
from kilonova.common.service import Service, ServiceEnv
from kilonova.placement.app import create_app
from kilonova.placement import usage_metrics
from kilonova.placement.objects import resource_classes, traits
from kilonova.placement.objects.models import PlacementBase
from kilonova.placement.policy import Enforcer

MIGRATIONS = Path(__file__).parent / "migrations"
CORS_OPTIONS = ("allowed_origin", "allow_credentials", "expose_headers", "max_age", "allow_methods", "allow_headers")


def auth_strategy(conf) -> str:
    """[placement] auth_strategy; upstream's own spelling, [api] auth_strategy, wins when set."""
    return conf.get("api", "auth_strategy").strip() or conf.get("placement", "auth_strategy").strip()


def enforcer(conf) -> Enforcer:
    return Enforcer(policy_path(conf), enforce_scope=conf.getbool("oslo_policy", "enforce_scope"),
                    enforce_new_defaults=conf.getbool("oslo_policy", "enforce_new_defaults"))


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
        self.max_combinations = conf.getint("placement", "max_candidate_combinations")
        self.randomize = conf.getbool("placement", "randomize_allocation_candidates")
        self.conflict_retries = max(1, conf.getint("placement", "allocation_conflict_retry_count"))
        self.generation_strategy = conf.get("placement", "allocation_candidates_generation_strategy").strip()
        if self.generation_strategy not in ("depth-first", "breadth-first"):
            raise ValueError("[placement] allocation_candidates_generation_strategy must be depth-first or "
                             f"breadth-first, not {self.generation_strategy!r}")
        self.auth_strategy = auth_strategy(conf)
        if validator is None and self.auth_strategy == "keystone":
            validator = TokenValidator(env.endpoints.http_client("identity"),
                                       cache_seconds=conf.getfloat("keystone_authtoken", "token_cache_time"))
        self.validator = validator
        self.app = create_app(validator, self, auth_strategy=self.auth_strategy, enforcer=enforcer(conf),
                              cors={key: conf.get("cors", key) for key in CORS_OPTIONS})

    def prepare(self) -> None:
        migrate(self.db, MIGRATIONS, PlacementBase.metadata)
        self.db.run_sync(sync_standards)

    async def start(self) -> None:
        self._metrics = usage_metrics.refresher(self.db)
        metrics.add_refresher(self._metrics)

    async def stop(self) -> None:
        metrics.remove_refresher(getattr(self, "_metrics", None))
