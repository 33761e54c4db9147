"""The scheduler's parse of Placement's candidates answer keeps unchanged parts, never changing the outcome."""
from __future__ import annotations

import json
import uuid

import orjson
import pytest

from kilonova.compute.scheduler.candidate_answer import CandidateAnswers, _whole


def _answer(providers: list[str], used: dict[str, int] | None = None, tree: bool = True,
            traits: dict[str, list[str]] | None = None, parents: dict[str, str] | None = None, **dumps) -> bytes:
    used, traits, parents = used or {}, traits or {}, parents or {}
    requests = [{"allocations": {p: {"resources": {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}}},
                 "mappings": {"": [p]}} for p in providers]
    summaries = {}
    for p in providers:
        summary = {"resources": {"VCPU": {"capacity": 128, "used": used.get(p, 0)},
                                 "MEMORY_MB": {"capacity": 131072, "used": 512 * used.get(p, 0)}},
                   "traits": traits.get(p, [])}
        if tree:
            summary["parent_provider_uuid"] = parents.get(p)
            summary["root_provider_uuid"] = parents.get(p, p)
        summaries[p] = summary
    return json.dumps({"allocation_requests": requests, "provider_summaries": summaries}, **dumps).encode()


def _expected(content: bytes):
    body = orjson.loads(content)
    by_provider = {}
    for request in body["allocation_requests"]:
        by_provider.setdefault(next(iter(request["allocations"])), request)
    return by_provider, len(body["allocation_requests"]), body["provider_summaries"]


PROVIDERS = [str(uuid.uuid4()) for _ in range(20)]


def test_unchanged_requests_are_kept_and_changed_summaries_read_again():
    answers = CandidateAnswers()
    first = _answer(PROVIDERS)
    assert answers.parse(first) == _expected(first)
    assert answers.reused == 0
    second = _answer(PROVIDERS, used={PROVIDERS[3]: 5}, traits={PROVIDERS[7]: ["CUSTOM_A", "HW_CPU_X86_AVX"]})
    parsed = answers.parse(second)
    assert parsed == _expected(second)
    assert parsed[2][PROVIDERS[3]]["resources"]["VCPU"]["used"] == 5
    assert parsed[0] is answers.parse(first)[0]  # the same allocation requests: not parsed again
    assert answers.reused == 2
    fewer = _answer(PROVIDERS[5:])
    assert answers.parse(fewer) == _expected(fewer)


@pytest.mark.parametrize("content", [
    _answer(PROVIDERS, tree=False),                              # before 1.29: no tree in the summaries
    _answer(PROVIDERS, separators=(",", ":")),                   # another layout: parsed whole
    _answer(PROVIDERS, parents={PROVIDERS[1]: PROVIDERS[0]}),    # a nested provider
    _answer([]),                                                 # nothing fits
    _answer(PROVIDERS[:1]),
    b'{"provider_summaries": {}, "allocation_requests": []}',
])
def test_any_answer_parses_as_the_whole(content):
    answers = CandidateAnswers()
    assert answers.parse(content) == _expected(content) == _whole(content)
    assert answers.parse(content) == _expected(content)


def test_a_separator_inside_a_value_still_parses_as_the_whole():
    # A trait name cannot hold quotes, but whatever the text, parts that parse make up the whole.
    content = _answer(PROVIDERS[:3], traits={PROVIDERS[1]: ['X"}, "Y']})
    assert CandidateAnswers().parse(content) == _expected(content)


def test_bad_json_is_an_error():
    with pytest.raises(orjson.JSONDecodeError):
        CandidateAnswers().parse(b'{"allocation_requests": [}')
