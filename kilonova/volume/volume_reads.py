"""One volume read as plain rows: the hot read of the volume service (every GET of a volume, every attach
and detach step reads it, and clients poll it).

The ORM's ``session.get`` with its three ``selectin`` relationships (metadata, attachments, image metadata)
cost four ORM queries and their loader set-up, most of the volume service's CPU under an attach benchmark.
Here the same four reads are prepared Core statements (kilonova/common/prepared.py: compiled once, run on
SQLite's cursor when the transaction has no ORM session open) and the rows are read as the ORM objects would
be. Inside a transaction that has changed ORM objects they run through that session (autoflushed first), so
a read after a write sees it."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from kilonova.common.prepared import prepare
from kilonova.volume.models import Volume, VolumeAttachment, VolumeGlanceMetadata, VolumeMetadata, VolumeType

_ID = sa.bindparam("volume_id")
_VOLUME = sa.select(*Volume.__table__.columns, VolumeType.name.label("type_name")).join(
    VolumeType, VolumeType.id == Volume.volume_type_id).where(Volume.id == _ID)
_METADATA = sa.select(VolumeMetadata.key, VolumeMetadata.value).where(
    VolumeMetadata.volume_id == _ID).order_by(VolumeMetadata.key)
_ATTACHMENTS = sa.select(*VolumeAttachment.__table__.columns).where(
    VolumeAttachment.volume_id == _ID).order_by(VolumeAttachment.created_at)
_IMAGE = sa.select(VolumeGlanceMetadata.key, VolumeGlanceMetadata.value).where(
    VolumeGlanceMetadata.volume_id == _ID).order_by(VolumeGlanceMetadata.key)
prepare(_VOLUME, _METADATA, _ATTACHMENTS, _IMAGE)


def volume_row(session, volume_id: str) -> Any | None:
    """The volume with its relationships, attribute for attribute as the ORM's ``Volume`` (None if none)."""
    params = {"volume_id": volume_id}
    row = session.execute(_VOLUME, params).first()
    if row is None:
        return None
    fields = dict(row._mapping)
    return SimpleNamespace(**fields, volume_type=SimpleNamespace(name=fields.pop("type_name")),
                           metadata_items=list(session.execute(_METADATA, params)),
                           attachments=list(session.execute(_ATTACHMENTS, params)),
                           image_items=list(session.execute(_IMAGE, params)))
