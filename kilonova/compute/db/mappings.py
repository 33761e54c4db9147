"""Cell, host and instance mappings in the API database (cells v2)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.compute.db.api_models import CellMapping, HostMapping, InstanceMapping

CELL0_UUID = "00000000-0000-0000-0000-000000000000"


def list_cells(session: Session) -> list[CellMapping]:
    return list(session.scalars(sa.select(CellMapping).order_by(CellMapping.id)))


def ensure_cell(session: Session, uuid: str, name: str, transport_url: str, database_connection: str) -> CellMapping:
    cell = session.scalar(sa.select(CellMapping).where(CellMapping.uuid == uuid))
    if cell is None:
        cell = CellMapping(uuid=uuid, name=name, transport_url=transport_url,
                           database_connection=database_connection)
        session.add(cell)
    else:
        cell.transport_url = transport_url
        cell.database_connection = database_connection
    session.flush()
    return cell


def map_host(session: Session, host: str, cell_uuid: str) -> None:
    cell = session.scalar(sa.select(CellMapping).where(CellMapping.uuid == cell_uuid))
    existing = session.scalar(sa.select(HostMapping).where(HostMapping.host == host))
    if existing is None:
        session.add(HostMapping(host=host, cell_id=cell.id))
    else:
        existing.cell_id = cell.id


# Written on every server boot (created, then pointed at its cell): statements built once.
_INSERT_INSTANCE_MAPPING = InstanceMapping.__table__.insert()
_CELL_ID = sa.select(CellMapping.__table__.c.id).where(CellMapping.__table__.c.uuid == sa.bindparam("cell_uuid"))
_SET_INSTANCE_CELL = InstanceMapping.__table__.update().where(
    InstanceMapping.__table__.c.instance_uuid == sa.bindparam("mapped_uuid")).values(
    cell_id=sa.bindparam("mapped_cell_id"))


def create_instance_mapping(session: Session, instance_uuid: str, project_id: str, user_id: str) -> None:
    session.execute(_INSERT_INSTANCE_MAPPING,
                    {"instance_uuid": instance_uuid, "project_id": project_id, "user_id": user_id})


def get_instance_mapping(session: Session, instance_uuid: str) -> InstanceMapping | None:
    return session.scalar(sa.select(InstanceMapping).where(InstanceMapping.instance_uuid == instance_uuid))


_MAPPING_ROW = sa.select(*InstanceMapping.__table__.c).where(
    InstanceMapping.__table__.c.instance_uuid == sa.bindparam("instance_uuid"))
prepare(_CELL_ID, _MAPPING_ROW)  # on SQLite's cursor


def instance_mapping_row(session: Session, instance_uuid: str) -> sa.Row | None:
    """The mapping as a plain read-only row (same attributes as the ORM object): every server request
    looks its server up by it."""
    return session.execute(_MAPPING_ROW, {"instance_uuid": instance_uuid}).first()


def set_instance_cell(session: Session, instance_uuid: str, cell_uuid: str) -> None:
    cell_id = session.execute(_CELL_ID, {"cell_uuid": cell_uuid}).scalar()
    session.execute(_SET_INSTANCE_CELL, {"mapped_uuid": instance_uuid, "mapped_cell_id": cell_id})


def delete_instance_mapping(session: Session, instance_uuid: str) -> None:
    session.execute(sa.delete(InstanceMapping).where(InstanceMapping.instance_uuid == instance_uuid))


def count_instance_mappings(session: Session, project_id: str) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(InstanceMapping)
                          .where(InstanceMapping.project_id == project_id,
                                 InstanceMapping.queued_for_delete.is_(False))) or 0


def get_host_mapping(session: Session, host: str) -> HostMapping | None:
    return session.scalar(sa.select(HostMapping).where(HostMapping.host == host))


def delete_host_mapping(session: Session, host: str) -> bool:
    """Forget which cell a host is in (its compute service was deleted); False if it was not mapped."""
    return session.execute(sa.delete(HostMapping).where(HostMapping.host == host)).rowcount > 0


def list_in_cells(session: Session, cell_ids: list[int], project_id: str | None,
                  after: tuple[str, str] | None = None, limit: int | None = None) -> list[dict]:
    """Servers the API database knows in these cells (for cells that are down), newest first.

    What a down cell's server looks like from the API database alone: uuid, project,
    user and creation time. ``after`` is a (created_at, uuid) marker, as for cell queries.
    """
    stmt = sa.select(InstanceMapping).where(InstanceMapping.cell_id.in_(cell_ids),
                                            InstanceMapping.queued_for_delete.is_(False))
    if project_id is not None:
        stmt = stmt.where(InstanceMapping.project_id == project_id)
    if after is not None:
        created = datetime.fromisoformat(after[0])
        stmt = stmt.where(sa.or_(InstanceMapping.created_at < created,
                                 sa.and_(InstanceMapping.created_at == created,
                                         InstanceMapping.instance_uuid < after[1])))
    stmt = stmt.order_by(InstanceMapping.created_at.desc(), InstanceMapping.instance_uuid.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return [{"uuid": row.instance_uuid, "project_id": row.project_id, "user_id": row.user_id,
             "created_at": row.created_at.isoformat(timespec="microseconds"), "_cell_id": row.cell_id}
            for row in session.scalars(stmt)]


def hosts_in_cells(session: Session, cell_ids: list[int]) -> list[str]:
    """The compute hosts mapped to these cells, by name."""
    return list(session.scalars(sa.select(HostMapping.host).where(HostMapping.cell_id.in_(cell_ids))
                                .order_by(HostMapping.host)))
