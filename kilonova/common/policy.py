"""One policy engine for every Kilonova service: oslo.policy's rule language, each service's defaults, overrides.

Each service registers its upstream default rules (oslo.policy ``RuleDefault``s, with scope types and
deprecated rules as upstream declares them) and gets an ``Enforcer`` reading the shared
``[oslo_policy] policy_file`` (YAML or JSON, ``rule name: check string``, relative to the state
directory), as nova.conf's, keystone.conf's, ... do. A malformed file is refused at start with what is
wrong; a file changed later is re-read (checked at most once a second, as oslo.policy re-reads on
change), and a broken edit keeps the rules in force rather than failing requests.

Cost: oslo.policy inspects every check's signature on each evaluation (``inspect.getfullargspec``,
~10 us a node, 70-130 us for a typical rule); ``_check`` below caches that answer per check class, which
brings a nested rule (``rule:project_reader_or_admin``) to ~15 us on a quiet machine (~35 us at a load of
10 on 2 cores); and a decision, a function of the rules, the token and the target, is remembered until the
rules change: ~1 us for a rule, token and target seen before (tests/unit/test_policy_engine.py).
"""
from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import yaml
from oslo_config import cfg
from oslo_policy import _checks, _parser
from oslo_policy import policy as oslo_policy

from kilonova.common.context import RequestContext
from kilonova.config import ConfigError

LOG = logging.getLogger(__name__)

RuleDefault = oslo_policy.RuleDefault
DeprecatedRule = oslo_policy.DeprecatedRule
RELOAD_INTERVAL = 1.0
DECISIONS = 20000   # remembered decisions per service (all forgotten at once when full or the rules change)
NO_FILE = "/nonexistent/kilonova-policy.yaml"
# The rule a service checks a name it has no rule for against (a handler newer than the table): the admin
# rule that guarded it before the engine. Placement refuses such names, as upstream.
FALLBACK = {"compute": "context_is_admin", "identity": "admin_required", "image": "context_is_admin",
            "network": "admin_or_service", "volume": "admin_api"}
_WARNED: set[str] = set()
# service -> the module whose RULES are its defaults (``kilonova manage policy list`` lists them all).
SERVICES = {"compute": "kilonova.compute.policies", "identity": "kilonova.identity.policy",
            "image": "kilonova.image.policy", "network": "kilonova.network.policy",
            "placement": "kilonova.placement.policy", "volume": "kilonova.volume.policy"}


@functools.lru_cache(maxsize=None)
def _takes_current_rule(call) -> bool:
    return len(inspect.getfullargspec(call).args) > 4


def _check(rule, target, creds, enforcer, current_rule):
    """oslo_policy._checks._check, with its per-call signature inspection answered once per check class."""
    if _takes_current_rule(type(rule).__call__):
        return rule(target, creds, enforcer, current_rule)
    return rule(target, creds, enforcer)


_original_check = _checks._check   # (benchmarks/policy_checks.py compares the two)
_checks._check = _check


class PolicyFileError(ConfigError):
    """A policy file that cannot be used: the command line prints it as one line and exits 2."""


def credentials(ctx: RequestContext) -> dict[str, Any]:
    """What oslo.policy's checks read from a request context (oslo.context's ``to_policy_values``)."""
    domain_scoped = ctx.project_id is None and ctx.system_scope is None and ctx.domain_id is not None
    creds = {"user_id": ctx.user_id, "project_id": ctx.project_id, "roles": ctx.roles,
             "system_scope": ctx.system_scope, "domain_id": ctx.domain_id if domain_scoped else None,
             "project_domain_id": None if domain_scoped else ctx.domain_id, "is_admin": "admin" in ctx.roles}
    # Absent, not None: oslo.policy compares strings, so "project_id:%(project_id)s" would match None to None.
    return {key: value for key, value in creds.items() if value is not None}


