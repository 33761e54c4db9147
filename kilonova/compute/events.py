"""Recording the steps of an instance action (``os-instance-actions`` events) around the code doing them.

    async with record(write, uuid, request_id, "compute_resize_instance", host) as event:
        ...                 # an exception here is recorded as Error (its text in details) and re-raised
        event.failed(exc)   # or: record Error without raising (the step handled its failure itself)

``write(phase, **fields)`` stores a start ("start") or an end ("finish"); the compute agent's goes
through the conductor, the conductor's writes the cell database. A step of a request that recorded
no action (``request_id`` None) is not recorded, and a failure to record never fails the step.
"""
from __future__ import annotations

import contextlib
import logging
import traceback as tb
from typing import Awaitable, Callable

LOG = logging.getLogger(__name__)

Writer = Callable[..., Awaitable[object]]


class Event:
    def __init__(self) -> None:
        self.error: BaseException | None = None

    def failed(self, exc: BaseException) -> None:
        self.error = exc


async def _write(write: Writer, phase: str, **fields) -> None:
    try:
        await write(phase, **fields)
    except Exception:  # noqa: BLE001 - the record of a step is not worth failing the step
        LOG.warning("could not record %s of event %s of instance %s", phase, fields.get("event"),
                    fields.get("instance_uuid"), exc_info=True)


@contextlib.asynccontextmanager
async def record(write: Writer, instance_uuid: str, request_id: str | None, event: str, host: str | None = None):
    step = Event()
    if request_id is None:
        yield step
        return
    fields = {"instance_uuid": instance_uuid, "request_id": request_id, "event": event, "host": host}
    await _write(write, "start", **fields)
    try:
        yield step
    except Exception as exc:
        await _write(write, "finish", result="Error", details=str(exc)[:1000],
                     traceback="".join(tb.format_exception(exc))[-4000:], **fields)
        raise
    if step.error is not None:
        await _write(write, "finish", result="Error", details=str(step.error)[:1000], **fields)
    else:
        await _write(write, "finish", result="Success", **fields)
