"""Query-string validation as upstream's ``validation.query_schema`` answers it, for the paged lists of
os-instance-actions and os-migrations (and any other list with a closed set of parameters).

Upstream turns the query into ``{name: [values]}`` and checks it with a JSON schema: an unknown name
(when the schema is closed) is refused first, then each value by its type; every message reads
``Invalid input for query parameters NAME. Value: VALUE. REASON``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from starlette.requests import Request

from kilonova.common.http import HTTPError
from kilonova.compute.api.microversions import want


@dataclass(frozen=True)
class Param:
    kind: str            # "string", "non-negative-int", "date-time"
    single: bool = True  # upstream's single_param: at most one value


STRING = Param("string")
MULTI_STRING = Param("string", single=False)  # upstream's common_query_param: repeatable, the last one counts
NON_NEGATIVE_INT = Param("non-negative-int")
DATE_TIME = Param("date-time")

_DIGITS = re.compile(r"^[0-9]*$")


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time as naive UTC (how the cell databases store times), or None when it is not one."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _problem(param: Param, value: str) -> str | None:
    if param.kind == "non-negative-int":
        if value == "":
            return f"{value!r} is too short"
        if not _DIGITS.match(value):
            return f"{value!r} does not match '^[0-9]*$'"
    elif param.kind == "date-time" and parse_time(value) is None:
        return f"{value!r} is not a 'date-time'"
    return None


def validate(request: Request, params: dict[str, Param], closed: bool = True) -> None:
    """400 with upstream's message for the first thing the schema ``params`` refuses."""
    given: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        given.setdefault(name, []).append(value)
    if closed:
        unknown = [name for name in given if name not in params]
        if unknown:
            listed = ", ".join(repr(name) for name in unknown)
            verb = "was" if len(unknown) == 1 else "were"
            raise HTTPError(400, f"Additional properties are not allowed ({listed} {verb} unexpected)")
    for name, values in given.items():
        param = params.get(name)
        if param is None:
            continue
        if param.single and len(values) > 1:
            raise HTTPError(400, f"Invalid input for query parameters {name}. Value: {values}. {values} is too long")
        for value in values:
            problem = _problem(param, value)
            if problem:
                raise HTTPError(400, f"Invalid input for query parameters {name}. Value: {value}. {problem}")


def time_range(request: Request, with_before: bool) -> tuple[datetime | None, datetime | None]:
    """``changes-since`` and (``with_before``) ``changes-before``, validated already; 400 when the range is
    backwards, with upstream's message."""
    raw_since = request.query_params.get("changes-since")
    raw_before = request.query_params.get("changes-before") if with_before else None
    since = parse_time(raw_since) if raw_since is not None else None
    before = parse_time(raw_before) if raw_before is not None else None
    if since is not None and before is not None and before < since:
        raise HTTPError(400, "The value of changes-since must be less than or equal to changes-before.")
    return since, before


def last_values(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The given ones of ``names``, each with its last value (how upstream reads a repeated filter)."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in names:
            values[name] = value
    return values


def closed_from_2102(request: Request, params: dict[str, Param] | None = None) -> None:
    """Microversion 2.102 closed the query schemas upstream had left open (a show, a sub-resource list):
    from it a parameter they do not name (none, for most) is a 400; before it, ignored."""
    if want(request, "2.102"):
        validate(request, params or {})
