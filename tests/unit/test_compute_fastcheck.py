"""The shared quick check (kilonova/common/fastcheck.py) now also answers for the compute API's schemas
(kilonova/common/validation.py): it must never say yes where jsonschema, in Nova's draft 4 with Nova's
format checkers, says no. Documents are drawn near each module-level compute schema it can compile, as for
Placement's (tests/unit/test_placement_fastcheck.py)."""
from __future__ import annotations

import importlib
import pkgutil

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kilonova.compute.api
from kilonova.common import fastcheck
from kilonova.compute.api import validation
from tests.unit.test_placement_fastcheck import near


def _compute_schemas() -> list[tuple[str, dict]]:
    found = []
    for module_info in pkgutil.iter_modules(kilonova.compute.api.__path__):
        module = importlib.import_module(f"kilonova.compute.api.{module_info.name}")
        for name, value in vars(module).items():
            if isinstance(value, dict) and value.get("type") == "object" and "properties" in value \
                    and fastcheck.compile_check(value, validation._FORMATS) is not None:
                found.append((f"{module_info.name}.{name}", value))
    return found


SCHEMAS = _compute_schemas()


def test_most_compute_schemas_get_a_quick_check():
    assert len(SCHEMAS) >= 10, [name for name, _ in SCHEMAS]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_quick_yes_is_always_jsonschemas_draft4_yes(data):
    name, schema = data.draw(st.sampled_from(SCHEMAS))
    document = data.draw(near(schema))
    quick = fastcheck.compile_check(schema, validation._FORMATS)(document)
    valid = jsonschema.Draft4Validator(schema, format_checker=validation._FORMATS).is_valid(document)
    assert valid or not quick, f"{name}: {document!r}"
