"""Request body validation with JSON Schema (kilonova/common/validation.py, draft 4 as Nova's schemas), answering
400 the way Nova words it."""
from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft4Validator

from kilonova.common import validation as common_validation
from kilonova.common.http import HTTPError

_FORMATS = jsonschema.FormatChecker()
# Draft 4 with Nova's bounds: integer parameters written as strings are held to them too ("0" < 1).
_DIALECT = common_validation.reading_numeric_strings(Draft4Validator)
# Upstream's parameter_types.boolean, in its order (its 400 lists them): config_drive, force, is_public,
# forced_down, delete_on_termination, onSharedStorage, preserve_ephemeral, block_migration...
BOOLEAN = {"type": ["boolean", "string"],
           "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                    False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"]}


def is_true(value: Any) -> bool:
    """A ``BOOLEAN`` value read as oslo's bool_from_string reads it."""
    return value is True or str(value).lower() in ("true", "1", "on", "yes")


NAME_RULE = "The name must be: printable characters. Can not start or end with whitespace."


@_FORMATS.checks("name")
def _is_name(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return not (value[:1].isspace() or value[-1:].isspace()) and all(map(common_validation.printable, value))


def validate(schema: dict, body: Any) -> None:
    error = common_validation.best_error(schema, body, dialect=_DIALECT, format_checker=_FORMATS)
    if error is None:
        return
    message = error.message
    if error.validator == "format" and error.validator_value == "name":
        # Nova's name check raises its own error, whose text is the whole answer
        raise HTTPError(400, f"An invalid 'name' value was provided. {NAME_RULE}")
    if error.path:
        # as Nova words it: the innermost field's name and the value as Python prints it (``Value: t``)
        raise HTTPError(400, f"Invalid input for field/attribute {error.path[-1]}. Value: {error.instance}. {message}")
    raise HTTPError(400, message)   # about the body itself (a required key missing): jsonschema's words alone


def first_error(schema: dict, value: Any) -> str | None:
    """jsonschema's message for what ``schema`` refuses in ``value`` (e.g. a path segment), or None."""
    error = common_validation.best_error(schema, value, dialect=_DIALECT, format_checker=_FORMATS)
    return None if error is None else error.message


# Reusable fragments mirroring Nova's parameter types.
NAME = {"type": "string", "minLength": 1, "maxLength": 255, "format": "name"}
NAME_WITH_SPACES = {"type": "string", "minLength": 1, "maxLength": 255}
DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 255}
UUID = {"type": "string", "pattern": r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"}
METADATA = {"type": "object",
            "patternProperties": {r"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
            "additionalProperties": False}
POSITIVE_INT = {"type": ["integer", "string"], "pattern": r"^[0-9]*$", "minimum": 1, "minLength": 1}