def check_syntax(name: str, text: str) -> None:
    """Refuse a check string oslo.policy would silently turn into "deny" (it only logs the parse error)."""
    errors: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    handler = Catch(logging.ERROR)
    parser_log = logging.getLogger(_parser.__name__)
    parser_log.addHandler(handler)
    parser_log.propagate = False   # the reason goes in our one-line error, not as a traceback in the log
    try:
        _parser.parse_rule(text)
    finally:
        parser_log.removeHandler(handler)
        parser_log.propagate = True
    if errors:
        raise PolicyFileError(f"rule {name!r}: cannot parse check string {text!r}")


def read_file(path: Path) -> dict[str, str]:
    """The overrides of a policy file (empty when there is no file); PolicyFileError when malformed."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise PolicyFileError(f"policy file {path}: {error}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyFileError(f"policy file {path} must map rule names to check strings")
    rules = {}
    for name, text in data.items():
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise PolicyFileError(f"policy file {path}: rule {name!r} must be a check string, not {text!r}")
        check_syntax(str(name), text)
        rules[str(name)] = text
    return rules


def _stamp(path) -> tuple | None:
    try:
        stat = os.stat(path)
    except (OSError, TypeError):
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class _OsloEnforcer(oslo_policy.Enforcer):
    """oslo.policy's Enforcer with the file looked at once a second (and read again only when it changed)
    instead of on every check; ``generation`` moves whenever the rules may have changed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._checked = 0.0
        self._seen: tuple | None = None
        self.generation = 0
        self._lock = threading.Lock()

    def load_rules(self, force_reload: bool = False) -> None:
        now = time.monotonic()
        if not force_reload and now - self._checked < RELOAD_INTERVAL:
            return
        with self._lock:
            self._checked = now
            path = self.policy_path or self.policy_file
            seen = _stamp(path)
            if not force_reload and seen == self._seen:
                return
            self._seen = seen
            self.generation += 1
            try:
                if path and Path(path).is_file():
                    read_file(Path(path))    # a broken edit is refused here, before oslo.policy takes it
                elif self.policy_path:       # the file was removed: back to the defaults
                    self.policy_path = None
                    self._file_cache.clear()
                    self.set_rules({}, overwrite=True, use_conf=True)
                super().load_rules(force_reload)
            except (PolicyFileError, ValueError) as error:
                if force_reload:
                    raise
                LOG.error("policy file %s not loaded, keeping the rules in force: %s", path, error)


def _without_scope(rule: RuleDefault) -> RuleDefault:
    """``[oslo_policy] enforce_scope = false`` (gone from oslo.policy 4.5, kept here): no scope types to check."""
    rule = copy.copy(rule)
    rule.scope_types = None
    return rule


