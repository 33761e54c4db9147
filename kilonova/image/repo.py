"""The image data layer: plain SQLAlchemy functions taking a Session, run through ``Database``.

Images leave this module as dicts (core columns plus ``properties`` and ``tags``)
so nothing above it touches ORM objects.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.image.models import Image, ImageMember, ImageProperty, ImageTag, utcnow

CORE_COLUMNS = ("id", "name", "status", "visibility", "owner", "disk_format", "container_format", "size",
                "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "min_disk", "min_ram",
                "protected", "os_hidden", "created_at", "updated_at")
SORT_KEYS = {"name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at",
             "visibility", "owner", "min_disk", "min_ram", "virtual_size", "os_hidden"}


class BadStatus(Conflict):
    """The image is not in the status an operation needs; ``args[0]`` is its current status."""


def to_dict(image: Image) -> dict[str, Any]:
    values = {column: getattr(image, column) for column in CORE_COLUMNS}
    values["properties"] = {prop.name: prop.value for prop in image.properties}
    values["tags"] = [tag.value for tag in image.tags]
    return values


def _load(session: Session, image_id: str) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(image_id)
    return image


# GET of one image (every server boot reads its image): plain rows from statements built once, not an
# ORM object with two lazily loaded relationships. Same dict as ``to_dict``.
_IMAGE_ROW = sa.select(*(Image.__table__.c[column] for column in CORE_COLUMNS)).where(
    Image.__table__.c.id == sa.bindparam("image_id"))
_PROPERTY_ROWS = sa.select(ImageProperty.__table__.c.name, ImageProperty.__table__.c.value).where(
    ImageProperty.__table__.c.image_id == sa.bindparam("image_id")).order_by(ImageProperty.__table__.c.name)
_TAG_ROWS = sa.select(ImageTag.__table__.c.value).where(
    ImageTag.__table__.c.image_id == sa.bindparam("image_id")).order_by(ImageTag.__table__.c.id)


def get(session: Session, image_id: str) -> dict[str, Any]:
    params = {"image_id": image_id}
    row = session.execute(_IMAGE_ROW, params).first()
    if row is None:
        raise NotFound(image_id)
    values = row._asdict()
    values["properties"] = dict(session.execute(_PROPERTY_ROWS, params).all())
    values["tags"] = session.execute(_TAG_ROWS, params).scalars().all()
    return values


def create(session: Session, values: dict[str, Any], properties: dict[str, str], tags: list[str]) -> dict:
    if session.get(Image, values["id"]) is not None:
        raise Conflict(values["id"])
    image = Image(**values)
    image.properties = [ImageProperty(name=k, value=v) for k, v in properties.items()]
    image.tags = [ImageTag(value=t) for t in dict.fromkeys(tags)]
    session.add(image)
    session.flush()
    return to_dict(image)


def update(session: Session, image_id: str, core: dict[str, Any], properties: dict[str, str],
           tags: list[str] | None) -> dict[str, Any]:
    """Set core columns, replace the extra properties with ``properties``, and the tags when given."""
    image = _load(session, image_id)
    for key, value in core.items():
        setattr(image, key, value)
    current = {prop.name: prop for prop in image.properties}
    for name, prop in current.items():
        if name not in properties:
            image.properties.remove(prop)
        elif prop.value != properties[name]:
            prop.value = properties[name]
    for name, value in properties.items():
        if name not in current:
            image.properties.append(ImageProperty(name=name, value=value))
    if tags is not None:
        _replace_tags(session, image, tags)
    image.updated_at = utcnow()
    session.flush()
    return to_dict(image)


def _replace_tags(session: Session, image: Image, tags: list[str]) -> None:
    wanted = list(dict.fromkeys(tags))
    for tag in list(image.tags):
        if tag.value not in wanted:
            image.tags.remove(tag)
    have = {tag.value for tag in image.tags}
    session.flush()
    image.tags.extend(ImageTag(value=t) for t in wanted if t not in have)


def add_tag(session: Session, image_id: str, tag: str) -> None:
    image = _load(session, image_id)
    if tag not in {t.value for t in image.tags}:
        image.tags.append(ImageTag(value=tag))
        image.updated_at = utcnow()


def remove_tag(session: Session, image_id: str, tag: str) -> None:
    image = _load(session, image_id)
    for item in image.tags:
        if item.value == tag:
            image.tags.remove(item)
            image.updated_at = utcnow()
            return
    raise NotFound(tag)


def delete(session: Session, image_id: str) -> dict[str, Any]:
    image = _load(session, image_id)
    values = to_dict(image)
    session.execute(sa.delete(ImageMember).where(ImageMember.image_id == image_id))
    session.delete(image)
    return values


def set_status(session: Session, image_id: str, expected: tuple[str, ...], status: str) -> dict[str, Any]:
    """Move the image from one of ``expected`` to ``status`` (atomically: the caller holds the write lock)."""
    image = _load(session, image_id)
    if image.status not in expected:
        raise BadStatus(image.status)
    image.status = status
    image.updated_at = utcnow()
    return to_dict(image)


def activate(session: Session, image_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Record uploaded data (size, checksums, virtual size) and make the image active."""
    image = _load(session, image_id)
    if image.status != "saving":
        raise BadStatus(image.status)
    for key, value in data.items():
        setattr(image, key, value)
    image.status = "active"
    image.updated_at = utcnow()
    return to_dict(image)


