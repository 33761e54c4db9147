"""Placement's JSON schemas for bodies and query strings, one per microversion range.

Validated with the ``jsonschema`` library (handlers/util.py), whose error text becomes the 400's detail:
the message, ``Failed validating '<keyword>' in schema[...]``, the failing part of the schema and the
instance. Clients and operators grep those texts, so each schema has upstream's constraints *and* the
shape and key order that make that text the same (a keyword's place decides which error is reported
first and how the schema part prints). Built here from small parts; each is a fresh dict, as the texts
print each part where it sits.
"""
from __future__ import annotations

UUID_PATTERN = "^[0-9a-fA-F-]{36}$"   # body keys naming providers and consumers (upstream's, loose)
RC_PATTERN = "^[A-Z0-9_]+$"
CUSTOM_PATTERN = "^CUSTOM_[A-Z0-9_]+$"   # custom resource classes and traits
CONSUMER_TYPE_PATTERN = "^[A-Z0-9_]+$"
CONSUMER_TYPE_QUERY_PATTERN = "^[A-Z0-9_]+$|^all|^unknown$"
SUFFIX = "[1-9][0-9]*"          # request group suffixes before 1.33
SUFFIX_1_33 = "[a-zA-Z0-9_-]{1,64}"
MAX_INT = 2147483647
SQL_SP_FLOAT_MAX = 3.40282e38


def _uuid() -> dict:
    return {"type": "string", "format": "uuid"}


def _id() -> dict:   # project and user ids
    return {"type": "string", "minLength": 1, "maxLength": 255}


def _generation() -> dict:
    return {"type": "integer"}


def _obj(properties: dict, required: list[str] | None = None, *, required_last: bool = False) -> dict:
    """A closed object; ``required`` before ``additionalProperties`` unless ``required_last``."""
    schema: dict = {"type": "object", "properties": properties}
    if required is not None and not required_last:
        schema["required"] = required
    schema["additionalProperties"] = False
    if required is not None and required_last:
        schema["required"] = required
    return schema


# ------------------------------------------------------------------ resource providers

def _name() -> dict:
    return {"type": "string", "maxLength": 200}


def _parent() -> dict:
    return {"anyOf": [_uuid(), {"type": "null"}]}


PROVIDER_POST = _obj({"name": _name(), "uuid": _uuid()}, ["name"])
PROVIDER_POST_1_14 = _obj({"name": _name(), "uuid": _uuid(), "parent_provider_uuid": _parent()}, ["name"])
PROVIDER_PUT = _obj({"name": _name()}, ["name"])
PROVIDER_PUT_1_14 = _obj({"name": _name(), "parent_provider_uuid": _parent()}, ["name"])


def _provider_filters(*keys: str) -> dict:
    specs = {"name": {"type": "string"}, "uuid": _uuid(), "member_of": {"type": "string"},
             "resources": {"type": "string"}, "in_tree": _uuid(), "required": {"type": "string"}}
    return _obj({k: specs[k] for k in keys})


PROVIDER_LIST_QUERY = {
    (1, 0): _provider_filters("name", "uuid"),
    (1, 3): _provider_filters("name", "uuid", "member_of"),
    (1, 4): _provider_filters("name", "uuid", "member_of", "resources"),
    (1, 14): _provider_filters("name", "uuid", "member_of", "resources", "in_tree"),
    (1, 18): _provider_filters("name", "uuid", "member_of", "resources", "in_tree", "required"),
}


# ------------------------------------------------------------------ inventories

def _amount(minimum: int) -> dict:
    return {"type": "integer", "maximum": MAX_INT, "minimum": minimum}


def _inventory_properties() -> dict:
    return {"resource_provider_generation": _generation(), "total": _amount(1), "reserved": _amount(0),
            "min_unit": _amount(1), "max_unit": _amount(1), "step_size": _amount(1),
            "allocation_ratio": {"type": "number", "maximum": SQL_SP_FLOAT_MAX}}


INVENTORY = _obj(_inventory_properties(), ["total", "resource_provider_generation"])   # PUT .../{class}
INVENTORY_POST = _obj(dict(_inventory_properties(), resource_class={"type": "string", "pattern": RC_PATTERN}),
                      ["total", "resource_class"])


def _inventories() -> dict:
    """PUT .../inventories: a class name's validity is the handler's to report (no additionalProperties)."""
    record = _obj(_inventory_properties(), ["total"])
    return _obj({"resource_provider_generation": _generation(),
                 "inventories": {"type": "object", "patternProperties": {RC_PATTERN: record}}},
                ["resource_provider_generation", "inventories"])


INVENTORIES = _inventories()


# ------------------------------------------------------------------ aggregates

def _aggregate_list() -> dict:
    return {"type": "array", "items": _uuid(), "uniqueItems": True}


AGGREGATES_1_1 = _aggregate_list()
AGGREGATES_1_19 = _obj({"aggregates": _aggregate_list(), "resource_provider_generation": _generation()},
                       ["aggregates", "resource_provider_generation"])


# ------------------------------------------------------------------ traits and resource classes

TRAIT_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": CUSTOM_PATTERN}   # PUT /traits/{name}
PROVIDER_TRAITS = _obj({"traits": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 255}},
                        "resource_provider_generation": _generation()}, ["traits", "resource_provider_generation"])
TRAIT_LIST_QUERY = _obj({"name": {"type": "string"}, "associated": {"type": "string"}})
RESOURCE_CLASS = _obj({"name": {"type": "string", "pattern": CUSTOM_PATTERN, "maxLength": 255}}, ["name"])


# ------------------------------------------------------------------ usages

