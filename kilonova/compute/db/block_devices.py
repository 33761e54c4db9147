"""The volumes of servers (``block_device_mapping`` in a cell database): one module owns the table.

A row is written by the compute API when a volume is reserved for a server (attach, or a create's
``block_device_mapping_v2``), given its Cinder attachment and connection by the server's host, and
removed once the volume is detached from the server (or the server is deleted).
"""
from __future__ import annotations

import re
import string
import uuid as uuidlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.compute.db.cell_models import BlockDeviceMapping

_COLUMNS = [c.key for c in sa.inspect(BlockDeviceMapping).column_attrs]
_TABLE = BlockDeviceMapping.__table__
ROOT_DEVICE = "/dev/vda"
_DEVICE = re.compile(r"^/dev/(x?v|s|h)d([a-z]+)$")


class DeviceInUse(Conflict):
    """Upstream's DevicePathInUse."""


class AlreadyAttached(Conflict):
    pass


def to_dict(row) -> dict[str, Any]:
    values = {key: getattr(row, key) for key in _COLUMNS}
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = value.isoformat(timespec="microseconds")
    return values


def _select():
    return sa.select(*(_TABLE.c[key] for key in _COLUMNS))


def for_instance(session: Session, instance_uuid: str) -> list[dict[str, Any]]:
    """The server's mappings, the boot disk first, then in the order they were made."""
    rows = session.execute(_select().where(_TABLE.c.instance_uuid == instance_uuid)
                           .order_by(sa.func.coalesce(_TABLE.c.boot_index, 1 << 30), _TABLE.c.id)).all()
    return [to_dict(row) for row in rows]


def for_instances(session: Session, instance_uuids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {uuid: [] for uuid in instance_uuids}
    if instance_uuids:
        for row in session.execute(_select().where(_TABLE.c.instance_uuid.in_(instance_uuids))
                                    .order_by(_TABLE.c.id)).all():
            found[row.instance_uuid].append(to_dict(row))
    return found


def get_by_volume(session: Session, instance_uuid: str, volume_id: str) -> dict[str, Any]:
    row = session.execute(_select().where(_TABLE.c.instance_uuid == instance_uuid,
                                          _TABLE.c.volume_id == volume_id)).first()
    if row is None:
        raise NotFound(f"No volume Block Device Mapping with id {volume_id}.")
    return to_dict(row)


def next_device(used: set[str], prefix: str = "/dev/vd") -> str:
    """The first free ``/dev/vdX`` after the root disk (``vda``): ``vdb``, ``vdc``, ... ``vdz``, ``vdaa``."""
    letters = [c for c in string.ascii_lowercase] + [a + b for a in string.ascii_lowercase
                                                      for b in string.ascii_lowercase]
    taken = {_DEVICE.sub(r"\2", name) for name in used if name} | {"a"}
    for suffix in letters:
        if suffix not in taken:
            return prefix + suffix
    raise Conflict("No free device name is left on this server.")


def valid_device(name: str) -> bool:
    return bool(_DEVICE.match(name))


def reserve(session: Session, instance_uuid: str, values: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """A new mapping for ``values["volume_id"]`` on the server, at ``device`` or the next free device name.

    AlreadyAttached when the server has that volume; DeviceInUse when ``device`` is taken."""
    existing = for_instance(session, instance_uuid)
    volume_id = values.get("volume_id")
    if volume_id and any(b["volume_id"] == volume_id for b in existing):
        raise AlreadyAttached(f"Invalid volume: volume {volume_id} already attached")
    used = {b["device_name"] for b in existing if b["device_name"]}
    if device and device in used:
        raise DeviceInUse(f"The supplied device path ({device}) is in use.")
    row = {"uuid": str(uuidlib.uuid4()), "instance_uuid": instance_uuid, "source_type": "volume",
           "destination_type": "volume", "delete_on_termination": False, "status": "attaching",
           "created_at": datetime.utcnow(), **values}
    row["device_name"] = device or row.get("device_name") or next_device(used)
    row["id"] = session.execute(_TABLE.insert(), row).inserted_primary_key[0]
    row.setdefault("updated_at", None)
    return to_dict(_Row(row))


def create_many(session: Session, instance_uuid: str, rows: list[dict[str, Any]]) -> None:
    """A new server's mappings, as the API prepared them (``block_device_mapping_v2``)."""
    now = datetime.utcnow()
    for row in rows:
        values = {k: v for k, v in row.items() if k in _COLUMNS and k not in ("id", "uuid", "instance_uuid")}
        session.execute(_TABLE.insert(), {"uuid": str(uuidlib.uuid4()), "instance_uuid": instance_uuid,
                                          "status": "attaching", "delete_on_termination": False, "created_at": now,
                                          **values})


class _Row:
    def __init__(self, values: dict[str, Any]):
        for key in _COLUMNS:
            setattr(self, key, values.get(key))


def update(session: Session, bdm_uuid: str, values: dict[str, Any]) -> dict[str, Any]:
    allowed = {k: v for k, v in values.items() if k in _COLUMNS and k not in ("id", "uuid", "instance_uuid")}
    result = session.execute(_TABLE.update().where(_TABLE.c.uuid == bdm_uuid)
                             .values(**allowed, updated_at=datetime.utcnow()))
    if result.rowcount == 0:
        raise NotFound(f"Block device mapping {bdm_uuid} could not be found.")
    row = session.execute(_select().where(_TABLE.c.uuid == bdm_uuid)).first()
    return to_dict(row)


def destroy(session: Session, bdm_uuid: str) -> bool:
    return session.execute(_TABLE.delete().where(_TABLE.c.uuid == bdm_uuid)).rowcount > 0


def destroy_for_instance(session: Session, instance_uuid: str) -> int:
    return session.execute(_TABLE.delete().where(_TABLE.c.instance_uuid == instance_uuid)).rowcount


def with_volumes(session: Session) -> list[dict[str, Any]]:
    """Every mapping of a volume in the cell (the volume attachment audit's)."""
    rows = session.execute(_select().where(_TABLE.c.volume_id.is_not(None)).order_by(_TABLE.c.id)).all()
    return [to_dict(row) for row in rows]


def in_status(session: Session, statuses: tuple[str, ...], older_than: datetime) -> list[dict[str, Any]]:
    """Mappings left in one of ``statuses`` since before ``older_than`` (the reconcile pass's)."""
    stamp = sa.func.coalesce(_TABLE.c.updated_at, _TABLE.c.created_at)
    rows = session.execute(_select().where(_TABLE.c.status.in_(statuses), stamp < older_than)
                           .order_by(_TABLE.c.id).limit(100)).all()
    return [to_dict(row) for row in rows]
