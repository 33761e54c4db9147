"""Request validation: right schema every time, and no growth when handlers build schemas per request."""
import pytest

from kilonova.common.http import HTTPError
from kilonova.compute.api import validation


def test_schemas_built_per_request_neither_leak_nor_get_each_others_validator():
    for i in range(2000):
        schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": i}}}
        validation.validate(schema, {"n": i})
        with pytest.raises(HTTPError) as raised:
            validation.validate(schema, {"n": i + 1})
        assert raised.value.status == 400
    from kilonova.common import validation as common_validation
    assert len(common_validation._CACHE) <= common_validation._CACHE_SIZE


@pytest.mark.parametrize("value, refusal", [
    ("0", "Invalid input for field/attribute min_count. Value: 0. 0 is less than the minimum of 1"),
    (0, "Invalid input for field/attribute min_count. Value: 0. 0 is less than the minimum of 1"),
    ("2147483648", "Invalid input for field/attribute min_count. Value: 2147483648. 2147483648 is greater than "
                   "the maximum of 2147483647"),
    ("3", None), (3, None),
])
def test_numbers_written_as_strings_are_held_to_the_bounds_as_nova_holds_them(value, refusal):
    """Nova's validator reads "0" as 0 for minimum and maximum: a min_count of "0" is refused as 0 is."""
    schema = {"type": "object", "properties": {"min_count": dict(validation.POSITIVE_INT, maximum=2 ** 31 - 1)}}
    for _ in range(2):   # the second time through the cached validator and its quick check
        if refusal is None:
            validation.validate(schema, {"min_count": value})
            continue
        with pytest.raises(HTTPError) as raised:
            validation.validate(schema, {"min_count": value})
        assert (raised.value.status, str(raised.value)) == (400, refusal)


def test_the_quick_check_of_a_numeric_string_dialect_leaves_strings_under_a_bound_to_jsonschema():
    from kilonova.common import fastcheck
    schema = {"type": ["integer", "string"], "minimum": 1}
    assert fastcheck.compile_check(schema)("0") is True              # standard draft 4: a string has no bound
    assert fastcheck.compile_check(schema, numeric_strings=True)("0") is False   # jsonschema decides
    assert fastcheck.compile_check(schema, numeric_strings=True)(5) is True


def test_refusals_are_worded_as_novas():
    """The innermost field and the value as Python prints it; a bad name in Nova's own words; the body's own
    problems in jsonschema's words alone."""
    schema = {"type": "object", "required": ["server"], "additionalProperties": False, "properties": {
        "server": {"type": "object", "properties": {
            "name": {"type": "string", "format": "name"}, "config_drive": {"type": "boolean"}}}}}
    for body, text in (
            ({"server": {"config_drive": "t"}},
             "Invalid input for field/attribute config_drive. Value: t. 't' is not of type 'boolean'"),
            ({"server": {"name": " padded"}},
             "An invalid 'name' value was provided. The name must be: printable characters. "
             "Can not start or end with whitespace."),
            ({}, "'server' is a required property")):
        with pytest.raises(HTTPError) as raised:
            validation.validate(schema, body)
        assert (raised.value.status, str(raised.value)) == (400, text)
