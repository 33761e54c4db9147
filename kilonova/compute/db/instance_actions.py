"""Instance actions and their events (``os-instance-actions``) in a cell database.

An action is one user request on a server (create, resize, reboot, ...), keyed by the request id the
API answered it with. Its events are the steps the conductor and the compute agents took for it,
each with a result (``Success`` / ``Error``) and, on error, the reason. An action finishes when its
operation does; its ``message`` is ``Error`` when that failed, as upstream shows it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common import metrics
from kilonova.common.prepared import prepare
from kilonova.compute.db.cell_models import InstanceAction, InstanceActionEvent

_INSERT_ACTION = InstanceAction.__table__.insert()


def utcnow() -> datetime:
    return datetime.utcnow()


class MarkerNotFound(Exception):
    pass


def start(session: Session, uuid: str, action: str, request_id: str | None, user_id: str | None,
          project_id: str | None) -> None:
    # Table-level insert (every boot starts a "create" action): no ORM session needed for it.
    # updated_at starts as start_time, as upstream's does (changes-since sees a new action).
    now = utcnow()
    session.execute(_INSERT_ACTION, {"action": action, "instance_uuid": uuid, "request_id": request_id,
                                     "user_id": user_id, "project_id": project_id, "start_time": now,
                                     "updated_at": now})


def record_done(session: Session, uuid: str, action: str, request_id: str | None, user_id: str | None,
                project_id: str | None, event: str, host: str | None = None) -> None:
    """An action done at once by the one who started it (lock, unlock): started, its one event a
    Success, finished."""
    start(session, uuid, action, request_id, user_id, project_id)
    event_start(session, uuid, request_id, event, host, action=action)
    event_finish(session, uuid, request_id, event, "Success", host=host, action=action)
    finish(session, uuid, action, request_id=request_id)


def record_failed(session: Session, uuid: str, action: str, request_id: str | None, user_id: str | None,
                  project_id: str | None, event: str, details: str, traceback: str | None = None,
                  host: str | None = None) -> None:
    """An action that failed in its first step (a build buried in cell0): started, its event an Error,
    finished with message Error."""
    start(session, uuid, action, request_id, user_id, project_id)
    event_start(session, uuid, request_id, event, host, action=action)
    event_finish(session, uuid, request_id, event, "Error", details=details, traceback=traceback, host=host,
                 action=action)
    finish(session, uuid, action, "Error", request_id=request_id)


# Events are written on every step of every operation: table-level statements built once (bound
# parameters, cached compiled forms), no ORM objects.
_ACTIONS = InstanceAction.__table__
_EVENTS = InstanceActionEvent.__table__
_BY_REQUEST = (sa.select(_ACTIONS.c.id, _ACTIONS.c.finish_time)
               .where(_ACTIONS.c.instance_uuid == sa.bindparam("uuid"),
                      _ACTIONS.c.request_id == sa.bindparam("request_id"))
               .order_by(_ACTIONS.c.id.desc()).limit(1))
_UNFINISHED_BY_NAME = (sa.select(_ACTIONS.c.id, _ACTIONS.c.finish_time)
                       .where(_ACTIONS.c.instance_uuid == sa.bindparam("uuid"),
                              _ACTIONS.c.action == sa.bindparam("action"), _ACTIONS.c.finish_time.is_(None))
                       .order_by(_ACTIONS.c.id.desc()).limit(1))
_UPDATE_ACTION = _ACTIONS.update().where(_ACTIONS.c.id == sa.bindparam("action_row_id"))  # SET: the params
_INSERT_EVENT = _EVENTS.insert()
_OPEN_EVENT = (sa.select(_EVENTS.c.id)
               .where(_EVENTS.c.action_id == sa.bindparam("action_row_id"), _EVENTS.c.event == sa.bindparam("event"),
                      _EVENTS.c.finish_time.is_(None))
               .order_by(_EVENTS.c.id.desc()).limit(1))
_UPDATE_EVENT = _EVENTS.update().where(_EVENTS.c.id == sa.bindparam("event_row_id"))  # SET: the params
prepare(_BY_REQUEST, _UNFINISHED_BY_NAME, _UPDATE_ACTION, _OPEN_EVENT, _UPDATE_EVENT)  # on SQLite's cursor


def _action_row(session: Session, uuid: str, request_id: str | None = None, action: str | None = None):
    """(id, finish_time) of the action of ``request_id`` (or the newest unfinished ``action``) of an instance."""
    if request_id is not None:
        return session.execute(_BY_REQUEST, {"uuid": uuid, "request_id": request_id}).first()
    return session.execute(_UNFINISHED_BY_NAME, {"uuid": uuid, "action": action}).first()


def finish(session: Session, uuid: str, action: str, message: str | None = None,
           request_id: str | None = None) -> None:
    """Finish the action (by its request id when known, else the newest unfinished one of that name)."""
    row = _action_row(session, uuid, request_id, action)
    if row is not None and row.finish_time is None:
        now = utcnow()
        values = {"finish_time": now, "updated_at": now}
        if message:
            values["message"] = message[:255]
        session.execute(_UPDATE_ACTION, {"action_row_id": row.id, **values})
        metrics.action_finished(action, message == "Error")


def event_start(session: Session, uuid: str, request_id: str | None, event: str, host: str | None = None,
                action: str | None = None) -> bool:
    """Record that step ``event`` of the action of ``request_id`` began; False if there is no such action."""
    row = _action_row(session, uuid, request_id, action)
    if row is None:
        return False
    now = utcnow()
    session.execute(_INSERT_EVENT, {"action_id": row.id, "event": event, "start_time": now, "host": host})
    session.execute(_UPDATE_ACTION, {"action_row_id": row.id, "updated_at": now})
    return True


def event_finish(session: Session, uuid: str, request_id: str | None, event: str, result: str,
                 details: str | None = None, traceback: str | None = None, host: str | None = None,
                 action: str | None = None) -> bool:
    """Close step ``event`` with ``result`` ("Success" or "Error"); an Error also marks the action as failed."""
    row = _action_row(session, uuid, request_id, action)
    if row is None:
        return False
    now = utcnow()
    values = {"finish_time": now, "updated_at": now, "result": result, "details": details, "traceback": traceback}
    event_id = session.execute(_OPEN_EVENT, {"action_row_id": row.id, "event": event}).scalar()
    if event_id is None:  # a step that failed before its start was recorded
        session.execute(_INSERT_EVENT, {"action_id": row.id, "event": event, "start_time": now, "host": host,
                                        **values})
    else:
        session.execute(_UPDATE_EVENT, {"event_row_id": event_id, **values})
    action_values = {"updated_at": now}
    if result == "Error":
        action_values["message"] = "Error"
    session.execute(_UPDATE_ACTION, {"action_row_id": row.id, **action_values})
    return True


def finish_last_event(session: Session, uuid: str, request_id: str | None, event: str, result: str,
                      details: str | None, traceback: str | None, host: str | None, action: str) -> bool:
    """``event_finish`` of an operation's last step, and ``finish`` of its action (Error when the step's is)."""
    recorded = event_finish(session, uuid, request_id, event, result, details, traceback, host)
    finish(session, uuid, action, "Error" if result == "Error" else None, request_id)
    return recorded


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _action_dict(row: InstanceAction) -> dict[str, Any]:
    return {"id": row.id, "action": row.action, "instance_uuid": row.instance_uuid, "request_id": row.request_id,
            "user_id": row.user_id, "project_id": row.project_id, "start_time": _stamp(row.start_time),
            "finish_time": _stamp(row.finish_time), "message": row.message, "updated_at": _stamp(row.updated_at)}


def _event_dict(row: InstanceActionEvent) -> dict[str, Any]:
    return {"event": row.event, "start_time": _stamp(row.start_time), "finish_time": _stamp(row.finish_time),
            "result": row.result, "traceback": row.traceback, "host": row.host, "details": row.details}


def _newest_first(query):
    return query.order_by(InstanceAction.start_time.desc(), InstanceAction.id.desc())


def list_for(session: Session, uuid: str, limit: int | None = None, marker: str | None = None,
             changes_since: datetime | None = None, changes_before: datetime | None = None) -> list[dict[str, Any]]:
    """The instance's actions, newest first (start time, then id), as upstream pages them: after the action
    of request id ``marker`` (MarkerNotFound when the instance has none), at most ``limit``, and with
    ``changes_since`` / ``changes_before`` only those whose updated_at is within."""
    if limit == 0:
        return []
    query = sa.select(InstanceAction).where(InstanceAction.instance_uuid == uuid)
    if changes_since is not None:
        query = query.where(InstanceAction.updated_at >= changes_since)
    if changes_before is not None:
        query = query.where(InstanceAction.updated_at <= changes_before)
    if marker is not None:
        after = session.scalar(_newest_first(sa.select(InstanceAction).where(
            InstanceAction.instance_uuid == uuid, InstanceAction.request_id == marker)).limit(1))
        if after is None:
            raise MarkerNotFound(marker)
        query = query.where(sa.or_(
            InstanceAction.start_time < after.start_time,
            sa.and_(InstanceAction.start_time == after.start_time, InstanceAction.id < after.id)))
    query = _newest_first(query)
    if limit is not None:
        query = query.limit(limit)
    return [_action_dict(row) for row in session.scalars(query)]


def get(session: Session, uuid: str, request_id: str) -> dict[str, Any] | None:
    """One action with its ``events`` (newest first, as upstream lists them), or None."""
    row = session.scalar(_newest_first(sa.select(InstanceAction).where(
        InstanceAction.instance_uuid == uuid, InstanceAction.request_id == request_id)).limit(1))
    if row is None:
        return None
    action = _action_dict(row)
    action["events"] = [_event_dict(e) for e in session.scalars(
        sa.select(InstanceActionEvent).where(InstanceActionEvent.action_id == row.id)
        .order_by(InstanceActionEvent.start_time.desc(), InstanceActionEvent.id.desc()))]
    return action
