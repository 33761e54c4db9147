"""Hot prebuilt statements run straight on SQLite's cursor.

SQLAlchemy's execution path (compile-cache key, parameter and result set-up, events) costs several times
what SQLite takes for a one-row statement, and every step of every server operation runs dozens of them.
A statement built once at import time with bound parameters can be marked ``prepared(statement)``: on a
SQLite connection ``Database`` then compiles it once (per set of parameter names, which for an INSERT or
UPDATE are its columns), keeps the SQL text, the order of its parameters and their type conversions, and
runs it on the driver's cursor. The result is an ordinary SQLAlchemy ``Result`` (rows, mappings,
scalars, ``rowcount``) with the column types converted as SQLAlchemy would, and a driver error is raised
as SQLAlchemy's own exception class.

An INSERT given a value for every column that has a Python-side default runs there too (its new
key is the cursor's ``lastrowid``), alone or with several parameter sets of the same names (the
cursor's ``executemany``). Anything SQLAlchemy would have to do more for -- an INSERT's Python-side
defaults or RETURNING, Python-side defaults of an UPDATE, literal-execute parameters, several parameter
sets of anything else -- runs through SQLAlchemy as before, as does every statement on PostgreSQL and MariaDB and every statement of a
transaction that has opened an ORM session (which may have changes to flush first).
"""
from __future__ import annotations

import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData

# id(statement) -> (statement, names of its expanding parameters, {shape: _Form | None}); the statement is
# kept so that its id is not reused while it is registered.
_PREPARED: dict[int, tuple[Any, tuple, dict]] = {}
_MISSING = object()
_MAX_FORMS = 64


def prepared(statement: Any) -> Any:
    """Mark a statement built once (module level, bound parameters only) as run on the driver's cursor."""
    expanding = tuple(sorted({element.key for element in sa.sql.visitors.iterate(statement)
                              if isinstance(element, sa.BindParameter) and element.expanding}))
    _PREPARED[id(statement)] = (statement, expanding, {})
    return statement


def prepare(*statements: Any) -> None:
    """``prepared`` for several statements."""
    for statement in statements:
        prepared(statement)


def is_prepared(statement: Any) -> bool:
    return id(statement) in _PREPARED


class _Result(IteratorResult):
    rowcount = -1
    inserted_primary_key: tuple | None = None
    plain_rows: list | None = None


class _Form:
    """One compiled shape of a prepared statement: SQL text, where each positional parameter comes from and
    its conversion, result keys and conversions."""

    __slots__ = ("sql", "sources", "metadata", "primary_key", "plain")

    def __init__(self, compiled: Any, dialect: Any, params: dict, expanding: tuple):
        # Values the statement itself binds (``deleted == 0``): the same on every run.
        fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        # The SQL with each expanding (``IN``) parameter written out for as many values as this shape has.
        state = compiled.construct_expanded_state({**fixed, **params}, escape_names=False)
        self.sql = state.statement
        element_of = {element: (name, index) for name in expanding
                      for index, element in enumerate(state.parameter_expansion.get(name, ()))}
        # (parameter name, index in its list or None, fixed value, conversion) per position; an element of a
        # list has its list's conversion.
        processors = compiled._bind_processors
        self.sources = [(source, index, fixed.get(source, _MISSING), processors.get(source))
                        for source, index in (element_of.get(name, (name, None)) for name in state.positiontup)]
        # an INSERT's primary key columns: their values come from the parameters, or (the one left out, an
        # autoincrement key) from the cursor's lastrowid
        self.primary_key = tuple(column.key for column in compiled.statement.table.primary_key) \
            if compiled.isinsert else None
        columns = compiled._result_columns
        self.plain = False   # rows as SQLite gives them are the values (no column needs converting)
        if columns:
            processors = [column.type._cached_result_processor(dialect, None) for column in columns]
            self.plain = not any(processors)
            self.metadata = SimpleResultMetaData([column.keyname for column in columns],
                                                 _processors=processors if any(processors) else None)
        else:
            self.metadata = None


