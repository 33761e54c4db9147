"""The attachments table and the volume states it drives, as Cinder's attachment API moves them.

An attachment is reserved (the volume ``reserved``), connected with a host's connector (both
``attaching``), completed (``attached``, the volume ``in-use``) and deleted (``detaching`` while its
connection is torn down, then gone). After each removal the volume takes the state of the furthest
along of the attachments left (attached > attaching > detaching > reserved), or ``available``.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.http import HTTPError
from kilonova.volume.errors import volume_not_found
from kilonova.volume.models import Volume, VolumeAttachment, utcnow
from kilonova.volume.repo import attachment_dict
from kilonova.volume.volume_reads import volume_row

PRECEDENCE = ("attached", "attaching", "detaching", "reserved")
VOLUME_STATUS = {"attached": "in-use", "attaching": "attaching", "detaching": "detaching", "reserved": "reserved"}


def invalid_volume(reason: str) -> HTTPError:
    return HTTPError(400, f"Invalid volume: {reason}")


def attachment_not_found(attachment_id: str) -> HTTPError:
    return HTTPError(404, f"Volume attachment could not be found with filter: attachment_id = {attachment_id}.")


def _attachment(session: Session, attachment_id: str, project_id: str | None) -> VolumeAttachment:
    """The attachment, when the caller's project (None: an admin) owns its volume."""
    attachment = session.get(VolumeAttachment, attachment_id)
    if attachment is None:
        raise attachment_not_found(attachment_id)
    if project_id is not None and session.get(Volume, attachment.volume_id).project_id != project_id:
        raise attachment_not_found(attachment_id)
    return attachment


def get_attachment(session: Session, attachment_id: str, project_id: str | None) -> dict[str, Any]:
    return attachment_dict(_attachment(session, attachment_id, project_id))


def list_attachments(session: Session, project_id: str | None) -> list[dict[str, Any]]:
    query = sa.select(VolumeAttachment).join(Volume, Volume.id == VolumeAttachment.volume_id)
    if project_id is not None:
        query = query.where(Volume.project_id == project_id)
    return [attachment_dict(a) for a in session.scalars(query)]


def _check_not_error(volume: Volume, verb: str) -> None:
    if "error" in volume.status:
        raise invalid_volume(f"Volume attachments can not be {verb} if the volume is in an error state. The "
                             f"Volume {volume.id} currently has a status of: {volume.status} ")


def reserve(session: Session, volume_id: str, instance_uuid: str, mode: str) -> dict[str, Any]:
    """A new attachment of the volume for ``instance_uuid``: the volume must be free (or multiattach); a
    server that already has it may reserve it again (a move to another host)."""
    volume = session.get(Volume, volume_id)
    if volume is None:
        raise volume_not_found(volume_id)
    _check_not_error(volume, "created")
    allowed = ("available", "in-use", "downloading") if volume.multiattach else ("available", "downloading")
    if volume.status in allowed:
        volume.status = "reserved"
        volume.updated_at = utcnow()
    elif not (volume.status in ("in-use", "reserved")
              and any(a.instance_uuid == instance_uuid for a in volume.attachments)):
        statuses = " or ".join(allowed) if len(allowed) < 3 else f"{allowed[0]}, {allowed[1]} or {allowed[2]}"
        raise invalid_volume(f"Volume {volume.id} status must be {statuses} to reserve, but the current status is "
                             f"{volume.status}.")
    attachment = VolumeAttachment(id=str(uuid.uuid4()), volume_id=volume.id, instance_uuid=instance_uuid,
                                  attach_status="reserved", attach_mode=mode)
    session.add(attachment)
    session.flush()
    return attachment_dict(attachment)


def check_connectable(session: Session, attachment_id: str, project_id: str | None) -> dict[str, Any]:
    """Before a connector is given: the volume not in error, and a volume that is not multiattach not
    already connected through another attachment. Answers the attachment."""
    attachment = _attachment(session, attachment_id, project_id)
    volume = volume_row(session, attachment.volume_id)
    _check_not_error(volume, "updated")
    # The same server connected from a second host is a live migration (as Cinder, which allows it).
    others = [a for a in volume.attachments if a.id != attachment.id and a.connection_info
              and a.instance_uuid != attachment.instance_uuid]
    if others and not volume.multiattach:
        raise invalid_volume(f"duplicate connectors detected on volume {volume.id}")
    return attachment_dict(attachment)


