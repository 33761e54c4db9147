"""Prepared statements on SQLite's cursor give what SQLAlchemy's execution path gives, and fall back to it."""
from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest
import sqlalchemy as sa

from kilonova.common import prepared
from kilonova.common.db import Database

_META = sa.MetaData()
_T = sa.Table("things", _META, sa.Column("id", sa.Integer, primary_key=True),
              sa.Column("name", sa.String(20), unique=True), sa.Column("state", sa.String(20), nullable=True),
              sa.Column("flag", sa.Boolean, default=False), sa.Column("data", sa.JSON, nullable=True),
              sa.Column("at", sa.DateTime, nullable=True), sa.Column("deleted", sa.Integer, default=0))

_BY_NAME = sa.select(_T.c.id, _T.c.name.label("label"), _T.c.state, _T.c.flag, _T.c.data, _T.c.at).where(
    _T.c.name == sa.bindparam("name"), _T.c.deleted == 0)
_IN_STATES = sa.select(_T.c.name).where(_T.c.state.in_(sa.bindparam("states", expanding=True))).order_by(_T.c.id)
_UPDATE = _T.update().where(_T.c.id == sa.bindparam("row_id"))  # SET: the params
_GUARDED = _UPDATE.where(sa.or_(_T.c.state.in_(sa.bindparam("expected", expanding=True)), _T.c.state.is_(None)))
_DELETE_RETURNING = _T.delete().where(_T.c.state.in_(sa.bindparam("states", expanding=True))).returning(_T.c.at)
_STATEMENTS = (_BY_NAME, _IN_STATES, _UPDATE, _GUARDED, _DELETE_RETURNING)
_WHEN = datetime(2026, 12, 6, 18, 30, 1, 123456)


def _database(path) -> Database:
    database = Database(f"sqlite:///{path}", name="t")
    _META.create_all(database.engine)
    for row in ({"name": "a", "state": "up", "flag": True, "data": {"k": [1, 2]}, "at": _WHEN},
                {"name": "b", "state": None, "data": None}, {"name": "c", "state": "down", "data": ["x"], "deleted": 1}):
        database.run_sync(lambda s, row=row: s.execute(_T.insert(), row))
    return database


@pytest.fixture
def db(tmp_path):
    database = _database(tmp_path / "t.sqlite")
    yield database
    database.close()


def _both(tmp_path, fn, statements=_STATEMENTS):
    """fn's answer through SQLAlchemy, then with the statements prepared, each on a database of its own."""
    answers = []
    for fast in (False, True):
        for statement in statements:
            prepared._PREPARED.pop(id(statement), None)
            if fast:
                prepared.prepared(statement)
        database = _database(tmp_path / f"{fast}.sqlite")
        try:
            answers.append(database.run_sync(fn))
        finally:
            database.close()
            for statement in statements:
                prepared._PREPARED.pop(id(statement), None)
    return answers


def test_rows_mappings_scalars_and_types_are_what_sqlalchemy_returns(tmp_path):
    def read(session):
        row = session.execute(_BY_NAME, {"name": "a"}).first()
        return (row._asdict(), row.label, dict(session.execute(_BY_NAME, {"name": "a"}).mappings().first()),
                session.execute(_BY_NAME, {"name": "c"}).first(), session.scalar(_BY_NAME, {"name": "b"}),
                session.scalars(_IN_STATES, {"states": ["up", "down"]}).all(),
                session.execute(_IN_STATES, {"states": []}).all(), session.execute(_IN_STATES, {"states": ["up"]}).all())

    plain, fast = _both(tmp_path, read)
    assert fast == plain
    assert fast[0] == {"id": 1, "label": "a", "state": "up", "flag": True, "data": {"k": [1, 2]}, "at": _WHEN}
    assert fast[3] is None  # deleted == 0 is the statement's own bound value
    assert fast[5] == ["a", "c"]


