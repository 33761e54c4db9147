"""Placement's policy: upstream's secure-RBAC defaults on the shared engine (kilonova/common/policy.py).

Every rule defaults to ``rule:admin_or_service_api`` (``role:admin or role:service``) with project
scope, except ``placement:usages`` (GET /usages), which a project reader may use for its own project,
and ``placement:reshaper:reshape``, for the service role alone (``rule:service_api``). Operators
override any rule in ``[oslo_policy] policy_file``; ``enforce_scope`` refuses system-scoped tokens for
these project-scoped rules; with ``enforce_new_defaults = false`` a default base rule also accepts its
deprecated form (``role:admin``).
"""
from __future__ import annotations

import os

from kilonova.common import policy
from kilonova.common.context import RequestContext
from kilonova.common.policy import DeprecatedRule, RuleDefault

ADMIN_OR_SERVICE = "rule:admin_or_service_api"
_OLD = DeprecatedRule("placement:deprecated_admin", "role:admin",
                      deprecated_reason="Placement API policies introduced new default roles with scope_type.",
                      deprecated_since="6.0.0")

BASE = [
    RuleDefault("admin_api", "role:admin", "Default rule for most placement APIs."),
    RuleDefault("service_api", "role:service", "Default rule for service-to-service placement APIs.",
                deprecated_rule=_OLD),
    RuleDefault("admin_or_service_api", "role:admin or role:service",
                "Default rule for most placement APIs.", deprecated_rule=_OLD),
    RuleDefault("project_reader_api", "role:reader and project_id:%(project_id)s",
                "Default rule for project level reader APIs.", deprecated_rule=_OLD),
    RuleDefault("admin_or_project_reader_or_service_api", "role:admin or rule:project_reader_api or role:service",
                "Default rule for project level reader APIs.", deprecated_rule=_OLD),
]

API_RULES = [
    "placement:resource_providers:list", "placement:resource_providers:create",
    "placement:resource_providers:show", "placement:resource_providers:update",
    "placement:resource_providers:delete",
    "placement:resource_classes:list", "placement:resource_classes:create", "placement:resource_classes:show",
    "placement:resource_classes:update", "placement:resource_classes:delete",
    "placement:resource_providers:inventories:list", "placement:resource_providers:inventories:create",
    "placement:resource_providers:inventories:show", "placement:resource_providers:inventories:update",
    "placement:resource_providers:inventories:delete",
    "placement:resource_providers:aggregates:list", "placement:resource_providers:aggregates:update",
    "placement:resource_providers:usages",
    "placement:traits:list", "placement:traits:show", "placement:traits:update", "placement:traits:delete",
    "placement:resource_providers:traits:list", "placement:resource_providers:traits:update",
    "placement:resource_providers:traits:delete",
    "placement:allocations:manage", "placement:allocations:list", "placement:allocations:update",
    "placement:allocations:delete", "placement:resource_providers:allocations:list",
    "placement:allocation_candidates:list", "placement:reshaper:reshape",
]
_SPECIAL = {"placement:usages": "rule:admin_or_project_reader_or_service_api",
            "placement:reshaper:reshape": "rule:service_api"}

RULES = BASE + [RuleDefault(name, _SPECIAL.get(name, ADMIN_OR_SERVICE), name, scope_types=["project"])
                for name in [*API_RULES, "placement:usages"]]


class Enforcer:
    """Placement's rules on the shared engine (the defaults alone without a file)."""

    def __init__(self, policy_file: str | os.PathLike | None = None, *, enforce_scope: bool = True,
                 enforce_new_defaults: bool = True):
        self.enforce_scope = enforce_scope
        self.engine = policy.Enforcer("placement", RULES, policy_file, enforce_scope=enforce_scope,
                                      enforce_new_defaults=enforce_new_defaults)
        self.defaults = self.engine.defaults

    def authorize(self, action: str, target: dict, context: RequestContext) -> bool:
        """Whether ``context`` may do ``action`` on ``target`` (unknown rules are refused)."""
        return self.engine.authorize(action, target, context)
