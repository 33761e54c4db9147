"""Giving back a server's claims outlasts a Placement that fails for a moment (a leaked claim is capacity
lost until an operator's audit), and stops at once on an answer that will not change."""
from __future__ import annotations

import asyncio

import httpx

from kilonova.compute.cleanup import release_allocations


def _placement(answers: list) -> tuple[httpx.AsyncClient, list[str]]:
    """A client whose Placement answers DELETEs with ``answers`` in turn (an exception is raised)."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"errors": [{"status": answer, "title": "x", "detail": "x"}]})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://placement"), seen


def test_a_release_is_tried_again_while_placement_fails_or_is_unreachable():
    client, seen = _placement([500, httpx.ConnectError("refused"), 503, 204])
    assert asyncio.run(release_allocations(client, "c1", patience=10)) is True
    assert seen == ["DELETE /allocations/c1"] * 4


def test_a_release_refused_for_good_is_not_repeated():
    client, seen = _placement([409])
    assert asyncio.run(release_allocations(client, "c2", patience=10)) is False
    assert len(seen) == 1


def test_a_release_gives_up_after_its_patience():
    client, seen = _placement([500] * 50)
    assert asyncio.run(release_allocations(client, "c3", patience=1)) is False
    assert 2 <= len(seen) <= 5


def test_claims_already_gone_count_as_released():
    client, _ = _placement([404])
    assert asyncio.run(release_allocations(client, "c4")) is True
