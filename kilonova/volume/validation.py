"""Request bodies checked against Cinder's JSON Schemas (kilonova/volume/schemas/) with the shared
validation module (kilonova/common/validation.py), each refusal a 400 worded as Cinder words it.

As upstream: draft 4, the bounds also read numbers written as strings (``"size": "10"``), and the first error
met in the schema's order is the one answered: "Invalid input for field/attribute <last path element>.
Value: <value>. <jsonschema's message>", or jsonschema's message alone for the body itself. Some of
Cinder's formats answer with their own error instead (a name too long, a bad status, a quota key): they
raise ``Refusal`` with that text.
"""
from __future__ import annotations

import uuid
from typing import Any

import jsonschema
from jsonschema import Draft4Validator
from starlette.requests import Request

from kilonova.common import validation as common_validation
from kilonova.common.http import HTTPError
from kilonova.volume.schemas import parameters, quotas
from kilonova.volume.versions import MIN_VERSION


class Refusal(Exception):
    """A format's own 400 text."""


_DIALECT = common_validation.reading_numeric_strings(Draft4Validator)
FORMATS = jsonschema.FormatChecker(formats=())


def _checks(name: str):
    return FORMATS.checks(name, raises=Refusal)


@_checks("uuid")
def _uuid(value: Any) -> bool:
    """oslo's is_uuid_like: any spelling ``uuid.UUID`` reads (dashes, case, braces)."""
    if not isinstance(value, str):
        return True
    try:
        return uuid.UUID(value).hex == value.lower().replace("urn:", "").replace("uuid:", "").strip(
            "{}").replace("-", "")
    except ValueError:
        return False


@_checks("name")
def _name(value: Any) -> bool:
    if isinstance(value, str) and not value.strip():
        raise Refusal("An invalid 'name' value was provided. " + (
            "The 'name' can not be None." if not value else "The 'name' can not be empty."))
    return True


def _length(what: str):
    def check(value: Any) -> bool:
        if isinstance(value, str) and len(value.strip()) > 255:
            raise Refusal(f"Invalid input received: {what} has {len(value.strip())} characters, more than 255.")
        return True
    return check


FORMATS.checks("name_non_mandatory_remove_white_spaces", raises=Refusal)(_length("name"))
FORMATS.checks("description_non_mandatory_remove_white_spaces", raises=Refusal)(_length("description"))


@_checks("printable")
def _printable(value: Any) -> bool:
    """Upstream's description pattern (``parameters.printable_pattern()``), without building it; ``validate``
    words a refusal with it."""
    return not isinstance(value, str) or parameters.is_printable_text(value)


@_checks("progress")
def _progress(value: Any) -> bool:
    if not value:
        return True
    try:
        percent = int(value[:-1])
    except (TypeError, ValueError):
        raise Refusal("Invalid input received: progress must be an integer percentage") from None
    if not 0 <= percent <= 100 or value[-1] != "%":
        raise Refusal("Invalid input received: progress must be an integer percentage between 0 and 100")
    return True


VOLUME_STATUSES = ("creating", "available", "deleting", "error", "error_deleting", "error_managing", "managing",
                   "attaching", "in-use", "detaching", "maintenance", "restoring-backup", "error_restoring",
                   "reserved", "awaiting-transfer", "backing-up", "error_backing-up", "error_extending",
                   "downloading", "uploading", "retyping", "extending")
ATTACH_STATUSES = ["attached", "detached"]
MIGRATION_STATUSES = ("migrating", "error", "success", "completing", "none", "starting")


def _status(what: str, allowed):
    def check(value: Any) -> bool:
        if isinstance(value, str) and value and value.lower() not in allowed:
            raise Refusal(f"{what}: {value} is invalid, valid statuses are: {allowed}.")
        return True
    return check


FORMATS.checks("volume_status", raises=Refusal)(_status("Volume status", VOLUME_STATUSES))
FORMATS.checks("volume_attach_status", raises=Refusal)(_status("Volume attach status", ATTACH_STATUSES))
FORMATS.checks("volume_migration_status", raises=Refusal)(_status("Volume migration status", MIGRATION_STATUSES))


@_checks("validate_volume_reset_body")
def _reset_body(value: Any) -> bool:
    if isinstance(value, dict) and not any(value.get(k) for k in ("status", "attach_status", "migration_status")):
        raise Refusal("Must specify 'status', 'attach_status' or 'migration_status' for update.")
    return True


@_checks("quota_set")
def _quota_set(value: Any) -> bool:
    """Known keys only; each limit a whole number from -1 up (oslo's validate_integer's words)."""
    if not isinstance(value, dict):
        return True
    unknown = []
    for key, limit in value.items():
        if key in quotas.NOT_QUOTAS:
            continue
        if key not in quotas.RESOURCES:
            unknown.append(key)
            continue
        try:
            number = int(str(limit))
        except ValueError:
            raise Refusal(f"{key} must be an integer") from None
        if number < -1:
            raise Refusal(f"{key} must be >= -1")
        if number > parameters.MAX_INT:
            raise Refusal(f"{key} must be <= {parameters.MAX_INT}")
    if unknown:
        raise Refusal(f"Invalid input received: Bad key(s) in quota set: {', '.join(unknown)}")
    return True


def validate(request: Request, body: Any, schema: dict | tuple) -> Any:
    """``body`` checked against ``schema``, or against the one of a ``((microversion, schema), ...)`` table
    that the request's microversion selects; 400 as Cinder for the first thing it refuses."""
    if isinstance(schema, tuple):
        asked = getattr(request.state, "volume_version", MIN_VERSION)
        schema = [chosen for since, chosen in schema if since <= asked][-1]
    error = common_validation.first_error(schema, body, dialect=_DIALECT, format_checker=FORMATS)
    if error is None:
        return body
    if isinstance(error.cause, Refusal):
        raise HTTPError(400, str(error.cause))
    message = error.message
    if error.validator == "format" and error.validator_value == "printable":
        message = f"{error.instance!r} does not match {parameters.printable_pattern()!r}"   # the pattern's words
    if error.path:
        raise HTTPError(400, f"Invalid input for field/attribute {error.path[-1]}. Value: {error.instance}. "
                             f"{message}")
    raise HTTPError(400, message)


def is_true(value: Any) -> bool:
    """A schema-checked boolean (``parameters.BOOLEAN``) read as oslo's bool_from_string reads it."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "on", "yes", "y", "t"))


def stripped(value: str | None) -> str | None:
    """Names and descriptions are kept without their outer spaces, as Cinder keeps them."""
    return value.strip() if isinstance(value, str) else value
