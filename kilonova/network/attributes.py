"""Request bodies: which attributes a resource accepts, converted and checked as Neutron does."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from kilonova.network.errors import bad_request


def _reason(name: str, reason: str):
    return bad_request(f"Invalid input for {name}. Reason: {reason}")


def to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _reason(name, f"'{value}' cannot be converted to boolean.")


def to_string(name: str, value: Any, max_len: int = 255) -> str:
    if not isinstance(value, str):
        raise _reason(name, f"'{value}' is not a valid string.")
    if len(value) > max_len:
        raise _reason(name, f"'{value}' exceeds maximum length of {max_len}.")
    return value


def to_optional_string(name: str, value: Any) -> str | None:
    return None if value is None else to_string(name, value)


def to_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _reason(name, f"'{value}' is not an integer.") from None
    if isinstance(value, bool) or number < 0:
        raise _reason(name, f"'{value}' should be non-negative.")
    return number


def to_optional_int(name: str, value: Any) -> int | None:
    return None if value is None else to_int(name, value)


def to_string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _reason(name, f"'{value}' is not a list of strings.")
    return list(dict.fromkeys(value))


def to_dict(name: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _reason(name, f"'{value}' is not a dictionary.")
    return value


def passthrough(name: str, value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Attr:
    convert: Callable[[str, Any], Any] = passthrough
    allow_post: bool = True
    allow_put: bool = True


def parse(body: Any, resource: str, attrs: dict[str, Attr], *, update: bool = False) -> dict[str, Any]:
    """The converted attributes of ``{resource: {...}}``; 400 for anything Neutron would refuse."""
    if not isinstance(body, dict) or not isinstance(body.get(resource), dict):
        raise bad_request(f"Unable to find '{resource}' in request body")
    item = body[resource]
    unknown = sorted(name for name in item if name not in attrs)
    if unknown:
        raise bad_request("Unrecognized attribute(s) '" + ", ".join(unknown) + "'")
    values = {}
    for name, value in item.items():
        attr = attrs[name]
        if update and not attr.allow_put:
            raise bad_request(f"Cannot update read-only attribute {name}")
        if not update and not attr.allow_post:
            raise bad_request(f"Attribute '{name}' not allowed in POST")
        values[name] = attr.convert(name, value)
    return values


def bulk_items(body: Any, resource: str, collection: str) -> list[dict[str, Any]]:
    """Each ``{resource: item}`` of a create body, single (``{"port": {}}``) or bulk (``{"ports": []}``)."""
    if isinstance(body, dict) and isinstance(body.get(collection), list):
        if not body[collection]:
            raise bad_request(f"Resources required: '{collection}' is empty")
        return [{resource: item} for item in body[collection]]
    return [body]
