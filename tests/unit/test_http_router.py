"""The shared router: first-match order, parameters, 404 and 405 with every allowed method."""
from __future__ import annotations

import pytest

from kilonova.common.http import HTTPError, Router


async def listing(request): ...
async def one(request, item_id): ...
async def anything(request, kind, item_id): ...
async def root(request): ...


def router() -> Router:
    r = Router()
    r.add("GET", "/", root)
    r.add("GET", "/items", listing)
    r.add("GET", "/items/{item_id}", one)
    r.add("PUT", "/{kind}/{item_id}", anything)   # starts with a parameter: may match any first segment
    return r


@pytest.mark.parametrize("method,path,handler,params", [
    ("GET", "/", root, {}), ("GET", "", root, {}),
    ("GET", "/items/", listing, {}),
    ("GET", "/items/7", one, {"item_id": "7"}),
    ("PUT", "/items/7", anything, {"kind": "items", "item_id": "7"}),   # the later route, by method
    ("PUT", "/other/8", anything, {"kind": "other", "item_id": "8"}),
    ("HEAD", "/items", listing, {}),
])
def test_matches(method, path, handler, params):
    assert router().match(method, path) == (handler, params)


def test_405_lists_the_methods_of_every_route_matching_the_path():
    with pytest.raises(HTTPError) as caught:
        router().match("DELETE", "/items/7")
    assert caught.value.status == 405 and caught.value.headers["Allow"] == "GET, HEAD, PUT"
    with pytest.raises(HTTPError) as caught:
        router().match("GET", "/unknown/9")
    assert caught.value.status == 405 and caught.value.headers["Allow"] == "PUT"


def test_404_for_unknown_paths_and_routes_added_late_are_found():
    r = router()
    with pytest.raises(HTTPError) as caught:
        r.match("GET", "/unknown")
    assert caught.value.status == 404
    r.add("GET", "/unknown", listing)
    assert r.match("GET", "/unknown") == (listing, {})
