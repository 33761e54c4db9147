"""Database access for every service: SQLAlchemy 2 sessions run in a bounded thread pool.

Concurrency model (see DESIGN.md): one asyncio loop per process, and blocking
database work runs in a small pool of worker threads. A data-layer function is
plain synchronous SQLAlchemy code taking a ``Session``; the service awaits it::

    server = await db.read(instances.get, uuid)
    await db.write(instances.create, values)

``write`` runs the function inside one transaction (on SQLite it takes the
write lock up front with ``BEGIN IMMEDIATE`` so that concurrent read-then-write
transactions queue instead of failing with "database is locked").

SQLite is a library, not a server: a statement is local file I/O that takes
microseconds, so on SQLite the function first runs right on the event loop,
with a busy timeout of zero so that it can never wait for a lock there. Only
when another connection holds the lock (another process sharing the file, or
a write still queued on the writer thread) does it go to the worker threads,
which wait for the lock with the normal timeout. Handing every statement to a
thread cost more than the statement itself: the loop and the workers fought
over the GIL (futex storms: 2-3x the CPU per server boot). PostgreSQL and
MariaDB always use the worker threads.

Each service owns its schema and migrates it with Alembic: ``migrate`` upgrades
a database to the head of the service's ``migrations`` directory. Several
processes may start at once against one database: each migration runs under a
lock of that database (a PostgreSQL advisory lock, a MariaDB named lock, a file
lock beside a SQLite file), so the later ones find it migrated and do nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Session

from kilonova.common import prepared
from kilonova.common.private_files import open_private, private_file

T = TypeVar("T")

LOG = logging.getLogger(__name__)

# A transaction whose connection the server dropped before the commit (a database restart, a proxy
# or an administrator cutting connections) is run again on a fresh connection, this many times: the
# server rolled it back, so nothing of it happened. A drop during the commit itself is not retried
# (whether it committed is unknown) and reaches the caller, as do all other errors.
DISCONNECT_RETRIES = 2


class DBError(Exception):
    """Base of the domain errors data-layer functions raise."""


class NotFound(DBError):
    pass


class Conflict(DBError):
    pass


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _use_wal(cursor: Any, attempts: int = 200) -> None:
    """Put the database in WAL mode (a persistent setting: a no-op once any connection has done it).

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without its busy
    handler, when another connection is switching the same new file at that moment (two processes
    creating or migrating one database together): try again for up to ~2 s.
    """
    for attempt in range(attempts):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.01)


_BEGIN = {mode: f"BEGIN {mode}" for mode in ("DEFERRED", "IMMEDIATE")}


def _make_engine(url: str, *, busy_timeout_ms: int = 30000) -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            # Owner-only before SQLite creates it: its -wal, -shm and journal files take the database's mode.
            private_file(path)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
                                  pool_size=8, max_overflow=8, json_serializer=_json_dumps,
                                  json_deserializer=orjson.loads)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
            # Let SQLAlchemy (not pysqlite) decide when transactions begin.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.close()

        def _sqlite_begin(dbapi_conn) -> None:  # pragma: no cover
            # The dialect's own BEGIN step, so that SQLAlchemy wraps its errors ("database is locked") as it
            # does a statement's; on the driver's connection, not through SQLAlchemy's execution path
            # (every transaction begins: that path cost as much as a one-row query).
            dbapi_conn.driver_connection.execute(_BEGIN[dbapi_conn.info.get("begin_mode", "DEFERRED")])

        engine.dialect.do_begin = _sqlite_begin
        return engine
    # READ COMMITTED on every server (PostgreSQL's default; MariaDB's is REPEATABLE READ): a statement
    # after a row lock sees what the previous lock holder committed, on both.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                            isolation_level="READ COMMITTED",
                            json_serializer=_json_dumps, json_deserializer=orjson.loads)


class _LazySession:
    """What a data-layer function gets as its ``session``: a SQLAlchemy ``Session`` made only when needed.

    Most functions on the hot paths run table-level (Core) statements, for which an ORM session is
    pure overhead (~60 us per transaction on SQLite, twice the cost of a one-row read): those go
    straight to the transaction's connection. The first ORM use (``add``, ``get``, an ORM ``select``,
    ``flush``, ...) opens a real ``Session`` on the same connection and transaction, and from then on
    every statement goes through it, so autoflush and the identity map work as usual.
    """

    __slots__ = ("_connection", "_session", "_sqlite")

    def __init__(self, connection: sa.Connection, sqlite: bool = False):
        self._connection = connection
        self._session: Session | None = None
        self._sqlite = sqlite

    def _orm(self) -> Session:
        if self._session is None:
            # Joins the connection's transaction; committing it stays with Database._transaction.
            self._session = Session(bind=self._connection, expire_on_commit=False,
                                    join_transaction_mode="rollback_only")
        return self._session

    def _target(self, statement: Any, kwargs: dict) -> Any:
        # ``_propagate_attrs`` is how SQLAlchemy's own Session tells ORM statements from Core ones.
        if self._session is None and not kwargs.get("bind_arguments") and \
                getattr(statement, "_propagate_attrs", {}).get("compile_state_plugin") != "orm":
            return self._connection
        return self._orm()

    def _prepared(self, statement: Any, params: Any, kwargs: dict) -> Any:
        """A prepared statement's result from SQLite's cursor (kilonova/common/prepared.py), else None."""
        if self._sqlite and self._session is None and not kwargs and prepared.is_prepared(statement):
            return prepared.execute(self._connection, statement, params)
        return None

    def execute(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        result = self._prepared(statement, params, kwargs)
        if result is not None:
            return result
        return self._target(statement, kwargs).execute(statement, params, **kwargs)

    def scalar(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        result = self._prepared(statement, params, kwargs)
        if result is not None:
            return result.scalar()
        return self._target(statement, kwargs).scalar(statement, params, **kwargs)

    def scalars(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        result = self._prepared(statement, params, kwargs)
        if result is not None:
            return result.scalars()
        return self._target(statement, kwargs).scalars(statement, params, **kwargs)

    def connection(self, **_kwargs: Any) -> sa.Connection:
        return self._connection

    def get_bind(self, *_args: Any, **_kwargs: Any) -> sa.Connection:
        return self._connection

    @property
    def bind(self) -> sa.Connection:
        return self._connection

    @property
    def identity_map(self) -> Any:
        return self._session.identity_map if self._session is not None else {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._orm(), name)

    def finish(self) -> None:
        if self._session is not None:
            self._session.flush()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


class Database:
    """One database (API, cell, Placement, identity, ...) and its worker threads.

    ``Database.shared(url)`` returns the process-wide instance for a URL, so
    services running in one process share one engine and pool per database.
    """

    _shared: dict[str, "Database"] = {}

    @classmethod
    def shared(cls, url: str, *, name: str = "db", workers: int = 4) -> "Database":
        database = cls._shared.get(url)
        if database is None:
            database = cls._shared[url] = cls(url, workers=workers, name=name)
        return database

    def __init__(self, url: str, *, workers: int = 4, name: str = "db"):
        self.url = url
        self.name = name
        self.engine = _make_engine(url)
        self.is_sqlite = url.startswith("sqlite")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"db-{name}")
        # SQLite has one writer at a time. Queueing writes on one thread of our own is much
        # faster than letting threads contend for the lock: SQLite's busy handler sleeps in
        # steps of milliseconds. Other databases take concurrent writes from the pool.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"db-{name}-w") \
            if self.is_sqlite else self._pool
        # For running on the event loop itself: connections that never wait for a lock (see the module
        # doc), one per loop thread, kept open between transactions (a pool checkout and its reset cost
        # as much as a small query).
        self._loop_engine = _make_engine(url, busy_timeout_ms=0) if self.is_sqlite else None
        self._loop_connections = threading.local()

    def _run(self, write: bool, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        for attempt in range(DISCONNECT_RETRIES + 1):
            committing: list[bool] = []
            try:
                with self.engine.connect() as connection:
                    return self._transaction(connection, write, fn, args, kwargs, committing)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated or committing or attempt == DISCONNECT_RETRIES:
                    raise
                LOG.warning("%s: the database dropped the connection of a transaction (%s); running it again",
                            self.name, str(exc.orig).strip().splitlines()[0] if exc.orig else exc)
        raise AssertionError("unreachable")

    def _transaction(self, connection: sa.Connection, write: bool, fn: Callable[..., T], args: tuple,
                     kwargs: dict, committing: list[bool] | None = None) -> T:
        if self.is_sqlite:
            connection.info["begin_mode"] = "IMMEDIATE" if write else "DEFERRED"
        with connection.begin():
            session = _LazySession(connection, self.is_sqlite)
            try:
                result = fn(session, *args, **kwargs)
                session.finish()   # ORM changes flushed inside the transaction, as Session.commit() does
                if committing is not None:
                    committing.append(True)  # leaving the block commits
                return result
            finally:
                session.close()

    def _loop_connection(self) -> sa.Connection:
        connection = getattr(self._loop_connections, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self._loop_connections.connection = self._loop_engine.connect()
        return connection

    def _run_on_loop(self, write: bool, fn: Callable[..., T], args: tuple, kwargs: dict) -> tuple[bool, Any]:
        """(True, result) when SQLite ran ``fn`` without waiting; (False, None) when the file was locked.

        A locked file fails the transaction before it changes anything (it rolls back), so running the
        same function again on a worker thread is safe.
        """
        if self._loop_engine is None:
            return False, None
        connection = self._loop_connection()
        try:
            return True, self._transaction(connection, write, fn, args, kwargs)
        except sa.exc.DBAPIError as exc:
            if "database is locked" in str(exc.orig):
                return False, None
            if not isinstance(exc, sa.exc.IntegrityError):  # a constraint violation leaves it healthy
                self._loop_connections.connection = None  # start the next transaction on a fresh connection
                connection.close()
            raise

    def read_now(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """``read`` when it can finish without waiting (SQLite, file not locked): (True, result); else (False, None)."""
        return self._run_on_loop(False, fn, args, kwargs)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        done, result = self._run_on_loop(False, fn, args, kwargs)
        if done:
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._run(False, fn, args, kwargs))

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        done, result = self._run_on_loop(True, fn, args, kwargs)
        if done:
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: self._run(True, fn, args, kwargs))

    def run_sync(self, fn: Callable[..., T], *args: Any, write: bool = True, **kwargs: Any) -> T:
        """For start-up code and admin commands that run before the loop."""
        return self._run(write, fn, args, kwargs)

    def close(self) -> None:
        if Database._shared.get(self.url) is self:
            del Database._shared[self.url]
        self._pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        self.engine.dispose()
        if self._loop_engine is not None:
            connection = getattr(self._loop_connections, "connection", None)
            if connection is not None:
                connection.close()
            self._loop_engine.dispose()


class Base(DeclarativeBase):
    """Each service declares its own subclass so metadata stays per database."""


# How long a process waits for another one's migration of the same database before it gives up.
MIGRATION_LOCK_TIMEOUT = 300.0
# PostgreSQL advisory locks are per database: one key serves every store.
_PG_MIGRATION_LOCK = zlib.crc32(b"kilonova-migrate")


@contextlib.contextmanager
def migration_lock(connection: sa.Connection, timeout: float = MIGRATION_LOCK_TIMEOUT):
    """Hold this database's migration lock for the ``with`` block.

    ``connection`` must have no transaction open: the lock is taken and released outside the
    migration's transaction, so the next holder reads what the migration committed.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        connection.exec_driver_sql("RESET lock_timeout")
        release = sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK}
    elif dialect in ("mysql", "mariadb"):
        # Named locks are server-wide: the database's name makes the lock this database's own.
        name = f"kilonova.migrate.{connection.exec_driver_sql('SELECT DATABASE()').scalar()}"[:64]
        if connection.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"),
                              {"name": name, "timeout": int(timeout)}).scalar() != 1:
            raise DBError(f"another process has been migrating this database for over {timeout:.0f}s")
        release = sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name}
    else:
        path = connection.engine.url.database
        with _file_lock(Path(path + ".migrate-lock"), timeout) if path not in (None, "", ":memory:") \
                else contextlib.nullcontext():
            yield
        return
    connection.commit()
    try:
        yield
    finally:
        try:
            connection.rollback()
            connection.execute(*release)
            connection.commit()
        except Exception:  # noqa: BLE001 - a session lock goes with its connection: drop it, do not pool it
            connection.invalidate()


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float):
    with open_private(path, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DBError(f"another process has held {path} for over {timeout:.0f}s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(database: Database, migrations_dir: str | os.PathLike, metadata: sa.MetaData,
            revision: str = "head") -> None:
    """Upgrade ``database`` to ``revision`` (the newest in ``migrations_dir`` by default), under its lock."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    with database.engine.connect() as connection, migration_lock(connection), connection.begin():
        cfg.attributes["connection"] = connection
        cfg.attributes["target_metadata"] = metadata
        command.upgrade(cfg, revision)


def run_migrations_from_env() -> None:
    """Body of every service's Alembic ``env.py``: migrate on the connection we were handed."""
    from alembic import context

    cfg = context.config
    connection = cfg.attributes.get("connection")
    metadata = cfg.attributes.get("target_metadata")
    if connection is None:
        engine = sa.create_engine(cfg.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
