"""``created_at`` / ``updated_at`` list filters, as Glance reads them: ``[op:]ISO-8601 time``.

The operator is one of eq, neq, gt, gte, lt, lte (eq when none is given, or when the
colons are the time's own); an unknown operator or a time that does not parse is a 400.
"""
from __future__ import annotations

import operator
from datetime import datetime, timezone
from typing import Any, Callable

from kilonova.common.http import bad_request

TIME_FILTERS = ("created_at", "updated_at")
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "neq": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
    "lte": operator.le}


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def parse(key: str, expression: str) -> tuple[Callable[[Any, Any], bool], datetime]:
    """(comparison, UTC time) of one filter's value."""
    name, colon, rest = expression.partition(":")
    if colon and _parse_time(expression) is None:
        op, text = name, rest
    else:
        op, text = "eq", expression
    if op not in OPERATORS:
        raise bad_request("Unable to filter on a unknown operator.")
    moment = _parse_time(text)
    if moment is None:
        raise bad_request(f"Invalid time format for {key}.")
    return OPERATORS[op], moment


def from_query(params) -> dict[str, tuple[Callable[[Any, Any], bool], datetime]]:
    """The request's time filters, parsed (400 for a bad one) before anything is read."""
    return {key: parse(key, params[key]) for key in TIME_FILTERS if params.get(key) is not None}


def filtered(images: list[dict], filters: dict[str, tuple[Callable[[Any, Any], bool], datetime]]) -> list[dict]:
    """The images whose ``created_at`` / ``updated_at`` pass ``filters`` (from ``from_query``)."""
    for key, (compare, moment) in filters.items():
        images = [image for image in images if image.get(key) is not None
                  and compare(_naive_utc(image[key]), moment)]
    return images


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