def test_updates_convert_their_values_and_count_their_rows(tmp_path):
    def write(session):
        counts = [session.execute(_UPDATE, {"row_id": 2, "data": {"n": None}, "at": _WHEN, "flag": True}).rowcount,
                  session.execute(_GUARDED, {"row_id": 1, "expected": ["down"], "state": "x"}).rowcount,
                  session.execute(_GUARDED, {"row_id": 1, "expected": ["down", "up"], "state": "x"}).rowcount,
                  session.execute(_GUARDED, {"row_id": 2, "expected": [], "data": None}).rowcount]
        rows = [tuple(row) for row in session.execute(sa.select(_T).order_by(_T.c.id))]
        return counts, rows, session.scalars(_DELETE_RETURNING, {"states": ["x", "down"]}).all()

    plain, fast = _both(tmp_path, write)
    assert fast == plain
    assert fast[0] == [1, 0, 1, 1]
    assert fast[2] == [_WHEN, None]


_INSERT = _T.insert()


def test_inserts_with_every_default_given_run_alone_or_many_and_give_their_new_key(tmp_path, monkeypatch):
    full = {"state": "new", "flag": True, "data": {"a": 1}, "at": _WHEN, "deleted": 0}

    def write(session):
        keys = [session.execute(_INSERT, {"name": "d", **full}).inserted_primary_key[0],
                session.execute(_INSERT, {"id": 40, "name": "e", **full}).inserted_primary_key[0]]
        many = session.execute(_INSERT, [{"name": n, **full, "state": n} for n in ("f", "g")]).rowcount
        short = session.execute(_INSERT, {"name": "h"}).inserted_primary_key[0]   # defaults: SQLAlchemy's
        return keys, many, short, [tuple(row) for row in session.execute(sa.select(_T).order_by(_T.c.id))]

    ran = []
    real = prepared.execute
    monkeypatch.setattr(prepared, "execute", lambda *args: ran.append(real(*args)) or ran[-1])
    plain, fast = _both(tmp_path, write, _STATEMENTS + (_INSERT,))
    assert fast == plain
    assert fast[:3] == ([4, 40], 2, 43)
    assert fast[3][-1][1:4] == ("h", None, False) and fast[3][-1][-1] == 0   # the columns' own defaults
    # on the cursor: the two inserts given every default, the two-row one (one executemany); not "h"
    assert [result is not None for result in ran] == [True, True, True, False]
    database = _database(tmp_path / "dup.sqlite")
    prepared.prepared(_INSERT)
    try:
        with pytest.raises(sa.exc.IntegrityError):
            database.run_sync(lambda s: s.execute(_INSERT, [{"name": "a", **full}, {"name": "z", **full}]))
    finally:
        prepared._PREPARED.pop(id(_INSERT), None)
        database.close()


def test_errors_are_sqlalchemys_and_missing_parameters_fall_back_to_its_message(db):
    prepared.prepared(_UPDATE)
    try:
        with pytest.raises(sa.exc.IntegrityError):
            db.run_sync(lambda s: s.execute(_UPDATE, {"row_id": 2, "name": "a"}))
        with pytest.raises(sa.exc.StatementError, match="row_id"):
            db.run_sync(lambda s: s.execute(_UPDATE, {"state": "x"}))
    finally:
        prepared._PREPARED.pop(id(_UPDATE), None)


def test_a_transaction_with_orm_work_and_other_databases_use_sqlalchemy(db, monkeypatch):
    prepared.prepared(_BY_NAME)
    calls = []
    real = prepared.execute
    monkeypatch.setattr(prepared, "execute", lambda *args: calls.append(args) or real(*args))
    try:
        assert db.run_sync(lambda s: s.execute(_BY_NAME, {"name": "a"}).first().id) == 1
        assert len(calls) == 1

        def with_orm(session):
            session._orm()  # what the first add/get/ORM select does
            return session.execute(_BY_NAME, {"name": "a"}).first().id

        assert db.run_sync(with_orm) == 1
        assert len(calls) == 1, "the ORM session may hold changes to flush first: SQLAlchemy runs it"
    finally:
        prepared._PREPARED.pop(id(_BY_NAME), None)


async def test_a_locked_file_still_sends_the_write_to_the_worker_threads(db, tmp_path):
    prepared.prepared(_UPDATE)
    holder = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        done, _ = db._run_on_loop(True, lambda s: s.execute(_UPDATE, {"row_id": 1, "state": "x"}).rowcount, (), {})
        assert not done, "a locked file on the loop means: go to the worker threads"
        holder.execute("COMMIT")
        assert await db.write(lambda s: s.execute(_UPDATE, {"row_id": 1, "state": "x"}).rowcount) == 1
    finally:
        holder.close()
        prepared._PREPARED.pop(id(_UPDATE), None)