def connect(session: Session, attachment_id: str, connector: dict[str, Any], connection_info: dict[str, Any],
            mode: str) -> dict[str, Any] | None:
    """Record the connection made for ``connector``: the attachment and its volume ``attaching``."""
    attachment = session.get(VolumeAttachment, attachment_id)
    if attachment is None:
        return None
    now = utcnow()
    attachment.connector = json.dumps(connector)
    attachment.connection_info = json.dumps(connection_info)
    attachment.attached_host = connector.get("host") or ""
    attachment.mountpoint = connector.get("mountpoint") or "na"
    attachment.attach_mode = mode
    attachment.attach_time = attachment.attach_time or now
    attachment.updated_at = now
    if attachment.attach_status != "attached":
        attachment.attach_status = "attaching"
    _settle_volume(session, attachment.volume_id)
    session.flush()
    return attachment_dict(attachment)


def complete(session: Session, attachment_id: str, project_id: str | None) -> None:
    """``os-complete``: the attachment attached, its volume ``in-use``."""
    attachment = _attachment(session, attachment_id, project_id)
    attachment.attach_status = "attached"
    attachment.updated_at = utcnow()
    session.flush()
    _set_state(session, attachment.volume_id, "in-use", "attached")


def begin_detach(session: Session, attachment_id: str, project_id: str | None) -> dict[str, Any]:
    """The first step of a delete: a connected attachment (and its volume) ``detaching`` until the
    connection is gone; a reservation has none and is answered as it is."""
    attachment = _attachment(session, attachment_id, project_id)
    if attachment.attach_status != "reserved" and attachment.connection_info:
        attachment.attach_status = "detaching"
        attachment.updated_at = utcnow()
        _settle_volume(session, attachment.volume_id)
        session.flush()
    return attachment_dict(attachment)


def finish_detach(session: Session, attachment_id: str) -> list[dict[str, Any]]:
    """Remove the attachment; the volume takes the state of those left, which are answered."""
    attachment = session.get(VolumeAttachment, attachment_id)
    if attachment is None:
        return []
    volume_id = attachment.volume_id
    session.delete(attachment)
    left = _settle_volume(session, volume_id)
    return [attachment_dict(a) for a in left if a.id != attachment_id]


_ATTACHMENTS_OF = sa.select(*VolumeAttachment.__table__.columns).where(
    VolumeAttachment.volume_id == sa.bindparam("volume_id")).order_by(VolumeAttachment.created_at)


def _settle_volume(session: Session, volume_id: str) -> list:
    """The volume's status and attach_status from its attachments (Cinder's order of precedence); answers
    the attachments (rows). Read and written as plain statements (every attach and detach step settles the
    volume: loading it and its relationships through the ORM was most of their cost); a Volume the session
    holds has those attributes expired, so that it reads them again."""
    session.flush()
    left = list(session.execute(_ATTACHMENTS_OF, {"volume_id": volume_id}))
    states = {a.attach_status for a in left}
    leading = next((state for state in PRECEDENCE if state in states), None)
    status, attach_status = ("available", "detached") if leading is None else (VOLUME_STATUS[leading], leading)
    _set_state(session, volume_id, status, attach_status)
    return left


def _set_state(session: Session, volume_id: str, status: str, attach_status: str) -> None:
    """The volume's status, written as a plain UPDATE (no load of the volume and its relationships); a Volume
    the session holds reads them again."""
    session.execute(sa.update(Volume.__table__).where(Volume.id == volume_id).values(
        status=status, attach_status=attach_status, updated_at=utcnow()))
    for held in list(session.identity_map.values()):
        if isinstance(held, Volume) and held.id == volume_id:
            session.expire(held, ["status", "attach_status", "updated_at"])


def exported_volumes(session: Session) -> list[str]:
    """Volumes with an attachment connected over NBD (their exports must be up)."""
    query = sa.select(VolumeAttachment.volume_id).where(VolumeAttachment.connection_info.like('%"nbd"%'))
    return sorted(set(session.scalars(query)))


