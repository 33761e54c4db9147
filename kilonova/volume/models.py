"""Tables of the volume database: volumes and their metadata, volume types and their extra specs, quotas,
snapshots, attachments."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class VolumeBase(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.utcnow()


class VolumeType(VolumeBase):
    __tablename__ = "volume_types"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str | None] = mapped_column(sa.String(255))
    is_public: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    extra_specs: Mapped[list["VolumeTypeExtraSpec"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="VolumeTypeExtraSpec.key")


class VolumeTypeExtraSpec(VolumeBase):
    __tablename__ = "volume_type_extra_specs"
    __table_args__ = (sa.UniqueConstraint("volume_type_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    volume_type_id: Mapped[str] = mapped_column(sa.ForeignKey("volume_types.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str] = mapped_column(sa.String(255))


class Volume(VolumeBase):
    __tablename__ = "volumes"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(255))
    name: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    description: Mapped[str | None] = mapped_column(sa.String(255))
    size: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(255), index=True)
    availability_zone: Mapped[str] = mapped_column(sa.String(255))
    volume_type_id: Mapped[str] = mapped_column(sa.ForeignKey("volume_types.id"), index=True)
    bootable: Mapped[bool] = mapped_column(default=False)
    snapshot_id: Mapped[str | None] = mapped_column(sa.String(36))
    source_volid: Mapped[str | None] = mapped_column(sa.String(36))
    multiattach: Mapped[bool] = mapped_column(default=False)
    attach_status: Mapped[str] = mapped_column(sa.String(255), default="detached")
    readonly: Mapped[bool] = mapped_column(default=False)   # os-update_readonly_flag: attached read-only
    # An extend of an attached qcow2 volume the compute service does (Cinder's admin metadata key
    # ``extend_new_size``, shown in the metadata): the size asked, until os-extend_volume_completion.
    extend_new_size: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    volume_type: Mapped[VolumeType] = relationship(lazy="joined")
    metadata_items: Mapped[list["VolumeMetadata"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="VolumeMetadata.key")
    attachments: Mapped[list["VolumeAttachment"]] = relationship(
        lazy="selectin", order_by="VolumeAttachment.created_at", viewonly=True)
    image_items: Mapped[list["VolumeGlanceMetadata"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="VolumeGlanceMetadata.key")


class VolumeMetadata(VolumeBase):
    __tablename__ = "volume_metadata"
    __table_args__ = (sa.UniqueConstraint("volume_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    volume_id: Mapped[str] = mapped_column(sa.ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str] = mapped_column(sa.String(255))


class QuotaLimit(VolumeBase):
    """A project's limit for one resource, where an admin changed it from the default."""
    __tablename__ = "quotas"
    __table_args__ = (sa.UniqueConstraint("project_id", "resource"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    resource: Mapped[str] = mapped_column(sa.String(255))
    hard_limit: Mapped[int] = mapped_column()


class Snapshot(VolumeBase):
    __tablename__ = "snapshots"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(255))
    volume_id: Mapped[str] = mapped_column(sa.ForeignKey("volumes.id"), index=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    description: Mapped[str | None] = mapped_column(sa.String(255))
    size: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    metadata_items: Mapped[list["SnapshotMetadata"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SnapshotMetadata.key")


class SnapshotMetadata(VolumeBase):
    __tablename__ = "snapshot_metadata"
    __table_args__ = (sa.UniqueConstraint("snapshot_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[str] = mapped_column(sa.ForeignKey("snapshots.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str] = mapped_column(sa.String(255))


class VolumeAttachment(VolumeBase):
    """One server's (``instance_uuid``) use of a volume, from its reservation to its deletion."""
    __tablename__ = "volume_attachments"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    volume_id: Mapped[str] = mapped_column(sa.ForeignKey("volumes.id"), index=True)
    instance_uuid: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    attach_status: Mapped[str] = mapped_column(sa.String(255), index=True)
    attach_mode: Mapped[str] = mapped_column(sa.String(36), default="null")
    attached_host: Mapped[str | None] = mapped_column(sa.String(255))
    mountpoint: Mapped[str | None] = mapped_column(sa.String(255))
    connector: Mapped[str | None] = mapped_column(sa.Text)         # JSON, as the caller sent it
    connection_info: Mapped[str | None] = mapped_column(sa.Text)   # JSON, as the API answered it
    attach_time: Mapped[datetime | None] = mapped_column(default=None)
    detach_time: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class VolumeGlanceMetadata(VolumeBase):
    """What a volume made from an image keeps of it (``volume_image_metadata``)."""
    __tablename__ = "volume_glance_metadata"
    __table_args__ = (sa.UniqueConstraint("volume_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    volume_id: Mapped[str] = mapped_column(sa.ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str] = mapped_column(sa.String(255))


class Message(VolumeBase):
    """A user message (3.3): why an operation on a project's resource failed where no API answer could say."""
    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    resource_type: Mapped[str] = mapped_column(sa.String(36))
    resource_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    event_id: Mapped[str] = mapped_column(sa.String(255))
    message_level: Mapped[str] = mapped_column(sa.String(255))
    detail: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
