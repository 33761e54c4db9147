"""Request body validation with JSON Schema, answering 400 the way Nova words it."""
from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft4Validator

from kilonova.common.http import HTTPError

# Validators of the schemas seen, by identity. Bounded: a handler that builds its schema per request
# must not make the cache (and the schemas it keeps alive) grow with every request.
_CACHE: dict[int, tuple[dict, Draft4Validator]] = {}
_CACHE_SIZE = 256


def _validator(schema: dict) -> Draft4Validator:
    cached = _CACHE.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    validator = Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[id(schema)] = (schema, validator)
    return validator


def validate(schema: dict, body: Any) -> None:
    validator = _validator(schema)
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