def stale(session: Session, statuses: tuple[str, ...], before: datetime) -> list[dict[str, Any]]:
    """Attachments in one of ``statuses`` not changed since ``before``."""
    changed = sa.func.coalesce(VolumeAttachment.updated_at, VolumeAttachment.created_at)
    query = sa.select(VolumeAttachment).where(VolumeAttachment.attach_status.in_(statuses), changed < before)
    return [attachment_dict(a) for a in session.scalars(query)]


# --- the legacy attach calls (volume actions before 3.27), on the same attachments

def _volume_row(session: Session, volume_id: str) -> Volume:
    volume = session.get(Volume, volume_id)
    if volume is None:
        raise volume_not_found(volume_id)
    return volume


def legacy_reserve(session: Session, volume_id: str) -> None:
    """``os-reserve``: an available (or multiattach in-use) volume ``attaching``."""
    volume = _volume_row(session, volume_id)
    allowed = ("available", "in-use") if volume.multiattach else ("available",)
    if volume.status not in allowed:
        raise invalid_volume(f"Volume status must be {' or '.join(allowed)} to reserve, but the status is "
                             f"{volume.status}.")
    volume.status, volume.updated_at = "attaching", utcnow()


def legacy_unreserve(session: Session, volume_id: str) -> None:
    """``os-unreserve``: an ``attaching`` volume back to what its attachments make it."""
    if _volume_row(session, volume_id).status == "attaching":
        _settle_volume(session, volume_id)


def begin_detaching(session: Session, volume_id: str) -> None:
    volume = _volume_row(session, volume_id)
    if volume.status != "in-use" or volume.attach_status != "attached":
        raise invalid_volume("Unable to detach volume. Volume status must be 'in-use' and attach_status must be "
                             "'attached' to detach.")
    volume.status, volume.updated_at = "detaching", utcnow()


def roll_detaching(session: Session, volume_id: str) -> None:
    volume = _volume_row(session, volume_id)
    if volume.status == "detaching":
        volume.status, volume.updated_at = "in-use", utcnow()


def legacy_attach(session: Session, volume_id: str, instance_uuid: str | None, host_name: str | None,
                  mountpoint: str, mode: str) -> dict[str, Any]:
    """``os-attach``: the attach a host made, recorded as an attached attachment; the volume ``in-use``."""
    volume = _volume_row(session, volume_id)
    _check_not_error(volume, "created")
    if volume.readonly and mode != "ro":
        raise invalid_volume(f"Volume {volume.id} is read-only: it can only be attached in 'ro' mode.")
    if volume.status not in ("available", "attaching", "reserved") and not (
            volume.multiattach and volume.status == "in-use"):
        raise invalid_volume(f"Volume {volume.id} status must be available or attaching to attach, but the "
                             f"current status is {volume.status}.")
    now = utcnow()
    attachment = VolumeAttachment(id=str(uuid.uuid4()), volume_id=volume.id, instance_uuid=instance_uuid,
                                  attach_status="attached", attach_mode=mode, attached_host=host_name,
                                  mountpoint=mountpoint, attach_time=now, updated_at=now)
    session.add(attachment)
    _settle_volume(session, volume.id)
    session.flush()
    return attachment_dict(attachment)


def legacy_detach(session: Session, volume_id: str, attachment_id: str | None) -> None:
    """``os-detach``: the attachment named (or the volume's only one) gone; the volume settles."""
    volume = _volume_row(session, volume_id)
    if attachment_id is None:
        if len(volume.attachments) != 1:
            raise invalid_volume(f"Volume {volume.id} has {len(volume.attachments)} attachments: name the one to "
                                 f"detach with attachment_id.")
        attachment_id = volume.attachments[0].id
    attachment = session.get(VolumeAttachment, attachment_id)
    if attachment is None or attachment.volume_id != volume.id:
        raise attachment_not_found(attachment_id)
    finish_detach(session, attachment_id)


def reset_status(session: Session, volume_id: str, values: dict[str, str]) -> None:
    """``os-reset_status``: an admin sets what the volume says; ``attach_status: detached`` also drops its
    attachments (nothing is connected any more, as the admin asserts)."""
    volume = _volume_row(session, volume_id)
    if values.get("attach_status") == "detached":
        session.execute(sa.delete(VolumeAttachment).where(VolumeAttachment.volume_id == volume_id))
    for key, value in values.items():
        setattr(volume, key, value)
    volume.updated_at = utcnow()
    session.flush()
