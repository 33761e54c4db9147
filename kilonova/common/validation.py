"""Checking request bodies against JSON Schemas, for every API: one cache of compiled validators, a quick
yes for documents plain compiled checks can see are valid (kilonova/common/fastcheck.py, also Placement's),
and otherwise the error jsonschema judges the most relevant (its ``best_match``).

Each API words its 400 as its upstream does (Nova's "Invalid input for field/attribute ...", Keystone's
"Invalid input for field ...", Glance's "Provided object does not match schema ...", Cinder's "Invalid
input for field/attribute ..."), so each keeps a small function that turns the error into its message;
what a schema accepts is decided here, the same way everywhere. Most answer jsonschema's most relevant
error; Cinder answers the first one met in the schema's order (its validator raises it), hence
``first_error``.
"""
from __future__ import annotations

import unicodedata
from typing import Any

import jsonschema

from kilonova.common import fastcheck

# Compiled validators (and quick checks, kilonova/common/fastcheck.py) by the identity of their schema and
# format checker. Bounded: a caller that builds its schema per request must not make the cache, and the
# schemas it keeps alive, grow with every request.
_CACHE: dict[tuple[int, int, int], tuple[dict, Any, Any]] = {}
_CACHE_SIZE = 512


def printable(char: str) -> bool:
    """What Nova's and Cinder's name and description checks call printable: letters, marks, numbers,
    punctuation, symbols and spaces; no control, format, private-use or unassigned code point, no line or
    paragraph separator."""
    category = unicodedata.category(char)
    return not category.startswith("C") and (not category.startswith("Z") or category == "Zs")


def _compiled(schema: dict, dialect: type | None, format_checker: Any) -> tuple[Any, Any]:
    key = (id(schema), id(dialect), id(format_checker))
    cached = _CACHE.get(key)
    if cached is not None and cached[0] is schema:
        return cached[1], cached[2]
    cls = dialect or jsonschema.validators.validator_for(schema)
    compiled = cls(schema, format_checker=format_checker)
    # The quick checks know the standard keywords, and the bounds of ``reading_numeric_strings``; a dialect
    # that gives a keyword another meaning is judged by jsonschema alone.
    numeric_strings = getattr(cls, "READS_NUMERIC_STRINGS", False)
    quick = fastcheck.compile_check(schema, format_checker, numeric_strings=numeric_strings) \
        if numeric_strings or _standard(cls) else None
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[key] = (schema, compiled, quick)
    return compiled, quick


def _as_number(value: Any) -> Any:
    """``value`` as Nova's and Cinder's validators hand it to a bound: int() of it if that works ("0" -> 0,
    1.5 -> 1), else float() ("1.5" -> 1.5), else None (no bound applies: a word, null, an object)."""
    for convert in (int, float):
        try:
            return convert(value)
        except (TypeError, ValueError, OverflowError):
            continue
    return None


def reading_numeric_strings(dialect: type) -> type:
    """``dialect`` whose ``minimum`` and ``maximum`` also judge numbers written as strings, as Nova's and
    Cinder's validators do: their integer parameters take "5" as well as 5, and "0" is less than the minimum
    of 1 (jsonschema alone lets any string past a bound)."""
    def bound(keyword: str):
        stock = dialect.VALIDATORS[keyword]

        def check(validator, limit, instance, schema):
            number = _as_number(instance)
            if number is not None:
                yield from stock(validator, limit, number, schema)
        return check

    cls = jsonschema.validators.extend(dialect, {"minimum": bound("minimum"), "maximum": bound("maximum")})
    cls.READS_NUMERIC_STRINGS = True
    return cls


def _standard(cls: type) -> bool:
    stock = jsonschema.validators.validator_for(cls.META_SCHEMA, default=None)
    return stock is not None and all(stock.VALIDATORS.get(keyword) is check
                                     for keyword, check in cls.VALIDATORS.items())


def validator(schema: dict, *, dialect: type | None = None, format_checker: Any = None) -> Any:
    """The compiled validator of ``schema`` (draft of ``dialect``, else the schema's ``$schema``, else the
    latest), built once."""
    return _compiled(schema, dialect, format_checker)[0]


def best_error(schema: dict, instance: Any, *, dialect: type | None = None,
               format_checker: Any = None) -> jsonschema.ValidationError | None:
    """What ``schema`` refuses in ``instance`` (the most relevant error), or None when it accepts it. A
    document the quick checks can see is valid skips jsonschema's walk; jsonschema judges the rest."""
    compiled, quick = _compiled(schema, dialect, format_checker)
    if quick is not None and quick(instance):
        return None
    return jsonschema.exceptions.best_match(compiled.iter_errors(instance))


def first_error(schema: dict, instance: Any, *, dialect: type | None = None,
                format_checker: Any = None) -> jsonschema.ValidationError | None:
    """The first error jsonschema meets in ``instance`` (keywords in the schema's order), or None: the
    one an API that raises on the first error (Cinder's) words."""
    compiled, quick = _compiled(schema, dialect, format_checker)
    if quick is not None and quick(instance):
        return None
    return next(iter(compiled.iter_errors(instance)), None)
