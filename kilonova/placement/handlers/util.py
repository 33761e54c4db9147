"""What every Placement handler shares: body and query validation, policy marks, headers."""
from __future__ import annotations

import asyncio
import json
import random
import uuid as uuidlib
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Callable

import jsonschema
from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import Handler, HTTPError, decode_json, read_body
from kilonova.common import fastcheck
from kilonova.placement import accept, errors, microversion
from kilonova.placement.objects import capacity

# Bodies check a uuid's format as oslo.utils' is_uuid_like (any case, braces and urn: prefix allowed);
# query strings with jsonschema's own check (dashes where a uuid has them), as upstream.
_body_checker = jsonschema.FormatChecker()
_query_checker = jsonschema.FormatChecker()


@_body_checker.checks("uuid")
def _is_uuid_like(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        canonical = str(uuidlib.UUID(value)).replace("-", "")
    except ValueError:
        return False
    stripped = value.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "").lower()
    return canonical == stripped


def is_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return len(value.replace("-", "")) == 32


def normalize_uuid(value: str) -> str:
    """The canonical form of a UUID; a value that only looks like one (36 hex digits and dashes, as upstream's
    pattern lets through) is kept as given, so that it names no provider, as upstream."""
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        return value


def policy(name: str) -> Callable[[Handler], Handler]:
    """Name the policy rule a handler enforces (admin or service role, upstream's default)."""
    def decorator(handler: Handler) -> Handler:
        handler.policy = name  # type: ignore[attr-defined]
        return handler
    return decorator


def json_only(handler: Handler) -> Handler:
    """A GET that answers only JSON: 406 for a client refusing it, checked (as upstream's decorator) after
    the microversion is negotiated and the route's version range, before the policy."""
    handler.json_only = "after version"  # type: ignore[attr-defined]
    return handler


def json_only_before_version(handler: Handler) -> Handler:
    """``json_only`` where upstream checks the Accept header before the route's version range too."""
    handler.json_only = "before version"  # type: ignore[attr-defined]
    return handler


def state(request: Request):
    """The PlacementService behind this app (its database and configuration)."""
    return request.state.app.state["placement"]


class _TrackedDatabase:
    """The Placement database, telling the capacity index about every write made in this process."""

    def __init__(self, database):
        self.database = database

    async def read(self, fn, *args, **kwargs):
        return await self.database.read(fn, *args, **kwargs)

    async def write(self, fn, *args, **kwargs):
        """One write transaction, tried again (as oslo.db's retry does upstream) on a deadlock."""
        try:
            for attempt in range(DEADLOCK_RETRIES):
                try:
                    return await self.database.write(fn, *args, **kwargs)
                except sa_exc.DBAPIError as error:
                    if not _deadlock(error) or attempt == DEADLOCK_RETRIES - 1:
                        raise
                await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        finally:
            capacity.written(self.database.engine)


DEADLOCK_RETRIES = 10


def _deadlock(error: Exception) -> bool:
    """MySQL/MariaDB 1213 (deadlock) or 1205 (lock wait timeout); PostgreSQL 40P01 or 40001."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) in ("40P01", "40001"):
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in (1213, 1205)


def db(request: Request) -> _TrackedDatabase:
    return _TrackedDatabase(state(request).db)


def want(request: Request, version: str) -> bool:
    return microversion.want(request, version)


async def body(request: Request, schema: dict) -> Any:
    """The validated JSON body: 415 for another media type, 400 for malformed or invalid JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/json":   # case-sensitive, as upstream
        shown = content_type or "None"
        raise HTTPError(415, f"The media type {shown} is not supported, use application/json")
    data = await decode_json(await read_body(request), malformed="Malformed JSON")
    validate(data, schema, "JSON does not validate")
    return data


# (validator, quick check of valid documents (fastcheck.py) or None) per schema.
_validators: dict[str, tuple[jsonschema.protocols.Validator, Any]] = {}
# The same validators by the identity of the schema object (the handlers' schemas are module constants):
# serialising the schema into its key cost more than validating a claim's body. Bounded, for schemas
# built per request.
_by_schema: dict[tuple[int, bool], tuple[dict, tuple[jsonschema.protocols.Validator, Any]]] = {}
_BY_SCHEMA_MAX = 256


def validate(data: Any, schema: dict, prefix: str, *, query: bool = False) -> None:
    """A 400 naming ``prefix`` and what is wrong when ``data`` does not match ``schema``."""
    error = schema_error(data, schema, query=query)
    if error is not None:
        raise HTTPError(400, f"{prefix}: {error}")


def schema_error(data: Any, schema: dict, *, query: bool = False) -> str | None:
    """What is wrong with ``data`` by ``schema``, None when nothing is: jsonschema's best match in the
    library's own words (message, the keyword and schema part that failed, the instance), as upstream
    reports it. Validators are built once per schema (building one costs far more than using it)."""
    known = _by_schema.get((id(schema), query))
    if known is not None and known[0] is schema:
        validator, quick = known[1]
    else:
        key = json.dumps(schema, sort_keys=True) + str(query)
        compiled = _validators.get(key)
        if compiled is None:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            checker = _query_checker if query else _body_checker
            compiled = _validators[key] = (cls(schema, format_checker=checker),
                                           fastcheck.compile_check(schema, checker))
        if len(_by_schema) >= _BY_SCHEMA_MAX:
            _by_schema.clear()
        _by_schema[(id(schema), query)] = (schema, compiled)
        validator, quick = compiled
    if quick is not None and quick(data):   # valid for sure: jsonschema's walk is only needed to say why not
        return None
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    return None if error is None else str(error)


def query(request: Request, schema: dict) -> dict[str, str]:
    """Query parameters (last value of each) validated against ``schema``."""
    params = dict(request.query_params)
    validate(params, schema, "Invalid query string parameters", query=True)
    return params


def check_accept(request: Request) -> None:
    """406 unless the Accept header takes JSON (absent, ``*/*`` or unparsable headers do)."""
    if not accept.acceptable_offers(errors.effective_accept(request), ("application/json",)):
        raise HTTPError(406, "Only application/json is provided")


def json_response(request: Request, data: Any, status: int = 200, *, modified: datetime | None = None,
                  headers: dict[str, str] | None = None, cache: bool | None = None) -> Response:
    """``cache``: send the 1.15 cache headers (default: for a GET or when ``modified`` is given)."""
    response = Response(json.dumps(data), status_code=status, media_type="application/json", headers=headers)
    if cache or (cache is None and (request.method in ("GET", "HEAD") or modified is not None)):
        cache_headers(request, response, modified)
    return response


def cache_headers(request: Request, response: Response, modified: datetime | None, *, dated: bool = True) -> None:
    """From 1.15: Last-Modified (the newest change, else now; none when not ``dated``) and
    Cache-Control: no-cache."""
    if not want(request, "1.15"):
        return
    if dated:
        when = modified.replace(tzinfo=timezone.utc) if modified else datetime.now(timezone.utc)
        response.headers["last-modified"] = format_datetime(when, usegmt=True)
    response.headers["cache-control"] = "no-cache"


def now() -> datetime:
    """UTC, naive as the database's timestamps."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def location(request: Request, path: str) -> dict[str, str]:
    """A Location header as upstream's webob sends it: an absolute URL."""
    url = request.url
    return {"location": f"{url.scheme}://{url.netloc}{request.state.app.prefix}{path}"}


def no_content() -> Response:
    return Response(status_code=204)


def newest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
