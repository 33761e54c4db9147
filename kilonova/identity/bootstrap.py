"""What must exist in every identity database, created or refreshed on each start (idempotent).

Default domain; admin, demo and service projects; roles admin > manager > member >
reader (each implying the next, as Keystone's bootstrap since 2024.2) and service; users admin, demo and the service user with the configured
passwords (re-hashed only when the configured password changed, which also
revokes that user's earlier tokens); their grants; and the catalog of every
Kilonova service, re-pointed at the current URLs.
"""
from __future__ import annotations

import configparser
import time
from concurrent.futures import Executor
from typing import Callable

from sqlalchemy.orm import Session

from kilonova.common.catalog import catalog_urls
from kilonova.config import Config
from kilonova.identity import passwords, revocation
from kilonova.identity.models import DEFAULT_DOMAIN_ID
from kilonova.identity.store import assignments, catalog, domains, projects, roles, users

IMPLIED = [("admin", "manager"), ("manager", "member"), ("member", "reader")]
ROLES = ["admin", "manager", "member", "reader", "service"]
SERVICES = {"identity": "keystone", "compute": "nova", "placement": "placement", "image": "glance",
            "network": "neutron", "block-storage": "cinder"}
# Further catalog types at the same URL, as DevStack registers Cinder under both (older clients ask for volumev3).
ALIASES = {"block-storage": [("volumev3", "cinderv3")]}
INTERFACES = ("public", "internal", "admin")


def _option(conf: Config, section: str, key: str) -> str:
    try:
        return conf.get(section, key)
    except (configparser.NoOptionError, configparser.NoSectionError):
        return ""


def _project(session: Session, name: str) -> str:
    project = projects.find_by_name(session, name, DEFAULT_DOMAIN_ID)
    if project is None:
        project = projects.create(session, {"name": name, "domain_id": DEFAULT_DOMAIN_ID,
                                            "description": f"Bootstrap project {name}"})
    return project.id


def _role(session: Session, name: str) -> str:
    role = roles.find_by_name(session, name)
    return (role or roles.create(session, {"name": name})).id


def wanted_passwords(conf: Config) -> dict[str, str]:
    """The bootstrap users and their configured passwords ("" = none)."""
    return {"admin": _option(conf, "identity", "admin_password"), "demo": _option(conf, "identity", "demo_password"),
            conf.get("service_user", "username"): _option(conf, "service_user", "password")}


def stored_hashes(session: Session, names: list[str]) -> dict[str, str | None]:
    found = {name: users.find_by_name(session, name, DEFAULT_DOMAIN_ID) for name in names}
    return {name: user.password_hash for name, user in found.items() if user is not None}


def new_hashes(conf: Config, stored: dict[str, str | None], hasher: Callable[[str], str],
               pool: Executor) -> dict[str, str | None]:
    """The hash to store for each bootstrap user whose configured password is not the stored one (None:
    keep what is stored). Worked out before ``run``'s transaction, on ``pool``'s threads side by side:
    at the production work factor each hash or check costs ~0.6 s of CPU."""
    def needed(name: str, password: str) -> str | None:
        if not password or (name in stored and passwords.verify_password(password, stored[name])):
            return None
        return hasher(password)

    wanted = wanted_passwords(conf)
    return dict(zip(wanted, pool.map(needed, wanted, wanted.values())))


def _user(session: Session, name: str, new_hash: str | None) -> str:
    user = users.find_by_name(session, name, DEFAULT_DOMAIN_ID)
    if user is None:
        return users.create(session, {"name": name, "domain_id": DEFAULT_DOMAIN_ID}, new_hash).id
    if new_hash is not None:
        user.password_hash = new_hash
        revocation.record(session, user_id=user.id)
    return user.id


def run(session: Session, conf: Config, hashes: dict[str, str | None]) -> None:
    """``hashes``: ``new_hashes``."""
    if domains.get_or_none(session, DEFAULT_DOMAIN_ID) is None:
        domains.create(session, {"name": "Default", "description": "The default domain"},
                       domain_id=DEFAULT_DOMAIN_ID)
    service_project = conf.get("service_user", "project_name")
    project_ids = {name: _project(session, name) for name in ("admin", "demo", service_project)}
    role_ids = {name: _role(session, name) for name in ROLES}
    rules = roles.inference_rules(session)
    for prior, implied in IMPLIED:
        if role_ids[implied] not in rules.get(role_ids[prior], []):
            roles.add_implied(session, role_ids[prior], role_ids[implied])
    admin = _user(session, "admin", hashes.get("admin"))
    demo = _user(session, "demo", hashes.get("demo"))
    service_user = conf.get("service_user", "username")
    service = _user(session, service_user, hashes.get(service_user))
    grants = [(admin, "project", project_ids["admin"], "admin"),
              (admin, "system", assignments.SYSTEM_ID, "admin"),
              (demo, "project", project_ids["demo"], "member"),
              (service, "project", project_ids[service_project], "admin"),
              (service, "project", project_ids[service_project], "service")]
    for user_id, target_type, target_id, role in grants:
        assignments.grant(session, user_id, target_type, target_id, role_ids[role])
    region = conf.get("DEFAULT", "region_name")
    for interface in INTERFACES:
        for service_type, url in catalog_urls(conf, interface).items():
            catalog.ensure_endpoint(session, service_type, SERVICES[service_type], region, interface, url)
            for alias, name in ALIASES.get(service_type, []):
                catalog.ensure_endpoint(session, alias, name, region, interface, url)
    revocation.prune(session, time.time() - conf.getfloat("token", "expiration") - 3600)
