"""The ledger of shelve snapshots: every image made for a shelve, recorded with the state change that starts
the shelve and forgotten once the image is deleted, so that an image whose deletion was cut short (a crash
between clearing the server's shelved state and the image delete) is found and deleted later."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from kilonova.common.prepared import prepared
from kilonova.compute.db.cell_models import Instance, ShelvedImage

SHELVED_VM_STATES = ("shelved", "shelved_offloaded")


# Table-level statements: every shelve records its image and every sweep forgets it, and an ORM unit of
# work in the shelve's transaction cost more than the rest of that transaction.
_LEDGER = ShelvedImage.__table__
_INSERT = _LEDGER.insert()
_FORGET = prepared(_LEDGER.delete().where(_LEDGER.c.image_id == sa.bindparam("image_id")))


def record(session: Session, image_id: str, instance_uuid: str) -> None:
    session.execute(_INSERT, {"image_id": image_id, "instance_uuid": instance_uuid, "created_at": datetime.utcnow()})


def unreferenced(session: Session, limit: int = 100) -> list[dict]:
    """Recorded images no server refers to any more: not its server's ``shelved_image_id`` (the server
    unshelved, deleted, or its shelve undone), nor the image of any server booted or rebuilt from it."""
    live = sa.and_(Instance.uuid == ShelvedImage.instance_uuid, Instance.deleted == 0)
    current = sa.func.coalesce(Instance.system_metadata["shelved_image_id"].as_string(), "")
    # A server still shelved keeps every snapshot of its own, even one its record no longer names.
    let_go = sa.and_(current != ShelvedImage.image_id, Instance.vm_state.not_in(SHELVED_VM_STATES))
    other = aliased(Instance)
    booted_from = sa.select(other.id).where(other.image_ref == ShelvedImage.image_id, other.deleted == 0)
    rows = session.execute(
        sa.select(ShelvedImage.image_id, ShelvedImage.instance_uuid)
        .outerjoin(Instance, live)
        .where(sa.or_(Instance.id.is_(None), let_go), ~booted_from.exists())
        .order_by(ShelvedImage.created_at).limit(limit)).all()
    return [{"image_id": row.image_id, "instance_uuid": row.instance_uuid} for row in rows]


def forget(session: Session, image_id: str) -> None:
    session.execute(_FORGET, {"image_id": image_id})
