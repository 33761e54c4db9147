"""/healthcheck and /metrics of any ServiceApp: oslo.middleware's answers, no series per raw path."""
from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kilonova.common import operations
from kilonova.common.http import Router, ServiceApp, json_response


async def _thing(request, thing_id):
    return json_response({"id": thing_id})


def _app(checks) -> ServiceApp:
    router = Router()
    router.add("GET", "/things/{thing_id}", _thing)
    app = ServiceApp("unit-ops", router)
    app.health_checks = checks
    return app


async def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://unit")


async def test_healthcheck_names_each_failing_check_and_answers_ok_otherwise():
    async def fine():
        return None

    async def gone():
        return "unreachable (no such file)"

    async def stuck():
        await asyncio.sleep(60)

    operations.CHECK_TIMEOUT, saved = 0.2, operations.CHECK_TIMEOUT
    try:
        async with await _client(_app([("database a", fine)])) as client:
            answer = await client.get("/healthcheck")
            assert (answer.status_code, answer.text) == (200, "OK\n")
            assert (await client.head("/healthcheck")).content == b""
            refused = await client.post("/healthcheck")
            assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
        async with await _client(_app([("database a", fine), ("database b", gone), ("broker", stuck)])) as client:
            answer = await client.get("/healthcheck")
        assert answer.status_code == 503
        assert answer.text.splitlines() == ["database b: unreachable (no such file)",
                                            "broker: no answer within 0.2s"]
    finally:
        operations.CHECK_TIMEOUT = saved


async def test_requests_are_counted_per_route_template_and_unknown_paths_together():
    async with await _client(_app([])) as client:
        for path in ("/things/1", "/things/2", "/nowhere/1", "/nowhere/2"):
            await client.get(path)
        text = (await client.get("/metrics")).text
    counts = {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
              for s in family.samples if s.name == "kilonova_http_requests_total" and s.labels["service"] == "unit-ops"}
    assert counts == {
        (("method", "GET"), ("route", "/things/{thing_id}"), ("service", "unit-ops"), ("status", "200")): 2.0,
        (("method", "GET"), ("route", "unmatched"), ("service", "unit-ops"), ("status", "404")): 2.0}
