"""The image data layer: plain SQLAlchemy functions taking a Session, run through ``Database``.

Images leave this module as dicts (core columns plus ``properties`` and ``tags``)
so nothing above it touches ORM objects.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.common.prepared import prepare
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


# Every shelve creates a snapshot image, describes it, uploads its data and, at unshelve, deletes it:
# table-level statements built once, not ORM objects with their properties and tags loaded and flushed.
_IMAGES = Image.__table__
_PROPERTIES = ImageProperty.__table__
_TAGS = ImageTag.__table__
_EXISTS = sa.select(_IMAGES.c.id).where(_IMAGES.c.id == sa.bindparam("image_id"))
_INSERT_IMAGE = _IMAGES.insert()
_INSERT_PROPERTY = _PROPERTIES.insert()
_INSERT_TAG = _TAGS.insert()
# The SET clause comes from the execute() parameters other than the WHERE clause's.
_UPDATE_IMAGE = _IMAGES.update().where(_IMAGES.c.id == sa.bindparam("image_id"))
_UPDATE_PROPERTY = _PROPERTIES.update().where(_PROPERTIES.c.image_id == sa.bindparam("of_image"),
                                              _PROPERTIES.c.name == sa.bindparam("prop_name"))
_DELETE_PROPERTIES = _PROPERTIES.delete().where(_PROPERTIES.c.image_id == sa.bindparam("image_id"),
                                                _PROPERTIES.c.name.in_(sa.bindparam("names", expanding=True)))
_DELETE_TAGS = _TAGS.delete().where(_TAGS.c.image_id == sa.bindparam("image_id"),
                                    _TAGS.c.value.in_(sa.bindparam("values", expanding=True)))
_DELETE_ALL = [table.delete().where(table.c.image_id == sa.bindparam("image_id"))
               for table in (ImageMember.__table__, _PROPERTIES, _TAGS)]
_DELETE_IMAGE = _IMAGES.delete().where(_IMAGES.c.id == sa.bindparam("image_id"))
prepare(_IMAGE_ROW, _PROPERTY_ROWS, _TAG_ROWS, _EXISTS, _UPDATE_IMAGE, _UPDATE_PROPERTY, _DELETE_PROPERTIES, _DELETE_TAGS,
        *_DELETE_ALL, _DELETE_IMAGE)  # on SQLite's cursor: every shelve creates, describes and deletes one


def create(session: Session, values: dict[str, Any], properties: dict[str, str], tags: list[str]) -> dict:
    if session.execute(_EXISTS, {"image_id": values["id"]}).first() is not None:
        raise Conflict(values["id"])
    # The inserted parameters, column defaults included, are the new image's columns.
    row = session.execute(_INSERT_IMAGE, values).last_inserted_params()
    wanted_tags = list(dict.fromkeys(tags))
    if properties:
        session.execute(_INSERT_PROPERTY, [{"image_id": row["id"], "name": k, "value": v}
                                           for k, v in properties.items()])
    if wanted_tags:
        session.execute(_INSERT_TAG, [{"image_id": row["id"], "value": t} for t in wanted_tags])
    created = {column: row.get(column) for column in CORE_COLUMNS}
    created["properties"] = dict(properties)
    created["tags"] = wanted_tags
    return created


def update(session: Session, image_id: str, core: dict[str, Any], properties: dict[str, str],
           tags: list[str] | None) -> dict[str, Any]:
    """Set core columns, replace the extra properties with ``properties``, and the tags when given."""
    image = get(session, image_id)
    current = image["properties"]
    params = {"image_id": image_id}
    gone = [name for name in current if name not in properties]
    if gone:
        session.execute(_DELETE_PROPERTIES, {**params, "names": gone})
    for name, value in current.items():
        if name in properties and value != properties[name]:
            session.execute(_UPDATE_PROPERTY, {"of_image": image_id, "prop_name": name, "value": properties[name]})
    added = [{"image_id": image_id, "name": k, "value": v} for k, v in properties.items() if k not in current]
    if added:
        session.execute(_INSERT_PROPERTY, added)
    # In the order the ORM's collection kept them: the stored ones by name, then the new ones.
    image["properties"] = {**{k: properties[k] for k in current if k in properties}, **properties}
    if tags is not None:
        image["tags"] = _replace_tags(session, image_id, image["tags"], tags)
    return _set_columns(session, image, {**core, "updated_at": utcnow()})


def _set_columns(session: Session, image: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    session.execute(_UPDATE_IMAGE, {"image_id": image["id"], **values})
    image.update(values)
    return image


def _replace_tags(session: Session, image_id: str, have: list[str], tags: list[str]) -> list[str]:
    wanted = list(dict.fromkeys(tags))
    dropped = [tag for tag in have if tag not in wanted]
    if dropped:
        session.execute(_DELETE_TAGS, {"image_id": image_id, "values": dropped})
    kept = [tag for tag in have if tag in wanted]
    added = [tag for tag in wanted if tag not in kept]
    if added:
        session.execute(_INSERT_TAG, [{"image_id": image_id, "value": t} for t in added])
    return kept + added


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
    values = get(session, image_id)
    params = {"image_id": image_id}
    for statement in _DELETE_ALL:
        session.execute(statement, params)
    session.execute(_DELETE_IMAGE, params)
    return values


def set_status(session: Session, image_id: str, expected: tuple[str, ...], status: str) -> dict[str, Any]:
    """Move the image from one of ``expected`` to ``status`` (atomically: the caller holds the write lock)."""
    image = get(session, image_id)
    if image["status"] not in expected:
        raise BadStatus(image["status"])
    return _set_columns(session, image, {"status": status, "updated_at": utcnow()})


def activate(session: Session, image_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Record uploaded data (size, checksums, virtual size) and make the image active."""
    image = get(session, image_id)
    if image["status"] != "saving":
        raise BadStatus(image["status"])
    return _set_columns(session, image, {**data, "status": "active", "updated_at": utcnow()})


# --- members -------------------------------------------------------------------------------------

def member_to_dict(member: ImageMember) -> dict[str, Any]:
    return {"image_id": member.image_id, "member_id": member.member, "status": member.status,
            "created_at": member.created_at, "updated_at": member.updated_at}


# Every server boot's image read asks for its members too: a table-level statement built once.
_MEMBER_ROWS = sa.select(ImageMember.__table__.c.member, ImageMember.__table__.c.status).where(
    ImageMember.__table__.c.image_id == sa.bindparam("image_id"))
prepare(_MEMBER_ROWS)


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
