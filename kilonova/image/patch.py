"""Glance's JSON-patch dialects (``application/openstack-images-v2.{0,1}-json-patch``).

``apply`` works on the writable view of an image (core attributes, tags and
extra properties flattened into one dict) and returns the patched view; the
handler validates and stores the result.
"""
from __future__ import annotations

from typing import Any

from kilonova.common.http import HTTPError, bad_request
from kilonova.image import schemas
from kilonova.image.validation import check_attribute_writable

MEDIA_TYPES = ("application/openstack-images-v2.1-json-patch", "application/openstack-images-v2.0-json-patch")
OPS = ("add", "remove", "replace")


def writable_view(image: dict[str, Any]) -> dict[str, Any]:
    view = {key: image[key] for key in schemas.CORE_WRITABLE if key != "tags"}
    view["tags"] = list(image["tags"])
    view.update(image["properties"])
    return view


def _normalize(operation: Any) -> tuple[str, str, Any]:
    """(op, attribute, value) from either dialect's operation object."""
    if not isinstance(operation, dict):
        raise bad_request("Operations must be JSON objects.")
    if "op" in operation:
        op, path = operation["op"], operation.get("path")
    else:  # v2.0: {"replace": "/name", "value": ...}
        named = [key for key in OPS if key in operation]
        if len(named) != 1:
            raise bad_request('Operation objects must contain exactly one member named "add", "remove", '
                              'or "replace".')
        op, path = named[0], operation[named[0]]
    if op not in OPS:
        raise bad_request(f'Invalid operation: `{op}`.')
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise bad_request(f"Invalid JSON pointer for this resource: '{path}'")
    parts = path[1:].split("/")
    if len(parts) != 1:
        raise HTTPError(403, f"Attribute '{parts[0]}' does not support nested paths.")
    attribute = parts[0].replace("~1", "/").replace("~0", "~")
    if op != "remove" and "value" not in operation:
        raise bad_request(f'Operation "{op}" requires a member named "value".')
    return op, attribute, operation.get("value")


def apply(view: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("Request body must be a JSON array of operation objects.")
    result = dict(view)
    for operation in operations:
        op, attribute, value = _normalize(operation)
        check_attribute_writable(attribute)
        core = attribute in schemas.CORE_WRITABLE
        if op == "remove":
            if core:
                raise HTTPError(403, f"Attribute '{attribute}' can not be removed.")
            if attribute not in result:
                raise HTTPError(409, f"Property {attribute} does not exist.")
            del result[attribute]
        elif op == "replace" and not core and attribute not in result:
            raise HTTPError(409, f"Property {attribute} does not exist.")
        else:
            result[attribute] = value
    return result
