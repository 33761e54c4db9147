"""Checking an image body against the image schema and splitting it into core/properties/tags."""
from __future__ import annotations

from typing import Any

import jsonschema

from kilonova.common import validation as common_validation
from kilonova.common.http import HTTPError, bad_request
from kilonova.image import schemas

_IMAGE_SCHEMA = schemas.image_schema()


def check_attribute_writable(name: str) -> None:
    if name in schemas.RESERVED:
        raise HTTPError(403, f"Attribute '{name}' is reserved.")
    if name in schemas.READ_ONLY:
        raise HTTPError(403, f"Attribute '{name}' is read-only.")


def check_schema(document: dict[str, Any]) -> None:
    error = common_validation.best_error(_IMAGE_SCHEMA, document, dialect=jsonschema.Draft4Validator)
    if error is not None:
        raise bad_request(f"Provided object does not match schema 'image': {error.message}")
    for key in document:
        if len(key) > 255:
            raise bad_request(f"Provided object does not match schema 'image': property name {key[:40]}... "
                              "is too long")


def split(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], list[str] | None]:
    """(core attributes, extra properties, tags or None) of a validated document."""
    core = {k: v for k, v in document.items() if k in schemas.CORE_WRITABLE and k != "tags"}
    properties = {k: v for k, v in document.items() if k not in schemas.CORE_WRITABLE and k != "id"}
    tags = document.get("tags")
    return core, properties, tags


def new_image(body: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The pieces of a ``POST /v2/images`` body, or the 400/403 Glance gives for it."""
    if not isinstance(body, dict):
        raise bad_request("Provided object does not match schema 'image': body must be a JSON object")
    for name in body:
        if name != "id":
            check_attribute_writable(name)
    check_schema(body)
    core, properties, tags = split(body)
    if "id" in body:
        core["id"] = body["id"].lower()
    return core, properties, tags or []
