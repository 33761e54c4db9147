"""The quick check of valid documents (kilonova/common/fastcheck.py) never says yes where jsonschema says no.

Documents are drawn near each of Placement's schemas (the keys and values they name, plus wrong types,
bounds, lengths, patterns, duplicates, extra keys, 1.0 and booleans for integers), so that about half
are valid; every one the quick check accepts must be one jsonschema accepts, with the same format
checkers the handlers use. The bodies compute hosts send all day must be accepted quickly.
"""
from __future__ import annotations

import functools
import json
import re
import uuid

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kilonova.common import fastcheck
from kilonova.placement import schemas
from kilonova.placement.handlers import util


def _all_schemas() -> list[tuple[str, dict]]:
    found = []
    for name, value in vars(schemas).items():
        if not name.isupper() or not isinstance(value, dict):
            continue
        if value and all(isinstance(key, tuple) for key in value):
            found.extend((f"{name}{version}", schema) for version, schema in value.items())
        else:
            found.append((name, value))
    return found


SCHEMAS = _all_schemas()
UUID = str(uuid.UUID(int=7))
STRINGS = ["", "a", "A", "VCPU", "CUSTOM_GOLD", "CUSTOM_", "custom_x", "MEMORY_MB", UUID, UUID.upper(),
           "{" + UUID + "}", "urn:uuid:" + UUID, UUID.replace("-", ""), "0" * 36, "-" * 36, "1", "0", "10", "x" * 201,
           "X" * 256, "none", "isolate", "all", "unknown", "HW_CPU_X86_AVX2", "é", "1a", "_1"]
NUMBERS = [0, 1, -1, 2, 7, 2 ** 31 - 1, 2 ** 31, 1.0, 1.5, 0.0, 3.5e38, -0.5, True, False]


@functools.lru_cache(maxsize=None)
def _good(schema_json: str, kind: str) -> list:
    """The values that this leaf schema accepts (by jsonschema)."""
    schema = json.loads(schema_json)
    values = NUMBERS if kind in ("integer", "number") else STRINGS if kind == "string" else [None, True, False]
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=util._body_checker)
    return [value for value in values if validator.is_valid(value)] or values


@st.composite
def near(draw, schema: dict, depth: int = 0):
    """A document shaped by ``schema``, often valid, sometimes wrong in one of many ways."""
    if depth > 6 or draw(st.integers(0, 40)) == 0:
        return draw(st.sampled_from([None, "x", 1, 1.0, True, [], {}, [UUID, UUID]]))
    if "anyOf" in schema:
        return draw(near(draw(st.sampled_from(schema["anyOf"])), depth + 1))
    if "enum" in schema:
        return draw(st.sampled_from(list(schema["enum"]) + STRINGS[:3]))
    kinds = schema.get("type", "object")
    kind = draw(st.sampled_from(kinds if isinstance(kinds, list) else [kinds]))
    if kind == "object":
        document = {}
        for key, sub in schema.get("properties", {}).items():
            if key in schema.get("required", ()) or draw(st.integers(0, 2)):
                document[key] = draw(near(sub, depth + 1))
        for pattern, sub in schema.get("patternProperties", {}).items():
            for key in draw(st.lists(st.sampled_from(_keys_for(pattern)), min_size=1, max_size=3)):
                document[key] = draw(near(sub, depth + 1))
        if not draw(st.integers(0, 30)):
            document[draw(st.sampled_from(STRINGS))] = draw(st.sampled_from(NUMBERS))
        return document
    if kind == "array":
        items = [draw(near(schema.get("items", {}), depth + 1)) for _ in range(draw(st.integers(1, 3)))]
        if not draw(st.integers(0, 10)):
            items.append(items[0])   # a duplicate
        return items
    if draw(st.integers(0, 3)):
        leaf = {k: v for k, v in schema.items() if k != "type"} | {"type": kind}
        return draw(st.sampled_from(_good(json.dumps(leaf, sort_keys=True), kind)))
    return draw(st.sampled_from(NUMBERS if kind in ("integer", "number") else STRINGS if kind == "string"
                                else [None, True, False]))


def _keys_for(pattern: str) -> list[str]:
    return [s for s in STRINGS if re.search(pattern, s)][:4] + [STRINGS[1]]


_COMPILED: dict = {}


def _verdicts(schema: dict, document, query: bool) -> tuple[bool, bool]:
    key = (id(schema), query)
    if key not in _COMPILED:
        checker = util._query_checker if query else util._body_checker
        _COMPILED[key] = (jsonschema.validators.validator_for(schema)(schema, format_checker=checker),
                          fastcheck.compile_check(schema, checker))
    validator, quick = _COMPILED[key]
    assert quick is not None
    return quick(document), not list(validator.iter_errors(document))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), query=st.booleans())
def test_a_quick_yes_is_always_jsonschemas_yes(data, query):
    name, schema = data.draw(st.sampled_from(SCHEMAS))
    document = data.draw(near(schema))
    quick, valid = _verdicts(schema, document, query)
    assert valid or not quick, f"{name}: {document!r}"


def test_the_bodies_compute_hosts_send_are_accepted_quickly_and_refusals_keep_jsonschemas_text():
    inventory = {"total": 32, "reserved": 0, "min_unit": 1, "max_unit": 32, "step_size": 1, "allocation_ratio": 16.0}
    claim = {"allocations": {UUID: {"resources": {"VCPU": 1, "MEMORY_MB": 512}}}, "project_id": "p",
             "user_id": "u", "consumer_generation": None, "consumer_type": "INSTANCE"}
    for schema, document in (
            (schemas.INVENTORIES, {"resource_provider_generation": 3, "inventories": {"VCPU": inventory}}),
            (schemas.PROVIDER_POST_1_14, {"name": "compute-1", "uuid": UUID, "parent_provider_uuid": None}),
            (schemas.PROVIDER_TRAITS, {"resource_provider_generation": 4, "traits": ["HW_CPU_X86_AVX2"]}),
            (schemas.AGGREGATES_1_19, {"resource_provider_generation": 5, "aggregates": [UUID]}),
            (schemas.ALLOCATION_PUT[(1, 38)], claim),
            (schemas.ALLOCATION_POST[(1, 38)], {UUID: claim})):
        assert _verdicts(schema, document, False) == (True, True)
        assert util.schema_error(document, schema) is None
    refused = {"resource_provider_generation": 3, "inventories": {"VCPU": dict(inventory, total=0)}}
    assert _verdicts(schemas.INVENTORIES, refused, False) == (False, False)
    assert "Failed validating 'minimum' in schema" in util.schema_error(refused, schemas.INVENTORIES)
    # what the quick check does not decide goes to jsonschema: 1.0 is an integer there
    assert _verdicts(schemas.PROVIDER_TRAITS, {"resource_provider_generation": 1.0, "traits": []}, False) == \
        (False, True)


def test_schemas_with_what_it_does_not_know_are_left_to_jsonschema():
    assert fastcheck.compile_check({"type": "object", "oneOf": [{}]}) is None
    assert fastcheck.compile_check({"additionalProperties": {"type": "string"}}) is None
    assert fastcheck.compile_check({"items": [{"type": "string"}]}) is None
    assert fastcheck.compile_check({"enum": [1, "a"]}) is None
    assert fastcheck.compile_check({"type": "object", "description": "x"})({}) is True
