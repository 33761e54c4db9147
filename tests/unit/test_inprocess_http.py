"""In-process service calls reach the app exactly as httpx's ASGI transport would deliver them."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from kilonova.common.clients import Endpoints


async def echo_app(scope, receive, send):
    """Answers with what it was sent; a path under /redirect answers 302, /chunked in two body parts."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {"method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(), "root_path": scope["root_path"], "scheme": scope["scheme"],
            "server": list(scope["server"]), "body": body.decode("utf-8"),
            "headers": sorted([k.decode(), v.decode()] for k, v in scope["headers"])}
    payload = json.dumps(seen).encode()
    status = 302 if scope["path"].startswith("/v2.1/redirect") else 201
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"x-answer", b"yes"),
                            (b"location", b"http://compute.example:8774/v2.1/elsewhere")]})
    if scope["path"].endswith("/chunked"):
        await send({"type": "http.response.body", "body": payload[:5], "more_body": True})
        payload = payload[5:]
    await send({"type": "http.response.body", "body": payload})


REQUESTS = [
    ("GET", "/servers", {}),
    ("GET", "servers/detail?all_tenants=1&name=a%20b", {}),
    ("GET", "/os-hypervisors", {"params": {"limit": 2, "marker": "x y", "tag": ["a", "b"]}}),
    ("POST", "/servers", {"json": {"server": {"name": "caf\u00e9", "n": [1, 2.5, None, True]}},
                          "headers": {"X-Auth-Token": "tok", "Accept": "application/json"}}),
    ("PUT", "/servers/1", {"content": b"raw bytes", "headers": [("Content-Type", "text/plain")]}),
    ("POST", "/servers/1/action", {}),
    ("DELETE", "/servers/1", {"headers": {"host": "other.example"}}),
    ("GET", "/servers/with space", {}),
    ("GET", "/chunked", {}),
    ("GET", "/redirect", {"follow_redirects": False}),
]


@pytest.mark.parametrize("method,url,kwargs", REQUESTS)
def test_in_process_request_matches_httpx_asgi(method, url, kwargs):
    async def both():
        endpoints = Endpoints(urls={"compute": "http://compute.example:8774/v2.1"}, apps={"compute": echo_app})
        ours = endpoints.http_client("compute")
        theirs = httpx.AsyncClient(transport=httpx.ASGITransport(app=echo_app),
                                   base_url="http://compute.example:8774/v2.1")
        async with ours, theirs:
            return await ours.request(method, url, **kwargs), await theirs.request(method, url, **kwargs)

    mine, reference = asyncio.run(both())
    assert mine.status_code == reference.status_code
    assert mine.json() == reference.json()
    assert mine.headers["x-answer"] == reference.headers["x-answer"] == "yes"


def test_convenience_methods_take_the_in_process_path_and_see_errors():
    async def failing_app(scope, receive, send):
        raise RuntimeError("handler bug")

    async def go():
        endpoints = Endpoints(urls={"image": "http://127.0.0.1:9292"}, apps={"image": echo_app})
        async with endpoints.http_client("image") as client:
            got = await client.get("/v2/images", params={"name": "cirros"}, headers={"X-Auth-Token": "t"})
            endpoints.apps["image"] = failing_app
            with pytest.raises(RuntimeError, match="handler bug"):
                await client.get("/v2/images")
            return got

    got = asyncio.run(go())
    assert got.status_code == 201
    seen = got.json()
    assert (seen["path"], seen["query"]) == ("/v2/images", "name=cirros")
    assert ["x-auth-token", "t"] in seen["headers"] and ["host", "127.0.0.1:9292"] in seen["headers"]
