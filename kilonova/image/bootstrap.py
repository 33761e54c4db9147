"""The default image every Kilonova has: ``kilonova-tiny``, an empty 1 GiB qcow2, public, owned by admin.

Its id is fixed, so that every start (and every image API process of a
distributed deployment) converges on the same single image.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, Database, NotFound
from kilonova.image import qcow2, repo
from kilonova.image.data import data_fields
from kilonova.image.models import Image, utcnow
from kilonova.image.store import FilesystemStore

DEFAULT_IMAGE_NAME = "kilonova-tiny"
DEFAULT_IMAGE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/images/kilonova-tiny"))


def _values(owner: str) -> dict[str, Any]:
    return {"id": DEFAULT_IMAGE_ID, "name": DEFAULT_IMAGE_NAME, "owner": owner, "visibility": "public",
            "status": "queued", "disk_format": "qcow2", "container_format": "bare", "min_disk": 0, "min_ram": 0}


def _mark_active(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    image = session.get(Image, DEFAULT_IMAGE_ID)
    if image is None:
        raise NotFound(DEFAULT_IMAGE_ID)
    for key, value in {**data, "status": "active"}.items():
        setattr(image, key, value)
    image.updated_at = utcnow()
    return repo.to_dict(image)


async def ensure_default_image(db: Database, store: FilesystemStore, owner: str) -> dict[str, Any]:
    """Create (or repair) the default image; harmless when it is already there and active."""
    try:
        image = await db.read(repo.get, DEFAULT_IMAGE_ID)
    except NotFound:
        try:
            image = await db.write(repo.create, _values(owner), {}, [])
        except Conflict:
            image = await db.read(repo.get, DEFAULT_IMAGE_ID)
    if image["status"] == "active" and store.exists(DEFAULT_IMAGE_ID):
        return image
    stored = await asyncio.to_thread(store.save_bytes, DEFAULT_IMAGE_ID, qcow2.empty_image())
    return await db.write(_mark_active, data_fields(stored, "qcow2"))