USAGES_QUERY = _obj({"project_id": _id(), "user_id": _id()}, ["project_id"])
USAGES_QUERY_1_38 = _obj({"project_id": _id(), "user_id": _id(), "consumer_type": {
    "type": "string", "pattern": CONSUMER_TYPE_QUERY_PATTERN, "minLength": 1, "maxLength": 255}}, ["project_id"])


# ------------------------------------------------------------------ allocations

def _resources() -> dict:
    return {"type": "object", "minProperties": 1, "patternProperties": {RC_PATTERN: {"type": "integer", "minimum": 1}},
            "additionalProperties": False}


def _allocations_list() -> dict:
    """Before 1.12: a list of {resource_provider: {uuid}, resources}."""
    provider = {"type": "object", "properties": {"uuid": _uuid()}, "additionalProperties": False, "required": ["uuid"]}
    item = _obj({"resource_provider": provider, "resources": _resources()}, ["resource_provider", "resources"])
    return {"type": "array", "minItems": 1, "items": item}


def _allocations_dict(min_providers: int) -> dict:
    """From 1.12: {provider uuid: {resources, generation (ignored)}}; empty (remove all) from 1.28 and in POST."""
    entry = _obj({"generation": _generation(), "resources": _resources()}, ["resources"])
    return {"type": "object", "minProperties": min_providers, "patternProperties": {UUID_PATTERN: entry},
            "additionalProperties": False}


def _mappings() -> dict:
    return {"type": "object", "minProperties": 1, "patternProperties": {
        SUFFIX_1_33: {"type": "array", "minItems": 1, "items": _uuid()}}}


def _consumer(version: tuple[int, int], min_providers: int) -> dict:
    """One consumer's allocations from 1.12 (PUT /allocations/{consumer}, an entry of POST /allocations)."""
    properties = {"allocations": _allocations_dict(min_providers), "project_id": _id(), "user_id": _id()}
    required = ["allocations", "project_id", "user_id"]
    if version >= (1, 28):
        properties["consumer_generation"] = {"type": ["integer", "null"], "additionalProperties": False}
        required.append("consumer_generation")
    if version >= (1, 34):
        properties["mappings"] = _mappings()
    if version >= (1, 38):
        properties["consumer_type"] = {"type": "string", "pattern": CONSUMER_TYPE_PATTERN, "minLength": 1,
                                       "maxLength": 255}
        required.append("consumer_type")
    return _obj(properties, required, required_last=True)


ALLOCATION_PUT = {
    (1, 0): _obj({"allocations": _allocations_list()}, ["allocations"]),
    (1, 8): _obj({"allocations": _allocations_list(), "project_id": _id(), "user_id": _id()},
                 ["allocations", "project_id", "user_id"]),
    (1, 12): _consumer((1, 12), 1),
    (1, 28): _consumer((1, 28), 0),
    (1, 34): _consumer((1, 34), 0),
    (1, 38): _consumer((1, 38), 0),
}


def _consumers(version: tuple[int, int], min_consumers: int) -> dict:
    return {"type": "object", "minProperties": min_consumers, "additionalProperties": False,
            "patternProperties": {UUID_PATTERN: _consumer(version, 0)}}


ALLOCATION_POST = {version: _consumers(version, 1) for version in ((1, 13), (1, 28), (1, 34), (1, 38))}


# ------------------------------------------------------------------ the reshaper

def _reshape(version: tuple[int, int]) -> dict:
    inventories = {"type": "object", "patternProperties": {UUID_PATTERN: _inventories()}, "minProperties": 1,
                   "additionalProperties": False}
    return _obj({"inventories": inventories, "allocations": _consumers(version, 0)}, ["inventories", "allocations"])


RESHAPE = {version: _reshape(version) for version in ((1, 30), (1, 34), (1, 38))}


# ------------------------------------------------------------------ allocation candidates

def _limit() -> dict:
    return {"type": ["integer", "string"], "pattern": "^[1-9][0-9]*$", "minimum": 1, "minLength": 1}


def _candidates_before_groups(version: tuple[int, int]) -> dict:
    properties: dict = {"resources": {"type": "string"}}
    if version >= (1, 16):
        properties["limit"] = _limit()
    if version >= (1, 17):
        properties["required"] = {"type": ["string"]}
    if version >= (1, 21):
        properties["member_of"] = {"type": ["string"]}
    return _obj(properties, ["resources"])


def _candidates_with_groups(version: tuple[int, int]) -> dict:
    properties: dict = {"limit": _limit(), "group_policy": {"type": "string", "enum": ["none", "isolate"]}}
    if version >= (1, 35):
        properties["root_required"] = {"type": ["string"]}
    if version >= (1, 36):
        properties["same_subtree"] = {"type": ["string"]}
    keys = ["resources", "required", "member_of"] + (["in_tree"] if version >= (1, 31) else [])
    suffix = SUFFIX_1_33 if version >= (1, 33) else SUFFIX
    schema = _obj(properties)
    schema["patternProperties"] = {f"^{key}({suffix})?$": {"type": "string"} for key in keys}
    return schema


CANDIDATES_QUERY = {version: (_candidates_with_groups(version) if version >= (1, 25)
                              else _candidates_before_groups(version))
                    for version in ((1, 10), (1, 16), (1, 17), (1, 21), (1, 25), (1, 31), (1, 33), (1, 35), (1, 36))}


def for_version(schemas: dict[tuple[int, int], dict], version: tuple[int, int]) -> dict:
    """The schema of the newest range starting at or below ``version``."""
    return schemas[max(v for v in schemas if v <= version)]
