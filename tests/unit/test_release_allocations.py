"""Giving back a server's claims and ports outlasts a Placement or network service that fails for a moment (a
leaked claim or port is capacity lost until an operator's audit), and stops at once on an answer that will not
change."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from kilonova.compute.cleanup import release_allocations, release_ports


def _placement(answers: list) -> tuple[httpx.AsyncClient, list[str]]:
    """A client whose service answers requests with ``answers`` in turn (an exception is raised; a dict is a
    200 with that body)."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, dict):
            return httpx.Response(200, json=answer)
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


def test_a_placement_still_unreachable_after_the_patience_raises():
    """As a single try did: the delete that called it stays for the stuck-delete sweep."""
    client, seen = _placement([httpx.ConnectError("refused")] * 50)
    with pytest.raises(httpx.ConnectError):
        asyncio.run(release_allocations(client, "c5", patience=1))
    assert len(seen) >= 2


def test_ports_are_released_through_a_failing_network_service():
    network, seen = _placement([503, {"ports": [{"id": "p2"}]}, 500, 204, 204])
    asyncio.run(release_ports(network, "s1", [{"port_id": "p1"}]))
    assert seen[:2] == ["GET /v2.0/ports", "GET /v2.0/ports"]
    assert sorted(seen[2:]) == ["DELETE /v2.0/ports/p1", "DELETE /v2.0/ports/p1", "DELETE /v2.0/ports/p2"] or \
        sorted(seen[2:]) == ["DELETE /v2.0/ports/p1", "DELETE /v2.0/ports/p2", "DELETE /v2.0/ports/p2"]
