"""A server is never shown in ERROR without its fault: the fault is written with the state change.

Writing the ERROR state first and the fault later (after cleaning up a guest, ports and claims, seconds
on a restarting host) showed servers in ERROR with no fault meanwhile. The conductor records both in one
transaction (``instance_update(..., fault=...)``, conductor RPC 1.4); for a conductor pinned to an older
version, which would drop the argument, the fault goes first and the state after it.
"""
from __future__ import annotations

from typing import Any

from kilonova.compute import versions

WITH_UPDATES = (1, 4)   # the conductor RPC version whose instance_update takes ``fault``


def record(message: str, host: str | None, code: int = 500) -> dict[str, Any]:
    """The ``fault`` argument of an instance update: ``message`` shortened as the column holds it."""
    return {"code": code, "message": message[:255], "details": message, "host": host}


async def update(conductor, instance_uuid: str, values: dict, fault: dict | None, **expected: Any) -> dict:
    """The conductor's ``instance_update`` with ``fault`` recorded together (see the module doc)."""
    if fault is not None and versions.CONDUCTOR.cap(getattr(conductor, "version_cap", None)) < WITH_UPDATES:
        await conductor.call("add_fault", instance_uuid=instance_uuid, **fault)
        fault = None
    extra = {"fault": fault} if fault is not None else {}
    return await conductor.call("instance_update", instance_uuid=instance_uuid, values=values, **expected, **extra)
