"""SQLite work runs on the event loop, and goes to the worker threads when another connection holds the lock."""
from __future__ import annotations

import asyncio
import sqlite3

import sqlalchemy as sa

from kilonova.common.db import Database


def _table(session):
    session.execute(sa.text("CREATE TABLE t (v INTEGER)"))


def _insert(session, value):
    session.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": value})


def _values(session):
    return [row[0] for row in session.execute(sa.text("SELECT v FROM t ORDER BY v"))]


async def test_a_write_behind_another_connections_lock_waits_without_stopping_the_loop(tmp_path):
    path = tmp_path / "t.sqlite"
    db = Database(f"sqlite:///{path}", name="t")
    try:
        db.run_sync(_table)
        await db.write(_insert, 1)
        holder = sqlite3.connect(path, isolation_level=None)  # e.g. another process sharing the file
        holder.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        write = asyncio.create_task(db.write(_insert, 2))
        await asyncio.sleep(0.3)
        assert not write.done(), "the write must wait for the lock, not fail"
        assert ticks >= 10, "the event loop must keep running while the write waits"
        assert await db.read(_values) == [1], "reads go on while the file is locked"
        holder.execute("COMMIT")
        await asyncio.wait_for(write, 10)
        assert await db.read(_values) == [1, 2]
        ticking.cancel()
        holder.close()
    finally:
        db.close()


async def test_domain_errors_from_a_function_run_on_the_loop_reach_the_caller_unchanged(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/t.sqlite", name="t")
    try:
        db.run_sync(_table)

        def fails(session):
            _insert(session, 5)
            raise LookupError("no such thing")

        try:
            await db.write(fails)
        except LookupError as exc:
            assert str(exc) == "no such thing"
        else:
            raise AssertionError("the error was swallowed")
        assert await db.read(_values) == [], "the failed transaction was rolled back, not retried"
    finally:
        db.close()
