"""Tables of the image database: images, their extra properties, tags and members."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class ImageBase(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.utcnow().replace(microsecond=0)


class Image(ImageBase):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    status: Mapped[str] = mapped_column(sa.String(30), default="queued", index=True)
    visibility: Mapped[str] = mapped_column(sa.String(20), default="private", index=True)
    owner: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    disk_format: Mapped[str | None] = mapped_column(sa.String(20))
    container_format: Mapped[str | None] = mapped_column(sa.String(20))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    checksum: Mapped[str | None] = mapped_column(sa.String(32))
    os_hash_algo: Mapped[str | None] = mapped_column(sa.String(64))
    os_hash_value: Mapped[str | None] = mapped_column(sa.String(128))
    min_disk: Mapped[int] = mapped_column(default=0)
    min_ram: Mapped[int] = mapped_column(default=0)
    protected: Mapped[bool] = mapped_column(default=False)
    os_hidden: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    properties: Mapped[list["ImageProperty"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ImageProperty.name")
    tags: Mapped[list["ImageTag"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ImageTag.id")


class ImageProperty(ImageBase):
    """A user-defined string property (``hw_disk_bus``, ``os_distro`` ...)."""
    __tablename__ = "image_properties"
    __table_args__ = (sa.UniqueConstraint("image_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[str] = mapped_column(sa.ForeignKey("images.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str] = mapped_column(sa.Text)


class ImageTag(ImageBase):
    __tablename__ = "image_tags"
    __table_args__ = (sa.UniqueConstraint("image_id", "value"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[str] = mapped_column(sa.ForeignKey("images.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(sa.String(255), index=True)


class ImageMember(ImageBase):
    """A project an image of visibility ``shared`` is offered to."""
    __tablename__ = "image_members"
    __table_args__ = (sa.UniqueConstraint("image_id", "member"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[str] = mapped_column(sa.ForeignKey("images.id", ondelete="CASCADE"), index=True)
    member: Mapped[str] = mapped_column(sa.String(255), index=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
