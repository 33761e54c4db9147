"""What must exist in every identity database, created or refreshed on each start (idempotent).

Default domain; admin, demo and service projects; roles admin > member > reader
and service; users admin, demo and the service user with the configured
passwords (re-hashed only when the configured password changed, which also
revokes that user's earlier tokens); their grants; and the catalog of every
Kilonova service, re-pointed at the current URLs.
"""
from __future__ import annotations

import configparser
import time
from typing import Callable

from sqlalchemy.orm import Session

from kilonova.common.catalog import catalog_urls
from kilonova.config import Config
from kilonova.identity import passwords, revocation
from kilonova.identity.models import DEFAULT_DOMAIN_ID
from kilonova.identity.store import assignments, catalog, domains, projects, roles, users

IMPLIED = [("admin", "member"), ("member", "reader")]
ROLES = ["admin", "member", "reader", "service"]
SERVICES = {"identity": "keystone", "compute": "nova", "placement": "placement", "image": "glance",
            "network": "neutron"}
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


def _user(session: Session, name: str, password: str, hasher: Callable[[str], str]) -> str:
    user = users.find_by_name(session, name, DEFAULT_DOMAIN_ID)
    if user is None:
        return users.create(session, {"name": name, "domain_id": DEFAULT_DOMAIN_ID},
                            hasher(password) if password else None).id
    if password and not passwords.verify_password(password, user.password_hash):
        user.password_hash = hasher(password)
        revocation.record(session, user_id=user.id)
    return user.id


def run(session: Session, conf: Config, hasher: Callable[[str], str]) -> None:
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
    admin = _user(session, "admin", _option(conf, "identity", "admin_password"), hasher)
    demo = _user(session, "demo", _option(conf, "identity", "demo_password"), hasher)
    service = _user(session, conf.get("service_user", "username"), _option(conf, "service_user", "password"),
                    hasher)
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
    revocation.prune(session, time.time() - conf.getfloat("identity", "token_expiration") - 3600)
