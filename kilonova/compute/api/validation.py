"""Request body validation with JSON Schema, answering 400 the way Nova words it."""
from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft4Validator

from kilonova.common.http import HTTPError

_CACHE: dict[int, Draft4Validator] = {}


def validate(schema: dict, body: Any) -> None:
    validator = _CACHE.get(id(schema))
    if validator is None:
        validator = _CACHE[id(schema)] = Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is None:
        return
    where = "/".join(str(p) for p in error.path)
    if where:
        raise HTTPError(400, f"Invalid input for field/attribute {where}. Value: {error.instance!r}. {error.message}")
    raise HTTPError(400, f"Invalid input for request body: {error.message}")


# Reusable fragments mirroring Nova's parameter types.
NAME = {"type": "string", "minLength": 1, "maxLength": 255,
        "pattern": r"^(?![\s])[\S\s]*(?<![\s])$"}
NAME_WITH_SPACES = {"type": "string", "minLength": 1, "maxLength": 255}
DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 255}
UUID = {"type": "string", "pattern": r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"}
METADATA = {"type": "object",
            "patternProperties": {r"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
            "additionalProperties": False}
POSITIVE_INT = {"type": ["integer", "string"], "pattern": r"^[0-9]*$", "minimum": 1}
