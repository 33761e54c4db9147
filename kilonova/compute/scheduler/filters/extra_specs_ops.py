"""How a requirement string (a flavor extra spec's value) matches a host's value, as upstream's
``extra_specs_ops``: ``= 4`` (at least, as numbers), ``== 4``, ``!= 4``, ``>= 4``, ``<= 4``,
``s== x`` and the other string comparisons, ``<in> x`` (a substring), ``<all-in> x y`` and
``<or> a <or> b``; a requirement without an operator must equal the value."""
from __future__ import annotations

import operator
from typing import Any, Callable


def _numbers(compare: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    return lambda value, wanted: compare(float(value), float(wanted))


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": _numbers(operator.ge), "==": _numbers(operator.eq), "!=": _numbers(operator.ne),
    ">=": _numbers(operator.ge), "<=": _numbers(operator.le),
    "s==": operator.eq, "s!=": operator.ne, "s<": operator.lt, "s<=": operator.le,
    "s>": operator.gt, "s>=": operator.ge,
    "<in>": lambda value, wanted: wanted in value,
    "<all-in>": lambda value, wanted: all(word in value for word in wanted),
}


def match(value: Any, requirement: str) -> bool:
    words = str(requirement).split()
    op = words.pop(0) if words else None
    if op != "<or>" and op not in _OPS:
        return value == requirement
    if value is None or not words:
        return False
    if op == "<or>":   # v1 <or> v2 <or> v3: the choices sit at every other word
        return value in words[::2]
    try:
        return _OPS[op](value, words if op == "<all-in>" else words[0])
    except (TypeError, ValueError):   # not a number where one is compared as a number
        return False