# --- members -------------------------------------------------------------------------------------

def member_to_dict(member: ImageMember) -> dict[str, Any]:
    return {"image_id": member.image_id, "member_id": member.member, "status": member.status,
            "created_at": member.created_at, "updated_at": member.updated_at}


# Every server boot's image read asks for its members too: a table-level statement built once.
_MEMBER_ROWS = sa.select(ImageMember.__table__.c.member, ImageMember.__table__.c.status).where(
    ImageMember.__table__.c.image_id == sa.bindparam("image_id"))


def members(session: Session, image_id: str) -> dict[str, str]:
    return {member: status for member, status in session.execute(_MEMBER_ROWS, {"image_id": image_id})}


def list_members(session: Session, image_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(sa.select(ImageMember).where(ImageMember.image_id == image_id)
                           .order_by(ImageMember.id))
    return [member_to_dict(m) for m in rows]


def get_member(session: Session, image_id: str, member_id: str) -> dict[str, Any]:
    return member_to_dict(_load_member(session, image_id, member_id))


def _load_member(session: Session, image_id: str, member_id: str) -> ImageMember:
    member = session.scalar(sa.select(ImageMember).where(ImageMember.image_id == image_id,
                                                         ImageMember.member == member_id))
    if member is None:
        raise NotFound(member_id)
    return member


def add_member(session: Session, image_id: str, member_id: str) -> dict[str, Any]:
    if session.scalar(sa.select(ImageMember.id).where(ImageMember.image_id == image_id,
                                                      ImageMember.member == member_id)):
        raise Conflict(member_id)
    member = ImageMember(image_id=image_id, member=member_id, status="pending")
    session.add(member)
    session.flush()
    return member_to_dict(member)


def update_member(session: Session, image_id: str, member_id: str, status: str) -> dict[str, Any]:
    member = _load_member(session, image_id, member_id)
    member.status = status
    member.updated_at = utcnow()
    return member_to_dict(member)


def remove_member(session: Session, image_id: str, member_id: str) -> None:
    session.delete(_load_member(session, image_id, member_id))


# --- listing -------------------------------------------------------------------------------------

def _visible_to(project_id: str | None, visibility: str | None, member_status: str) -> sa.ColumnElement:
    """The visibility part of a non-admin listing (Glance's default and ``visibility=`` filters)."""
    member_q = sa.select(ImageMember.image_id).where(ImageMember.member == project_id)
    if member_status != "all":
        member_q = member_q.where(ImageMember.status == member_status)
    owned = Image.owner == project_id
    shared = sa.and_(Image.visibility == "shared", sa.or_(owned, Image.id.in_(member_q)))
    if visibility is None:
        return sa.or_(Image.visibility == "public", sa.and_(owned, Image.visibility != "shared"), shared)
    if visibility == "all":
        return sa.or_(Image.visibility.in_(("public", "community")), sa.and_(owned, Image.visibility != "shared"),
                      shared)
    if visibility in ("public", "community"):
        return Image.visibility == visibility
    if visibility == "shared":
        return shared
    return sa.and_(Image.visibility == visibility, owned)


def list_images(session: Session, *, project_id: str | None, is_admin: bool, visibility: str | None,
                member_status: str, filters: dict[str, Any], tags: list[str], properties: dict[str, str],
                sort: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every image matching, sorted; the caller pages through the result."""
    query = sa.select(Image)
    if not is_admin:
        query = query.where(_visible_to(project_id, visibility, member_status))
    elif visibility not in (None, "all"):
        query = query.where(Image.visibility == visibility)
    for key, value in filters.items():
        column = getattr(Image, key)
        query = query.where(column.in_(value) if isinstance(value, list) else column == value)
    for tag in tags:
        query = query.where(Image.id.in_(sa.select(ImageTag.image_id).where(ImageTag.value == tag)))
    for name, value in properties.items():
        query = query.where(Image.id.in_(sa.select(ImageProperty.image_id).where(
            ImageProperty.name == name, ImageProperty.value == value)))
    for key, direction in sort:
        column = getattr(Image, key)
        query = query.order_by(column.desc() if direction == "desc" else column.asc())
    if "id" not in {key for key, _ in sort}:
        query = query.order_by(Image.id.desc() if (sort and sort[-1][1] == "desc") else Image.id.asc())
    return [to_dict(image) for image in session.scalars(query)]
