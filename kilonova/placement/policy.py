"""Placement's policy: upstream's secure-RBAC defaults, oslo.policy check strings, policy.yaml overrides.

Every rule defaults to ``rule:admin_or_service_api`` (``role:admin or
role:service``) with project scope, except ``placement:usages`` (GET /usages),
which a project reader may use for its own project, and
``placement:reshaper:reshape``, for the service role alone (``rule:service_api``). Operators override any rule
in ``[oslo_policy] policy_file`` (YAML or JSON, ``name: check string``), as with
oslo.policy. ``enforce_scope`` refuses system-scoped tokens for these
project-scoped rules; with ``enforce_new_defaults = false`` a default rule also
accepts its deprecated form (``role:admin``).

Check strings understood: ``role:X``, ``project_id:%(project_id)s`` (any
``credential:%(target)s`` or ``credential:literal``), ``rule:NAME``, ``@``,
``!``, ``not``, ``and``, ``or`` and parentheses.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import yaml

from kilonova.common.context import RequestContext

LOG = logging.getLogger(__name__)

ADMIN_OR_SERVICE = "rule:admin_or_service_api"
DEPRECATED_ADMIN = "role:admin"

BASE_RULES = {
    "admin_api": "role:admin",
    "service_api": "role:service",
    "admin_or_service_api": "role:admin or role:service",
    "project_reader_api": "role:reader and project_id:%(project_id)s",
    "admin_or_project_reader_or_service_api": "role:admin or rule:project_reader_api or role:service",
}
# Base rules that carry the deprecated "role:admin" alternative upstream.
DEPRECATED_BASE = {"service_api", "admin_or_service_api", "project_reader_api",
                   "admin_or_project_reader_or_service_api"}

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


def default_rules() -> dict[str, str]:
    rules = dict(BASE_RULES)
    rules.update({name: ADMIN_OR_SERVICE for name in API_RULES})
    rules["placement:usages"] = "rule:admin_or_project_reader_or_service_api"
    rules["placement:reshaper:reshape"] = "rule:service_api"
    return rules


class Enforcer:
    def __init__(self, policy_file: str | os.PathLike | None = None, *, enforce_scope: bool = True,
                 enforce_new_defaults: bool = True):
        self.enforce_scope = enforce_scope
        self.enforce_new_defaults = enforce_new_defaults
        self.policy_file = Path(policy_file) if policy_file else None
        self.defaults = default_rules()
        self._stamp: float | None = None
        self._checked = 0.0
        self._load()

    def _load(self) -> None:
        overrides = load_file(self.policy_file) if self.policy_file else {}
        rules = dict(self.defaults)
        rules.update(overrides)
        if not self.enforce_new_defaults:
            for name in DEPRECATED_BASE - set(overrides):
                rules[name] = f"({self.defaults[name]}) or ({DEPRECATED_ADMIN})"
        self.rules = rules
        self._parsed: dict[str, object] = {}

    def _reload_if_changed(self) -> None:
        """As oslo.policy: a changed policy file takes effect without a restart (checked once a second)."""
        now = time.monotonic()
        if self.policy_file is None or now - self._checked < 1.0:
            return
        self._checked = now
        try:
            stamp = self.policy_file.stat().st_mtime
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._load()
            except (ValueError, yaml.YAMLError) as error:
                LOG.error("policy file %s not loaded, keeping the rules in force: %s", self.policy_file, error)

    def authorize(self, action: str, target: dict, context: RequestContext) -> bool:
        """Whether ``context`` may do ``action`` on ``target`` (unknown rules are refused)."""
        self._reload_if_changed()
        if action not in self.rules:
            return False
        if self.enforce_scope and action in self.defaults and context.system_scope and not context.project_id:
            return False   # every default rule is project-scoped
        return self._check(action, target, context.__dict__ | {"roles": context.roles}, set())

    def _check(self, name: str, target: dict, creds: dict, seen: set[str]) -> bool:
        if name in seen or name not in self.rules:
            return False
        tree = self._parsed.get(name)
        if tree is None:
            tree = self._parsed[name] = parse(self.rules[name])
        return _evaluate(tree, target, creds, lambda rule: self._check(rule, target, creds, seen | {name}))


def load_file(path: str | os.PathLike) -> dict[str, str]:
    file = Path(path)
    if not file.is_file():
        return {}
    text = file.read_text()
    data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"policy file {path} must map rule names to check strings")
    return {str(k): "" if v is None else str(v) for k, v in data.items()}


def _tokens(text: str) -> list[str]:
    """Words split on spaces, with leading "(" and trailing ")" peeled off (as oslo.policy does)."""
    tokens: list[str] = []
    for word in text.split():
        lead = len(word) - len(word.lstrip("("))
        word = word[lead:]
        trail = len(word) - len(word.rstrip(")"))
        # a ")" that closes a "%(name)s" substitution stays in the word.
        while trail and word[: len(word) - trail].count("(") > word[: len(word) - trail].count(")"):
            trail -= 1
        core = word[: len(word) - trail] if trail else word
        tokens += ["("] * lead + ([core] if core else []) + [")"] * trail
    return tokens


def parse(text: str):
    """A check string as a tree: ("or", [...]), ("and", [...]), ("not", x), ("check", kind, match)."""
    tokens = _tokens(text or "")
    if not tokens:
        return ("true",)
    position = 0

    def peek():
        return tokens[position] if position < len(tokens) else None

    def take():
        nonlocal position
        position += 1
        return tokens[position - 1]

    def expression():
        terms = [conjunction()]
        while peek() is not None and peek().lower() == "or":
            take()
            terms.append(conjunction())
        return terms[0] if len(terms) == 1 else ("or", terms)

    def conjunction():
        terms = [negation()]
        while peek() is not None and peek().lower() == "and":
            take()
            terms.append(negation())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def negation():
        if peek() is not None and peek().lower() == "not":
            take()
            return ("not", negation())
        return atom()

    def atom():
        token = take() if peek() is not None else ")"
        if token == "(":
            inner = expression()
            if peek() == ")":
                take()
            return inner
        if token == "@":
            return ("true",)
        if token == "!":
            return ("false",)
        kind, sep, match = token.partition(":")
        if not sep:
            return ("false",)
        return ("check", kind, match)

    try:
        return expression()
    except IndexError:
        LOG.warning("unparsable policy check string %r: refusing", text)
        return ("false",)


def _evaluate(tree, target: dict, creds: dict, rule) -> bool:
    kind = tree[0]
    if kind == "true":
        return True
    if kind == "false":
        return False
    if kind == "or":
        return any(_evaluate(t, target, creds, rule) for t in tree[1])
    if kind == "and":
        return all(_evaluate(t, target, creds, rule) for t in tree[1])
    if kind == "not":
        return not _evaluate(tree[1], target, creds, rule)
    _, name, match = tree
    if name == "rule":
        return rule(match)
    if name == "role":
        wanted = _substitute(match, target)
        return wanted is not None and wanted.lower() in {r.lower() for r in creds.get("roles") or []}
    value = _substitute(match, target)
    have = creds.get(name)
    return value is not None and have is not None and str(have) == value


def _substitute(match: str, target: dict) -> str | None:
    if match.startswith("%(") and match.endswith(")s"):
        value = target.get(match[2:-2])
        return None if value is None else str(value)
    if match.startswith(("'", '"')) and match[-1:] == match[:1]:
        return match[1:-1]
    if match in ("True", "False"):
        return match
    return match
