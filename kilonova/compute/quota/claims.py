"""Server creates within quota, atomically: racing creates of a project never pass its limits.

``allowed`` answers how many of the requested servers fit (the check before anything is prepared).
``record`` counts again and writes the build requests in one step per project: creates of a project take
turns in this process (a lock per project), and across processes the write goes through only if the
project's generation is still the one read before counting (else the count is done again). Servers no
limit bounds (every limit of their resources unlimited) are neither counted nor take turns.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any, Callable

from sqlalchemy.exc import IntegrityError

from kilonova.common.http import HTTPError
from kilonova.compute.db import quota_counts
from kilonova.compute.quota import counting, driver

ATTEMPTS = 50   # counts redone after another process's create recorded in between, before giving up (409)
_locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()


def _lock(project_id: str) -> asyncio.Lock:
    lock = _locks.get(project_id)
    if lock is None:
        lock = _locks[project_id] = asyncio.Lock()
    return lock


async def allowed(svc, project_id: str, flavor: dict[str, Any], is_bfv: bool, min_count: int,
                  max_count: int) -> int:
    quota = driver(svc)
    if not await quota.could_refuse(project_id, flavor, is_bfv):
        return max_count
    snap = await counting.snapshot(svc, project_id)
    return await quota.servers_that_fit(project_id, flavor, is_bfv, min_count, max_count, snap)


def _advance_and(session, project_id: str, generation: int, write: Callable[..., Any], args: tuple) -> Any:
    quota_counts.advance(session, project_id, generation)
    return write(session, *args)


async def record(svc, project_id: str, flavor: dict[str, Any], is_bfv: bool, count: int,
                 write: Callable[..., Any], *args: Any) -> Any:
    """``write(session, *args)`` in the API database, once ``count`` more servers are counted to fit
    (upstream's 403 when they no longer do: another create took the room since ``allowed``)."""
    quota = driver(svc)
    if not await quota.could_refuse(project_id, flavor, is_bfv):
        # No limit bounds these servers: nothing to count, nothing another create could take from them.
        return await svc.api_db.write(write, *args)
    async with _lock(project_id):
        for _ in range(ATTEMPTS):
            snap = await counting.snapshot(svc, project_id)
            await quota.servers_that_fit(project_id, flavor, is_bfv, count, count, snap)
            try:
                return await svc.api_db.write(_advance_and, project_id, snap.generation, write, args)
            except (quota_counts.GenerationMoved, IntegrityError):  # IntegrityError: both made the row
                continue
    raise HTTPError(409, "Too many server creates of this project at once; try again.")
