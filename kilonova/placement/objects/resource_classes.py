"""The resource_classes table: standard classes from os_resource_classes plus CUSTOM_* ones.

Standard classes keep the index they have in ``os_resource_classes.STANDARDS``
as their id (as upstream does); custom classes are numbered from 10000. Name
and id lookups go through a small per-database cache; standard ids never change.
"""
from __future__ import annotations

import os_resource_classes as orc
import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.placement.objects import capacity
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects.models import Inventory, ResourceClass, now

CUSTOM_MIN_ID = 10000
STANDARD = frozenset(orc.STANDARDS)

_caches: dict[str, dict[str, int]] = {}


def _cache(session: Session) -> dict[str, int]:
    return _caches.setdefault(capacity.key(session), {})   # the URL rendered once per engine, not per call


def forget(session: Session) -> None:
    _cache(session).clear()


def sync_standard(session: Session) -> None:
    """Insert the standard classes this os_resource_classes release knows and the table lacks."""
    present = set(session.scalars(sa.select(ResourceClass.name)))
    for index, name in enumerate(orc.STANDARDS):
        if name not in present:
            session.add(ResourceClass(id=index, name=name))
    session.flush()
    forget(session)


def ids_by_name(session: Session, names) -> dict[str, int]:
    """The ids of the classes among ``names`` that exist (unknown names are left out)."""
    cache = _cache(session)
    missing = [name for name in names if name not in cache]
    if missing:
        for row in session.execute(sa.select(ResourceClass.name, ResourceClass.id)
                                   .where(ResourceClass.name.in_(missing))):
            cache[row.name] = row.id
    return {name: cache[name] for name in names if name in cache}


def id_of(session: Session, name: str) -> int:
    found = ids_by_name(session, [name])
    if name not in found:
        raise exc.ResourceClassNotFound(f"No such resource class {name}.")
    return found[name]


def names_by_id(session: Session, needed=()) -> dict[int, str]:
    """Names of the cached classes; the whole table is read when the cache is empty or lacks one
    of ``needed`` (the cache may hold only the names looked up so far, or miss another process's)."""
    cache = _cache(session)
    names = {rc_id: name for name, rc_id in cache.items()}
    if not cache or any(rc_id not in names for rc_id in needed):
        cache.clear()
        for row in session.execute(sa.select(ResourceClass.name, ResourceClass.id)):
            cache[row.name] = row.id
        names = {rc_id: name for name, rc_id in cache.items()}
    return names


def name_of(session: Session, rc_id: int) -> str:
    names = names_by_id(session)
    if rc_id not in names:
        forget(session)
        names = names_by_id(session)
    return names[rc_id]


def list_all(session: Session) -> list[ResourceClass]:
    return list(session.scalars(sa.select(ResourceClass).order_by(ResourceClass.id)))


def get(session: Session, name: str) -> ResourceClass:
    row = session.scalar(sa.select(ResourceClass).where(ResourceClass.name == name))
    if row is None:
        raise exc.ResourceClassNotFound(f"No such resource class {name}.")
    return row


def create(session: Session, name: str) -> ResourceClass:
    if session.scalar(sa.select(ResourceClass.id).where(ResourceClass.name == name)) is not None:
        raise exc.Duplicate(f"Conflicting resource class already exists: {name}")
    highest = session.scalar(sa.select(sa.func.max(ResourceClass.id)))
    row = ResourceClass(id=max(CUSTOM_MIN_ID, (highest or 0) + 1), name=name)
    session.add(row)
    session.flush()
    _cache(session)[name] = row.id
    return row


def ensure(session: Session, name: str) -> bool:
    """Create a custom class unless it exists; True when it was created."""
    try:
        create(session, name)
    except exc.Duplicate:
        return False
    return True


def rename(session: Session, name: str, new_name: str) -> ResourceClass:
    if name in STANDARD:
        raise exc.Invalid(f"Cannot update standard resource class {name}")
    row = get(session, name)
    if session.scalar(sa.select(ResourceClass.id).where(ResourceClass.name == new_name)) is not None:
        raise exc.Duplicate(f"Resource class already exists: {new_name}")
    row.name = new_name
    row.updated_at = now()
    session.flush()
    forget(session)
    return row


def delete(session: Session, name: str) -> None:
    if name in STANDARD:
        raise exc.Invalid(f"Cannot delete standard resource class {name}.")
    row = get(session, name)
    if session.scalar(sa.select(Inventory.id).where(Inventory.resource_class_id == row.id).limit(1)) is not None:
        raise exc.InUse(f"Cannot delete resource class {name}. Class is in use in inventory.")
    session.delete(row)
    session.flush()
    forget(session)
