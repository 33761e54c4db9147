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
