"""Placement's ``GET /allocation_candidates`` answer, parsed for the scheduler.

Parsing the answer is a large part of a decision (1,000 candidates are about 470 KB of JSON, some
20,000 Python objects). Between two decisions for the same kind of server the allocation requests
part is usually byte for byte the same -- the same providers fit, only their usage changed, and
usage lives in the provider summaries -- so that part is parsed once and kept while its bytes stay
the same. The summaries change with every claim, but one provider's at a time: each provider's
summary is kept by its bytes and only those that changed are parsed again. The kept objects are shared
between decisions: nothing may change them (a selection sent to the conductor carries a copy).

Both shortcuts only cut Placement's text where its layout puts a separator; each part must then parse
on its own, and parts that parse are exactly the whole (the text is their concatenation), so the
outcome is always that of parsing the whole answer, which any other layout gets.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson

_HEAD = b'{"allocation_requests": ['
_MIDDLE = b'], "provider_summaries": '
_BETWEEN, _LAST = b'"}, "', b'"}}'   # a summary ends with its root's uuid
KEPT = 4  # answers of this many kinds of request (flavors, traits) kept at once


class CandidateAnswers:
    def __init__(self) -> None:
        # bytes of an answer's allocation requests -> (provider uuid -> its first request, how many requests)
        self._kept: OrderedDict[bytes, tuple[dict[str, dict], int]] = OrderedDict()
        self.reused = 0   # answers whose allocation requests were not parsed again (for tests and stats)
        # bytes of one provider's summary -> its (uuid, summary) items, for the last answer's providers
        self._summaries: dict[bytes, list[tuple[str, dict]]] = {}

    def parse(self, content: bytes) -> tuple[dict[str, dict], int, dict[str, Any]]:
        """(provider uuid -> the first allocation request that names it, how many requests, the provider
        summaries) of an answer. An answer not laid out as Placement writes it is parsed whole."""
        split = self._split(content)
        if split is None:
            return _whole(content)
        requests_part, summaries_part = split
        known = self._kept.get(requests_part)
        try:
            summaries = self._parse_summaries(summaries_part)
            if known is None:
                requests = orjson.loads(b"[" + requests_part + b"]")
                known = (_by_provider(requests), len(requests))
                self._kept[requests_part] = known
                while len(self._kept) > KEPT:
                    self._kept.popitem(last=False)
            else:
                self._kept.move_to_end(requests_part)
                self.reused += 1
        except orjson.JSONDecodeError:
            return _whole(content)
        if not isinstance(summaries, dict):
            return _whole(content)
        return known[0], known[1], summaries

    def _parse_summaries(self, part: bytes) -> dict[str, Any]:
        """``{"<uuid>": {..., "root_provider_uuid": "<uuid>"}, ...}`` (1.29 on) cut after each provider."""
        if not (part.startswith(b'{"') and part.endswith(_LAST)):
            return orjson.loads(part)
        kept, now = self._summaries, {}
        summaries: dict[str, Any] = {}
        for piece in part[2:-len(_LAST)].split(_BETWEEN):
            items = kept.get(piece)
            if items is None:
                items = list(orjson.loads(b'{"' + piece + _LAST).items())
            now[piece] = items
            summaries.update(items)
        self._summaries = now
        return summaries

    @staticmethod
    def _split(content: bytes) -> tuple[bytes, bytes] | None:
        if not content.startswith(_HEAD) or not content.endswith(b"}"):
            return None
        middle = content.find(_MIDDLE, len(_HEAD))
        if middle < 0:
            return None
        # Neither part can hide the other's separator: uuids, class and trait names, numbers and
        # group suffixes have no quotes; a layout that differs fails to parse and is parsed whole.
        return content[len(_HEAD):middle], content[middle + len(_MIDDLE):-1]


def _whole(content: bytes) -> tuple[dict[str, dict], int, dict[str, Any]]:
    body = orjson.loads(content)
    requests = body.get("allocation_requests", [])
    return _by_provider(requests), len(requests), body.get("provider_summaries", {})


def _by_provider(requests: list[dict]) -> dict[str, dict]:
    by_provider: dict[str, dict] = {}
    for request in requests:
        by_provider.setdefault(next(iter(request["allocations"])), request)
    return by_provider
