"""Build requests and request specs: a server between the API's 202 and its first cell row."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.compute.db import mappings
from kilonova.compute.db.api_models import BuildRequest, RequestSpec


# Every server boot writes, reads and deletes its build request: table-level statements built once.
_BUILD_REQUESTS = BuildRequest.__table__
_INSERT = _BUILD_REQUESTS.insert()
_INSERT_SPEC = RequestSpec.__table__.insert()
_ROW = sa.select(_BUILD_REQUESTS.c.id, _BUILD_REQUESTS.c.instance).where(
    _BUILD_REQUESTS.c.instance_uuid == sa.bindparam("instance_uuid"))
_DELETE = _BUILD_REQUESTS.delete().where(_BUILD_REQUESTS.c.instance_uuid == sa.bindparam("instance_uuid"))


def create(session: Session, instance: dict[str, Any], spec: dict[str, Any]) -> None:
    """Record the build request, its request spec and its instance mapping together."""
    flavor = instance.get("flavor") or {}
    session.execute(_INSERT, {"instance_uuid": instance["uuid"], "project_id": instance["project_id"],
                              "instance": instance, "vcpus": int(flavor.get("vcpus") or 0),
                              "memory_mb": int(flavor.get("memory_mb") or 0),
                              "created_at": datetime.fromisoformat(instance["created_at"])})
    session.execute(_INSERT_SPEC, {"instance_uuid": instance["uuid"], "spec": spec})
    mappings.create_instance_mapping(session, instance["uuid"], instance["project_id"], instance["user_id"])


def get(session: Session, instance_uuid: str) -> dict[str, Any] | None:
    row = session.execute(_ROW, {"instance_uuid": instance_uuid}).first()
    return None if row is None else dict(row.instance, _build_request_id=row.id)


def exists(session: Session, instance_uuid: str) -> bool:
    return session.scalar(sa.select(BuildRequest.id).where(BuildRequest.instance_uuid == instance_uuid)) is not None


def delete(session: Session, instance_uuid: str) -> bool:
    """True when this call removed it (so the caller owns the server's fate)."""
    return session.execute(_DELETE, {"instance_uuid": instance_uuid}).rowcount > 0


# Every server list reads the caller's build requests (servers not yet in a cell): plain rows.
_ALL = sa.select(_BUILD_REQUESTS.c.id, _BUILD_REQUESTS.c.instance).order_by(_BUILD_REQUESTS.c.id)
_OF_PROJECT = _ALL.where(_BUILD_REQUESTS.c.project_id == sa.bindparam("project_id"))


def list_for(session: Session, project_id: str | None) -> list[dict[str, Any]]:
    rows = session.execute(_ALL) if project_id is None else session.execute(_OF_PROJECT, {"project_id": project_id})
    return [dict(row.instance, _build_request_id=row.id) for row in rows]


# Sums in SQL: parsing every pending server's JSON made each create cost more the longer the queue.
_PENDING = sa.select(sa.func.count(_BUILD_REQUESTS.c.id), sa.func.coalesce(sa.func.sum(_BUILD_REQUESTS.c.vcpus), 0),
                     sa.func.coalesce(sa.func.sum(_BUILD_REQUESTS.c.memory_mb), 0)).where(
    _BUILD_REQUESTS.c.project_id == sa.bindparam("project_id"))


def usage(session: Session, project_id: str) -> dict[str, int]:
    """instances, cores and ram of a project's build requests (quota usage not yet counted in a cell)."""
    count, cores, ram = session.execute(_PENDING, {"project_id": project_id}).one()
    return {"instances": int(count), "cores": int(cores), "ram": int(ram)}


# Every move and unshelve reads the server's request spec: a statement built once, no ORM object.
_SPEC = sa.select(RequestSpec.__table__.c.spec).where(
    RequestSpec.__table__.c.instance_uuid == sa.bindparam("instance_uuid"))
prepare(_ROW, _DELETE, _OF_PROJECT, _PENDING, _SPEC)  # on SQLite's cursor


def get_spec(session: Session, instance_uuid: str) -> dict[str, Any] | None:
    row = session.execute(_SPEC, {"instance_uuid": instance_uuid}).first()
    return None if row is None else row.spec


def specs_for(session: Session, instance_uuids: list[str]) -> dict[str, dict[str, Any]]:
    """The request specs of these servers (those that have one), in one read."""
    table = RequestSpec.__table__
    rows = session.execute(sa.select(table.c.instance_uuid, table.c.spec)
                           .where(table.c.instance_uuid.in_(instance_uuids)))
    return {row.instance_uuid: row.spec for row in rows if row.spec}


def delete_spec(session: Session, instance_uuid: str) -> None:
    session.execute(sa.delete(RequestSpec).where(RequestSpec.instance_uuid == instance_uuid))
