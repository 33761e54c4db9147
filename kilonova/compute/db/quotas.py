"""Quota limits (API database: per-project overrides of [quota]) and usage counted from a cell."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.compute.db.api_models import Quota, QuotaClass
from kilonova.compute.db.cell_models import Instance

# Every resource Nova's quota-sets API knows, with upstream's default when [quota] does not name it.
RESOURCES: dict[str, int] = {
    "instances": 10, "cores": 20, "ram": 51200, "metadata_items": 128, "key_pairs": 100,
    "server_groups": 10, "server_group_members": 10, "injected_files": 5,
    "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
    "floating_ips": 10, "fixed_ips": -1, "security_groups": 10, "security_group_rules": 20,
}
# [quota] option names that differ from the resource name.
_CONF_NAMES = {"injected_file_path_bytes": "injected_file_path_length"}


def get_defaults(conf) -> dict[str, int]:
    defaults = {}
    for resource, fallback in RESOURCES.items():
        try:
            defaults[resource] = conf.getint("quota", _CONF_NAMES.get(resource, resource))
        except Exception:  # noqa: BLE001 - option absent from the configuration
            defaults[resource] = fallback
    return defaults


# Read on every server create: statements built once, plain rows.
_OVERRIDES = sa.select(Quota.__table__.c.resource, Quota.__table__.c.hard_limit).where(
    Quota.__table__.c.project_id == sa.bindparam("project_id"))
# Table columns, not ORM attributes: every create counts two cells, with no ORM session.
_INSTANCES = Instance.__table__
_USAGE = sa.select(sa.func.count(_INSTANCES.c.id), sa.func.coalesce(sa.func.sum(_INSTANCES.c.vcpus), 0),
                   sa.func.coalesce(sa.func.sum(_INSTANCES.c.memory_mb), 0)).where(
    _INSTANCES.c.project_id == sa.bindparam("project_id"), _INSTANCES.c.deleted == 0,
    _INSTANCES.c.vm_state != "soft-delete")  # as upstream: a restore counts it again (and may be refused)
prepare(_OVERRIDES, _USAGE)  # on SQLite's cursor: every create and upsize


def get_overrides(session: Session, project_id: str) -> dict[str, int]:
    return {row.resource: row.hard_limit for row in session.execute(_OVERRIDES, {"project_id": project_id})}


DEFAULT_CLASS = "default"
_CLASS_LIMITS = sa.select(QuotaClass.__table__.c.resource, QuotaClass.__table__.c.hard_limit).where(
    QuotaClass.__table__.c.class_name == sa.bindparam("class_name"))
prepare(_CLASS_LIMITS)  # read with the overrides on every create


def get_class_limits(session: Session, class_name: str) -> dict[str, int]:
    """The limits a quota class sets (only those set)."""
    return {row.resource: row.hard_limit for row in session.execute(_CLASS_LIMITS, {"class_name": class_name})}


def default_limits(session: Session, conf) -> dict[str, int]:
    """Every project's defaults: [quota]'s, with the "default" quota class's over them (upstream's
    use_default_quota_class)."""
    return {**get_defaults(conf), **get_class_limits(session, DEFAULT_CLASS)}


def class_quotas(session: Session, class_name: str, conf) -> dict[str, int]:
    """A class's quotas as upstream shows them: its own limits over the defaults."""
    return {**default_limits(session, conf), **get_class_limits(session, class_name)}


def set_class_limits(session: Session, class_name: str, limits: dict[str, int]) -> None:
    _store(session, QuotaClass, {"class_name": class_name}, limits)


def get_limits(session: Session, project_id: str, conf) -> dict[str, int]:
    """resource -> limit (-1 = unlimited) for a project: the defaults with its overrides applied."""
    return {**default_limits(session, conf), **get_overrides(session, project_id)}


def set_limits(session: Session, project_id: str, limits: dict[str, int]) -> None:
    _store(session, Quota, {"project_id": project_id}, limits)


def _store(session: Session, model, owner: dict[str, str], limits: dict[str, int]) -> None:
    """Upsert the hard limits of one owner (a project's overrides, a quota class's limits)."""
    existing = {row.resource: row for row in session.scalars(sa.select(model).filter_by(**owner))}
    for resource, limit in limits.items():
        if resource in existing:
            existing[resource].hard_limit = limit
        else:
            session.add(model(**owner, resource=resource, hard_limit=limit))
    session.flush()


def delete_limits(session: Session, project_id: str) -> None:
    """Drop a project's overrides: it is back on the defaults."""
    session.execute(sa.delete(Quota).where(Quota.project_id == project_id))


def count_usage(session: Session, project_id: str) -> dict[str, Any]:
    """instances, cores and ram used by a project's non-deleted (nor soft-deleted) instances in this cell."""
    row = session.execute(_USAGE, {"project_id": project_id}).one()
    return {"instances": int(row[0]), "cores": int(row[1]), "ram": int(row[2])}
