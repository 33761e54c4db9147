"""The checks behind each API's ``/healthcheck``: its database answers, its broker is connected."""
from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from kilonova.common.operations import HealthCheck


def _probe(url: str, engine: sa.Engine) -> None:
    """A query on a new connection: SQLite's file must still be there (the pool's open connections would
    keep reading a deleted one); other databases must accept a connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path and path != ":memory:":
            connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1.0)
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                connection.close()
            return
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))


def database(name: str, db: Any) -> HealthCheck:
    async def check() -> str | None:
        try:
            await asyncio.to_thread(_probe, db.url, db.engine)
        except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as exc:
            text = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            return f"unreachable ({text})"
        return None
    return f"database {name}", check


def broker(transport: Any) -> HealthCheck | None:
    """The RPC broker's check, when the process has one (the in-process transport has none)."""
    problem = getattr(transport, "broker_problem", None)
    if problem is None:
        return None

    async def check() -> str | None:
        return problem()
    return "broker", check


def for_service(service: Any, transport: Any) -> list[HealthCheck]:
    """A service's database (``db``, ``api_db``, or the API database of its ``cells``: a conductor's or a
    scheduler's) and the process's broker."""
    checks = []
    db = getattr(service, "db", None) or getattr(service, "api_db", None) \
        or getattr(getattr(service, "cells", None), "api_db", None)
    if db is not None and hasattr(db, "engine"):
        checks.append(database(getattr(db, "name", "db"), db))
    rpc = broker(transport)
    if rpc is not None:
        checks.append(rpc)
    return checks