def _form(statement: Any, expanding: tuple, forms: dict, params: dict, dialect: Any) -> _Form | None:
    # The shape: the parameter names (an UPDATE's columns among them) and how many values each list has.
    lists = [params[name] for name in expanding]
    if not all(isinstance(value, (list, tuple)) for value in lists):
        return None
    key = (frozenset(params), tuple(len(value) for value in lists))
    try:
        return forms[key]
    except KeyError:
        if len(forms) >= _MAX_FORMS:
            return None  # lists of ever new lengths: SQLAlchemy's cache is bounded, so is this
    compiled = statement.compile(dialect=dialect, column_keys=sorted(params))
    # An INSERT only when the parameters give every column SQLAlchemy would compute or fetch itself.
    insert_ok = not compiled.isinsert or not (compiled.insert_prefetch or getattr(compiled, "postfetch", None)
                                              or compiled.returning or compiled.effective_returning)
    simple = dialect.paramstyle == "qmark" and insert_ok and not compiled.update_prefetch \
        and not compiled.literal_execute_params and compiled.positiontup is not None \
        and all(bind.callable is None for bind in compiled.binds.values()) \
        and {bind.key for bind in compiled.post_compile_params} == set(expanding) \
        and all(bind.expanding and not isinstance(bind.type, sa.TupleType) for bind in compiled.post_compile_params)
    try:
        form = _Form(compiled, dialect, params, expanding) if simple else None
    except sa.exc.InvalidRequestError:
        form = None  # a parameter is missing: SQLAlchemy says which
    forms[key] = form
    return form


def _values(form: _Form, params: dict) -> list | None:
    """The positional values of one parameter set, converted; None when one is missing."""
    values = []
    for name, index, fixed, processor in form.sources:
        if name in params:
            value = params[name] if index is None else params[name][index]
        elif fixed is _MISSING:
            return None  # a parameter is missing: SQLAlchemy says which
        else:
            value = fixed
        values.append(value if processor is None else processor(value))
    return values


def _execute_many(connection: sa.Connection, statement: Any, sets: Any) -> Any:
    """Several parameter sets, each with the same names, of a statement without lists or RETURNING."""
    if not sets or not all(isinstance(params, dict) for params in sets):
        return None
    _statement, expanding, forms = _PREPARED[id(statement)]
    names = sets[0].keys()
    if expanding or any(params.keys() != names for params in sets):
        return None
    form = _form(statement, expanding, forms, sets[0], connection.dialect)
    if form is None or form.metadata is not None:
        return None
    rows = [_values(form, params) for params in sets]
    if any(values is None for values in rows):
        return None
    try:
        cursor = connection.connection.driver_connection.executemany(form.sql, rows)
    except sqlite3.Error as error:
        raise sa.exc.DBAPIError.instance(form.sql, rows, error, sqlite3.Error, dialect=connection.dialect) \
            from error
    result = _Result(SimpleResultMetaData([]), iter(()))
    result.rowcount = cursor.rowcount
    return result


def execute(connection: sa.Connection, statement: Any, params: Any) -> Any:
    """Run ``statement`` (known to be prepared) on ``connection``'s SQLite cursor; None when it cannot be."""
    if params is not None and not isinstance(params, dict):
        # several parameter sets: the cursor's executemany when they are alike, else SQLAlchemy's
        return _execute_many(connection, statement, params) if isinstance(params, (list, tuple)) else None
    params = params or {}
    _statement, expanding, forms = _PREPARED[id(statement)]
    dialect = connection.dialect
    try:
        form = _form(statement, expanding, forms, params, dialect)
    except KeyError:
        return None  # a list parameter is missing: SQLAlchemy says which
    if form is None:
        return None
    values = _values(form, params)
    if values is None:
        return None
    try:
        cursor = connection.connection.driver_connection.execute(form.sql, values)
    except sqlite3.Error as error:
        raise sa.exc.DBAPIError.instance(form.sql, values, error, sqlite3.Error, dialect=dialect) from error
    if form.metadata is None:
        result = _Result(SimpleResultMetaData([]), iter(()))
        result.rowcount = cursor.rowcount
        if form.primary_key is not None:
            result.inserted_primary_key = tuple(params.get(key, cursor.lastrowid) for key in form.primary_key)
        return result
    rows = cursor.fetchall()
    result = _Result(form.metadata, iter(rows))
    result.rowcount = cursor.rowcount
    if form.plain:
        result.plain_rows = rows
    return result


def plain_rows(result: Any) -> list[tuple]:
    """A result's rows as plain tuples: SQLite's own list when the statement ran here and no column needed
    converting (no Row object made per row: for reads of thousands of rows), else each row made a tuple."""
    rows = getattr(result, "plain_rows", None)
    return rows if rows is not None else [tuple(row) for row in result]
