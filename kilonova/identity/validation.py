"""Request body validation with JSON Schema (kilonova/common/validation.py), answering 400 the way Keystone
words it."""
from __future__ import annotations

from typing import Any

import jsonschema

from kilonova.common import validation as common_validation
from kilonova.common.http import bad_request

NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"\S"}
LONG_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"}
ID = {"type": "string", "minLength": 1, "maxLength": 64}
NULLABLE_ID = {"type": ["string", "null"], "maxLength": 64}
DESCRIPTION = {"type": ["string", "null"]}
ENABLED = {"type": "boolean"}
TAGS = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^,/]*$"},
        "maxItems": 80, "uniqueItems": True}

def validate(body: Any, schema: dict) -> None:
    error = common_validation.best_error(schema, body, dialect=jsonschema.Draft7Validator)
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path)
        field = f"Invalid input for field '{where}': " if where else "Invalid input: "
        raise bad_request(field + error.message)


def entity(key: str, properties: dict, required: list[str] | None = None, extra: bool = True) -> dict:
    """The schema of ``{key: {...}}`` (create and update bodies)."""
    inner: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        inner["required"] = required
    else:
        inner["minProperties"] = 1
    return {"type": "object", "properties": {key: inner}, "required": [key]}
