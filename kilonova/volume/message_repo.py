"""The messages table: user messages (3.3) about what failed after an API had answered, kept
``[volume] message_ttl`` seconds as Cinder keeps them."""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.http import HTTPError
from kilonova.volume.models import Message, utcnow

# Cinder's message catalogue, as far as this service raises them: (action id, action), (detail id, detail).
SCHEDULE_ALLOCATE_VOLUME = ("001", "schedule allocate volume")
COPY_IMAGE_TO_VOLUME = ("005", "copy image to volume")
COPY_VOLUME_TO_IMAGE = ("004", "copy volume to image")
UNKNOWN_ERROR = ("001", "An unknown error occurred.")
NO_BACKEND_AVAILABLE = ("003", "Could not find any available weighted backend.")
NOT_ENOUGH_SPACE_FOR_IMAGE = ("011", "Image used for creating volume exceeds available space.")
IMAGE_FORMAT_UNACCEPTABLE = ("018", "The image disk format must be the same as the volume format for the "
                                    "volume type you are requesting.")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def _dict(message: Message) -> dict[str, Any]:
    return {"id": message.id, "project_id": message.project_id, "request_id": message.request_id,
            "resource_type": message.resource_type, "resource_uuid": message.resource_uuid,
            "event_id": message.event_id, "message_level": message.message_level, "user_message": message.detail,
            "created_at": message.created_at.strftime(TIME_FORMAT),
            "guaranteed_until": message.expires_at.strftime(TIME_FORMAT)}


def add(session: Session, project_id: str, resource_uuid: str, action: tuple[str, str], detail: tuple[str, str],
        ttl: float, request_id: str | None = None) -> None:
    now = utcnow()
    session.add(Message(id=str(uuid.uuid4()), project_id=project_id, request_id=request_id, resource_type="VOLUME",
                        resource_uuid=resource_uuid, event_id=f"VOLUME_VOLUME_{action[0]}_{detail[0]}",
                        message_level="ERROR", detail=f"{action[1]}: {detail[1]}", created_at=now,
                        expires_at=now + timedelta(seconds=ttl)))


def listing(session: Session, project_id: str | None) -> list[dict[str, Any]]:
    query = sa.select(Message).where(Message.expires_at > utcnow())
    if project_id is not None:
        query = query.where(Message.project_id == project_id)
    return [_dict(m) for m in session.scalars(query)]


def _message(session: Session, message_id: str, project_id: str | None) -> Message:
    message = session.get(Message, message_id)
    if message is None or (project_id is not None and message.project_id != project_id):
        raise HTTPError(404, f"Message {message_id} could not be found.")
    return message


def get(session: Session, message_id: str, project_id: str | None) -> dict[str, Any]:
    return _dict(_message(session, message_id, project_id))


def delete(session: Session, message_id: str, project_id: str | None) -> None:
    session.delete(_message(session, message_id, project_id))


def expire(session: Session) -> None:
    session.execute(sa.delete(Message).where(Message.expires_at <= utcnow()))
