"""Checks of request bodies and query strings, each failure a 400 in Cinder's words."""
from __future__ import annotations

import ast
import json
from typing import Any

from kilonova.volume.errors import bad_request


def body_part(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise bad_request(f"Missing required element '{key}' in request body.")
    return body[key]


def size(value: Any, name: str = "size") -> int:
    """A positive whole number of GiB (a string of digits too, as Cinder takes it)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad_request(f"Invalid input received: {name} must be an integer and greater than 0")
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"Invalid input received: {name} must be an integer and greater than 0") from None
    if number <= 0 or number > 2 ** 31 - 1:
        raise bad_request(f"Invalid input received: {name} must be an integer and greater than 0")
    return number


def text(value: Any, name: str, max_length: int = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"Invalid input received: {name} must be a string")
    if len(value) > max_length:
        raise bad_request(f"Invalid input received: {name} has more than {max_length} characters")
    return value


def metadata(value: Any, name: str = "metadata") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"Invalid input received: {name} must be a dictionary")
    for key, item in value.items():
        if not key or len(key) > 255:
            raise bad_request(f"Invalid input received: {name} keys must be 1 to 255 characters")
        if not isinstance(item, str) or len(item) > 255:
            raise bad_request(f"Invalid input received: value of {name} key {key!r} must be a string of at "
                              f"most 255 characters")
    return dict(value)


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
