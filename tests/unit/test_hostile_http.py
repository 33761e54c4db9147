"""The shared HTTP layer's hostile-input rules, through a real ServiceApp in process (issue 12)."""
from __future__ import annotations

import httpx
import pytest

from kilonova.common.http import MAX_JSON_DEPTH, HTTPError, Router, ServiceApp, json_response, parse_json, read_json


def _app() -> ServiceApp:
    router = Router()

    async def echo(request):
        return json_response({"got": await read_json(request)})
    router.add("POST", "/echo", echo)
    router.add("GET", "/items/{item_id}", lambda request, item_id: echo(request))
    return ServiceApp("test", router)


async def _call(method: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        return await client.request(method, path, **kwargs)


@pytest.mark.parametrize("raw, words", [
    (b"[" * 1000 + b"]" * 1000, "nested deeper"),
    (b'{"name": "\\ud800"}', "surrogate"),
    (b'{"name": "a\\u0000b"}', "NUL"),
    (b'{"size": 18446744073709551616}', "64 bits"),
    (b'{"size": -9223372036854775809}', "64 bits"),
    (b'{"size": NaN}', "Malformed"),
    (b'{"name": "\xff"}', "Malformed"),
    (b"{nope", "Expecting property name enclosed in double quotes"),   # Python json's (upstream's) words
])
async def test_bodies_no_layer_behind_can_take_are_400(raw, words):
    response = await _call("POST", "/echo", content=raw)
    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


async def test_what_is_refused_is_not_what_is_fine():
    fine = [{"a": [[[]]]}, {"n": 2 ** 63 - 1}, {"n": -2 ** 63}, {"s": "é💥\\u0000"}, {"f": 1e300}]
    for body in fine:
        response = await _call("POST", "/echo", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["got"] == body
    exact = parse_json(b'{"n": 9223372036854775807, "m": -9223372036854775808}')   # read exactly, as ints
    assert exact == {"n": 2 ** 63 - 1, "m": -2 ** 63} and isinstance(exact["m"], int)
    nested = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(nested) is not None
    with pytest.raises(HTTPError):
        parse_json(b"[" + nested + b"]")


async def test_headers_urls_and_nul_are_refused_before_routing():
    assert (await _call("GET", "/nowhere", headers={"X-Big": "a" * 20_000})).status_code == 431
    assert (await _call("GET", "/nowhere", headers={f"X-{i}": "a" * 8000 for i in range(10)})).status_code == 431
    assert (await _call("GET", "/nowhere?q=" + "a" * 20_000)).status_code == 414
    assert (await _call("GET", "/nowhere?q=a%00b")).status_code == 400
    assert (await _call("GET", "/items/a%00b")).status_code == 404
    assert (await _call("GET", "/nowhere?q=" + "a" * 10_000)).status_code == 404   # within bounds: routed


async def test_a_large_body_is_parsed_off_the_event_loop_with_the_same_rules():
    """A ~1 MiB body of small arrays: its checks walk 300,000 containers in Python. Parsed on a thread, it
    leaves the event loop free: a ticker on the loop is never held for long, where parsing on the loop
    would hold it for the whole walk."""
    import asyncio
    import gc
    import time

    raw = b"[" + b",".join([b"[1]"] * 260_000) + b"]"
    gc.disable()   # the collector's passes over the 260,000 new lists would hold the loop from any thread
    try:
        started = time.perf_counter()
        parse_json(raw)
        walk = time.perf_counter() - started
    finally:
        gc.enable()

    longest_gap = 0.0

    async def ticker(stop: asyncio.Event):
        nonlocal longest_gap
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest_gap = max(longest_gap, now - last)
            last = now

    stop = asyncio.Event()
    gc.disable()
    try:
        ticking = asyncio.create_task(ticker(stop))
        await asyncio.sleep(0.01)
        response = await _call("POST", "/echo", content=raw)
        stop.set()
        await ticking
    finally:
        gc.enable()
    assert response.status_code == 200 and len(response.json()["got"]) == 260_000
    assert longest_gap < walk * 0.6, (longest_gap, walk)

    nested = b"[" * 40 + b"]" * 40 + b" " * (1 << 17)   # past the off-loop size, still too deep
    response = await _call("POST", "/echo", content=nested)
    assert response.status_code == 400 and "nested deeper" in response.json()["error"]["message"]
