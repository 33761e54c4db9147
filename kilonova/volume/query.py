"""Checks of query strings, each failure a 400 in Cinder's words (request bodies: validation.py)."""
from __future__ import annotations

import ast
import json
from datetime import datetime, timezone
from typing import Any

from kilonova.volume.errors import bad_request


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise bad_request(f"Invalid input received: {name} must be a boolean, not {value!r}")


def metadata_filter(raw: str) -> dict[str, str]:
    """``metadata`` in a query string: JSON or a Python dict literal, as clients send it."""
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    raise bad_request(f"Invalid input received: metadata filter {raw!r} is not a dictionary")


TIME_OPERATORS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
                  "lte": lambda a, b: a <= b, "eq": lambda a, b: a == b, "neq": lambda a, b: a != b}


def time_comparison(raw: str, name: str):
    """3.60's ``created_at``/``updated_at`` filter, ``op:time[,op:time]`` (gt, gte, lt, lte, eq, neq):
    a predicate on a stored time (``YYYY-MM-DDTHH:MM:SS.ffffff`` text; None never matches)."""
    checks = []
    for part in raw.split(","):
        operator, _, moment = part.strip().partition(":")
        if operator not in TIME_OPERATORS:
            raise bad_request(f"Invalid input received: {name} filter {part!r} must be <op>:<time> with op one "
                              f"of {', '.join(TIME_OPERATORS)}")
        try:
            when = datetime.fromisoformat(moment.strip().replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"Invalid input received: {name} filter time {moment!r} is not an ISO 8601 "
                              f"time") from None
        if when.tzinfo is not None:
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
        checks.append((TIME_OPERATORS[operator], when))

    def matches(stored: str | None) -> bool:
        if stored is None:
            return False
        value = datetime.fromisoformat(stored)
        return all(compare(value, when) for compare, when in checks)
    return matches
