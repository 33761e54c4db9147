"""The instances a usage report covers: upstream's ``instance_get_active_by_window_joined``."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import NotFound
from kilonova.compute.db.cell_models import Instance

_COLUMNS = (Instance.uuid, Instance.display_name, Instance.project_id, Instance.flavor, Instance.vcpus,
            Instance.memory_mb, Instance.vm_state, Instance.launched_at, Instance.terminated_at, Instance.deleted)


def active_in_window(session: Session, begin: datetime, end: datetime, project_id: str | None,
                     limit: int | None, marker: str | None) -> list[dict[str, Any]]:
    """Instances, deleted ones included, launched before ``end`` and not terminated by ``begin``, ordered by
    (project_id, uuid) after the ``marker`` instance (NotFound when this database has no such instance)."""
    stmt = sa.select(*_COLUMNS).where(sa.or_(Instance.terminated_at.is_(None), Instance.terminated_at > begin),
                                      Instance.launched_at < end)
    if project_id is not None:
        stmt = stmt.where(Instance.project_id == project_id)
    if marker is not None:
        after = session.execute(sa.select(Instance.project_id, Instance.uuid).where(Instance.uuid == marker)).first()
        if after is None:
            raise NotFound(f"Marker {marker} could not be found.")
        stmt = stmt.where(sa.or_(Instance.project_id > after.project_id,
                                 sa.and_(Instance.project_id == after.project_id, Instance.uuid > after.uuid)))
    stmt = stmt.order_by(Instance.project_id, Instance.uuid)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [dict(row) for row in session.execute(stmt).mappings()]