class Enforcer:
    """A service's rules: ``authorize`` answers whether a context may do a rule's action on a target."""

    def __init__(self, service: str, defaults: Iterable[RuleDefault], policy_file: str | os.PathLike | None = None,
                 *, enforce_scope: bool = True, enforce_new_defaults: bool = True):
        self.service = service
        self.fallback = FALLBACK.get(service)
        self._decisions: dict[tuple, bool] = {}
        self._generation = -1
        self.policy_file = Path(policy_file) if policy_file else None
        conf = cfg.ConfigOpts()
        conf([], project=f"kilonova-{service}", default_config_files=[], default_config_dirs=[],
             use_env=False)
        # Without a file oslo.policy still needs a path to look for (the defaults are copied in either way).
        self._oslo = _OsloEnforcer(conf, policy_file=str(self.policy_file or NO_FILE))
        conf.set_override("enforce_new_defaults", enforce_new_defaults, group="oslo_policy")
        self._oslo.suppress_deprecation_warnings = True
        self._oslo.suppress_default_change_warnings = True
        self._oslo.skip_undefined_check = True   # other services' rules in the shared file: checked below, ours only
        self._oslo.register_defaults([rule if enforce_scope else _without_scope(rule) for rule in defaults])
        if self.policy_file is not None:
            read_file(self.policy_file)
        self._oslo.load_rules(force_reload=True)
        oslo = self._oslo
        # Only this service's rules: the one file also holds the other services' (with their own base rules).
        bad = [name for name in oslo.registered_rules
               if oslo._undefined_check(oslo.rules[name]) or oslo._cycle_check(oslo.rules[name])]
        if bad:
            where = f"policy file {self.policy_file}" if self.policy_file else f"{service} default policy"
            raise PolicyFileError(f"{where}: {', '.join(bad)}: refers to a rule that is not defined, or to itself")

    @property
    def defaults(self) -> dict[str, RuleDefault]:
        return dict(self._oslo.registered_rules)

    def authorize(self, rule: str, target: dict[str, Any], ctx: RequestContext) -> bool:
        """Whether ``ctx`` may do ``rule`` on ``target``; wrong token scopes are refused, and so is a rule this
        service does not have, unless the service names a fallback (its admin rule, as before the engine).

        A decision depends only on the rules, the token's attributes and the target's: it is remembered
        (until the rules change), so a request's checks after the first of their kind cost a dictionary
        lookup instead of an evaluation (~2 us instead of 15-35 us)."""
        oslo = self._oslo
        oslo.load_rules()
        if oslo.generation != self._generation:
            self._decisions.clear()
            self._generation = oslo.generation
        try:
            key = (rule, ctx.user_id, ctx.project_id, ctx.domain_id, ctx.system_scope, tuple(ctx.roles),
                   tuple(target.items()))
            known = self._decisions.get(key)
        except TypeError:   # an unhashable target value: evaluated every time
            key, known = None, None
        if known is not None:
            return known
        if self.fallback and rule not in oslo.registered_rules and rule not in oslo.rules:
            if rule not in _WARNED:
                _WARNED.add(rule)
                LOG.warning("%s policy has no rule %s: checked as %s", self.service, rule, self.fallback)
            decision = oslo.enforce(self.fallback, target, credentials(ctx))
        else:
            decision = oslo.enforce(rule, target, credentials(ctx))
        if key is not None:
            if len(self._decisions) >= DECISIONS:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def overrides(self) -> dict[str, str]:
        return read_file(self.policy_file) if self.policy_file else {}

    def effective(self) -> list[dict[str, Any]]:
        """Every registered rule with the check string in force (``oslopolicy-policy-generator``'s view)."""
        self._oslo.load_rules()
        overrides = self.overrides()
        rows = []
        for name, default in self._oslo.registered_rules.items():
            rows.append({"name": name, "check_str": overrides.get(name, default.check_str),
                         "default": default.check_str, "overridden": name in overrides,
                         "scope_types": default.scope_types or [], "description": default.description})
        return rows


def policy_path(conf) -> Path:
    """``[oslo_policy] policy_file``, relative to the state directory."""
    path = Path(conf.get("oslo_policy", "policy_file"))
    return path if path.is_absolute() else Path(conf.state_dir) / path


def from_conf(conf, service: str, defaults: Iterable[RuleDefault]) -> Enforcer:
    return Enforcer(service, defaults, policy_path(conf),
                    enforce_scope=conf.getbool("oslo_policy", "enforce_scope"),
                    enforce_new_defaults=conf.getbool("oslo_policy", "enforce_new_defaults"))


# The enforcer each service of this process configured at start (services whose checks get a context, not
# the service object); one process runs one cloud, and code that runs without a configured service (unit
# tests of a module) gets the defaults.
_CONFIGURED: dict[str, Enforcer] = {}


def configure(conf, service: str) -> Enforcer:
    """Read ``service``'s rules and the policy file at the service's start (a malformed file stops it)."""
    _CONFIGURED[service] = enforcer = from_conf(conf, service, defaults(service))
    return enforcer


def service_enforcer(service: str) -> Enforcer:
    return _CONFIGURED.get(service) or default_enforcer(service)


@functools.lru_cache(maxsize=None)
def default_enforcer(service: str) -> Enforcer:
    """A service's defaults without any file: for code paths built without a configuration (unit tests)."""
    return Enforcer(service, defaults(service))


def defaults(service: str) -> list[RuleDefault]:
    return list(importlib.import_module(SERVICES[service]).RULES)
