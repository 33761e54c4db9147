"""A quick yes for valid documents: a JSON schema turned once into plain Python checks.

``jsonschema`` walks a schema anew for every document, making a validator object per subschema it
descends into: a few hundred microseconds for an inventory PUT, more than the write itself. Here a
schema made of the common keywords (those Placement's and most compute schemas use) is compiled once into
nested closures that answer
True for a document they can see is valid. They are conservative: whatever they are not sure of (a
keyword they do not know, ``1.0`` for an integer, a boolean where a number is wanted, items of mixed
types) answers False, and the caller then asks ``jsonschema``, which stays the judge and writes the
400's text. True is only ever answered where ``jsonschema`` finds no error (tests/unit/
test_placement_fastcheck.py compares the two over many documents).
"""
from __future__ import annotations

import numbers
import re
from typing import Any, Callable

Check = Callable[[Any], bool]

# Whether a keyword applies (jsonschema's is_type) is asked with isinstance, as jsonschema does; the
# "type" keyword itself accepts only the exact types JSON parsing gives.
# Keywords that never make a document invalid.
_ANNOTATIONS = frozenset(("title", "description", "$comment", "examples", "default", "$schema"))
_TYPES: dict[str, Check] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,             # 1.0 is an integer too: left to jsonschema
    "number": lambda v: type(v) in (int, float),
    "null": lambda v: v is None,
    "boolean": lambda v: type(v) is bool,
}


class Unsupported(Exception):
    """The schema has something compiled checks do not cover: jsonschema alone judges it."""


class _Options:
    """What a compilation carries down the schema: the format checker (None: formats unchecked, as
    jsonschema) and whether ``minimum``/``maximum`` also judge numbers written as strings."""
    __slots__ = ("formats", "numeric_strings")

    def __init__(self, formats: Any, numeric_strings: bool) -> None:
        self.formats = formats
        self.numeric_strings = numeric_strings


def compile_check(schema: Any, format_checker: Any = None, *, numeric_strings: bool = False) -> Check | None:
    """True-means-valid checks for ``schema``; None when the schema cannot be compiled. With
    ``numeric_strings`` the bounds are those of a dialect that reads "0" as 0 (Nova's and Cinder's): a
    string under a bound is then left to jsonschema."""
    try:
        return _compile(schema, _Options(format_checker, numeric_strings))
    except Unsupported:
        return None


def _compile(schema: Any, checker: _Options) -> Check:
    if schema is True or schema == {}:
        return lambda value: True
    if not isinstance(schema, dict):
        raise Unsupported(repr(schema))
    checks: list[Check] = []
    for keyword, argument in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        make = _KEYWORDS.get(keyword)
        if make is None:
            raise Unsupported(keyword)
        checks.append(make(argument, schema, checker))
    if len(checks) == 1:
        return checks[0]
    checks = tuple(checks)
    return lambda value: all(check(value) for check in checks)


def _type(argument, _schema, _checker) -> Check:
    names = [argument] if isinstance(argument, str) else argument
    if not isinstance(names, list) or any(name not in _TYPES for name in names):
        raise Unsupported(f"type {argument!r}")
    tests = tuple(_TYPES[name] for name in names)
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


def _properties(argument, _schema, checker) -> Check:
    subs = tuple((name, _compile(sub, checker)) for name, sub in argument.items())
    return lambda value: not isinstance(value, dict) or all(
        check(value[name]) for name, check in subs if name in value)


def _pattern_properties(argument, _schema, checker) -> Check:
    subs = tuple((re.compile(pattern), _compile(sub, checker)) for pattern, sub in argument.items())
    return lambda value: not isinstance(value, dict) or all(
        check(item) for key, item in value.items() for pattern, check in subs if pattern.search(key))


def _additional_properties(argument, schema, _checker) -> Check:
    if argument is True:
        return lambda value: True
    if argument is not False:
        raise Unsupported("additionalProperties with a schema")
    named = frozenset(schema.get("properties", {}))
    patterns = tuple(re.compile(pattern) for pattern in schema.get("patternProperties", {}))
    return lambda value: not isinstance(value, dict) or all(
        key in named or any(pattern.search(key) for pattern in patterns) for key in value)


def _required(argument, _schema, _checker) -> Check:
    names = tuple(argument)
    return lambda value: not isinstance(value, dict) or all(name in value for name in names)


def _min_properties(argument, _schema, _checker) -> Check:
    return lambda value: not isinstance(value, dict) or len(value) >= argument


def _max_properties(argument, _schema, _checker) -> Check:
    return lambda value: not isinstance(value, dict) or len(value) <= argument


def _items(argument, _schema, checker) -> Check:
    if not isinstance(argument, dict):
        raise Unsupported("items that is not one schema")
    check = _compile(argument, checker)
    return lambda value: not isinstance(value, list) or all(check(item) for item in value)


def _min_items(argument, _schema, _checker) -> Check:
    return lambda value: not isinstance(value, list) or len(value) >= argument


def _max_items(argument, _schema, _checker) -> Check:
    return lambda value: not isinstance(value, list) or len(value) <= argument


def _unique_items(argument, _schema, _checker) -> Check:
    if not argument:
        return lambda value: True
    # strings only: jsonschema's own equality (1 == 1.0, True != 1, nested values) is left to it
    return lambda value: not isinstance(value, list) or (
        all(type(item) is str for item in value) and len(set(value)) == len(value))


def _bound(compare: Callable[[Any, Any], bool]) -> Callable:
    def make(argument, _schema, options) -> Check:
        if type(argument) not in (int, float):
            raise Unsupported("a bound that is not a number")
        strings_unsure = options.numeric_strings

        def check(value) -> bool:
            if type(value) in (int, float):
                return compare(value, argument)
            if strings_unsure and type(value) is str:
                return False   # a number written as a string, maybe: jsonschema reads it
            # not a number: the bound does not apply; a boolean (an int to Python, no number to jsonschema)
            # or another kind of number is left to jsonschema
            return not isinstance(value, numbers.Number)
        return check
    return make


def _length(compare: Callable[[int, int], bool]) -> Callable:
    def make(argument, _schema, _checker) -> Check:
        return lambda value: not isinstance(value, str) or compare(len(value), argument)
    return make


def _pattern(argument, _schema, _checker) -> Check:
    pattern = re.compile(argument)
    return lambda value: not isinstance(value, str) or pattern.search(value) is not None


def _format(argument, _schema, options) -> Check:
    formats = options.formats
    if formats is None:
        return lambda value: True   # as jsonschema: formats are checked only with a checker
    return lambda value: formats.conforms(value, argument)


def _any_of(argument, _schema, checker) -> Check:
    subs = tuple(_compile(sub, checker) for sub in argument)
    return lambda value: any(check(value) for check in subs)


def _enum(argument, _schema, _checker) -> Check:
    if not all(type(item) is str for item in argument):
        raise Unsupported("an enum of other than strings")
    allowed = frozenset(argument)
    return lambda value: type(value) is str and value in allowed


_KEYWORDS: dict[str, Callable[[Any, dict, Any], Check]] = {
    "type": _type, "properties": _properties, "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties, "required": _required, "minProperties": _min_properties,
    "maxProperties": _max_properties, "items": _items, "minItems": _min_items, "maxItems": _max_items,
    "uniqueItems": _unique_items, "minimum": _bound(lambda v, b: v >= b), "maximum": _bound(lambda v, b: v <= b),
    "minLength": _length(lambda n, b: n >= b), "maxLength": _length(lambda n, b: n <= b), "pattern": _pattern,
    "format": _format, "anyOf": _any_of, "enum": _enum,
}
