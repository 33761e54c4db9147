"""Placement never answers 500: random query strings and JSON bodies against the ASGI app.

Keys and values are drawn from the API's own vocabulary (parameter names with suffixes, trait and
class names, uuids, the ``in:``/``!`` prefixes, numbers) mixed with junk, at random microversions.
"""
from __future__ import annotations

import asyncio
import tempfile
import uuid
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.config import Config
from kilonova.placement.service import PlacementService

set_hypothesis_home_dir(tempfile.gettempdir() + "/kilonova-hypothesis")

RP = "7c1f4d2e-3a5b-4c6d-8e9f-0a1b2c3d4e5f"
AGG = "8d2e5f3a-4b6c-4d7e-9f0a-1b2c3d4e5f60"
KEYS = ["resources", "required", "member_of", "in_tree", "group_policy", "limit", "root_required",
        "same_subtree", "name", "uuid", "bogus"]
WORDS = ["VCPU", "MEMORY_MB", "CUSTOM_X", "HW_CPU_X86_AVX2", "CUSTOM_NOPE", RP, AGG, "none", "isolate",
         "_A", "1", "0", "-1", "99999999999999999999", "", "!", "in:", "!in:", ":", ",", "é", "%", " "]
value = st.lists(st.sampled_from(WORDS) | st.text(max_size=4), max_size=4).map("".join)
key = st.tuples(st.sampled_from(KEYS), st.sampled_from(["", "", "1", "_A", "!", "-x"])).map("".join)
queries = st.lists(st.tuples(key, value), max_size=6)
versions = st.sampled_from(["1.0", "1.10", "1.17", "1.21", "1.25", "1.31", "1.33", "1.36", "1.38", "1.39", "latest"])
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                      st.sampled_from(WORDS))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(WORDS + ["allocations", "resources", "total",
                                                                     "inventories", "resource_provider_generation",
                                                                     "consumer_generation", "project_id", "user_id",
                                                                     "consumer_type", "name", "traits"]),
                                            inner, max_size=4), max_leaves=12)
SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    conf = Config.load(state_dir=tmp_path_factory.mktemp("fuzz"), overrides={"placement": {"auth_strategy": "noauth2"}})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    svc.prepare()

    async def seed():
        async with _client(svc.app, "1.39") as http:
            assert (await http.post("/resource_providers", json={"name": "fuzz", "uuid": RP})).status_code == 200
            await http.put(f"/resource_providers/{RP}/inventories", json={
                "resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}})
            await http.put("/traits/CUSTOM_X")
    asyncio.run(seed())
    yield svc.app
    svc.db.close()


def _client(app, version: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p",
                             headers={"X-Auth-Token": "admin", "OpenStack-API-Version": f"placement {version}",
                                      "X-Roles": "admin,service"})   # the reshaper is for the service role


def _run(app, version, calls) -> list[tuple[str, int, str]]:
    async def go():
        async with _client(app, version) as http:
            return [(path, (r := await http.request(method, path, **kw)).status_code, r.text)
                    for method, path, kw in calls]
    return asyncio.run(go())


@SETTINGS
@given(pairs=queries, version=versions)
def test_random_query_strings_never_500(app, pairs, version):
    qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    calls = [("GET", f"/allocation_candidates?{qs}", {}), ("GET", f"/resource_providers?{qs}", {}),
             ("GET", f"/usages?{qs}", {})]
    for path, status, text in _run(app, version, calls):
        assert status < 500, (path, version, text)


@SETTINGS
@given(body=json_value, version=versions)
def test_random_bodies_never_500(app, body, version):
    consumer = str(uuid.uuid4())
    calls = [("PUT", f"/allocations/{consumer}", {"json": body}), ("POST", "/allocations", {"json": body}),
             ("POST", "/resource_providers", {"json": body}),
             ("PUT", f"/resource_providers/{RP}/inventories", {"json": body}),
             ("PUT", f"/resource_providers/{RP}/traits", {"json": body}),
             ("PUT", f"/resource_providers/{RP}/aggregates", {"json": body}),
             ("POST", "/reshaper", {"json": body})]
    for path, status, text in _run(app, version, calls):
        assert status < 500, (path, version, body, text)
