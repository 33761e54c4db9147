"""Why a request found no host, said stage by stage, and the trace a dry run prints.

When Placement answers no candidate, the query is asked again without the pre-filters' additions, then
adding them back one at a time, so the answer names the stage that left nothing: a resource no host has
free (each resource class asked alone), or the trait / aggregate a pre-filter required. These extra
queries run only when a request has already failed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from kilonova.compute.scheduler.request_filters import PlacementQuery


def describe(resources: dict[str, int]) -> str:
    return ", ".join(f"{rc}:{amount}" for rc, amount in sorted(resources.items()))


@dataclass
class Trace:
    """What each stage of one decision did (a dry run, or the explanation of a failure)."""
    stages: list[dict[str, Any]] = field(default_factory=list)

    def add(self, stage: str, kind: str, before: int, after: int, reason: str, removed: list[str] = ()) -> None:
        self.stages.append({"stage": stage, "kind": kind, "hosts_before": before, "hosts_after": after,
                            "removed": sorted(removed), "reason": reason})


def placement_error(response) -> str:
    """What Placement said when it refused a query (its error's detail, e.g. "No such trait(s): X.")."""
    try:
        detail = response.json()["errors"][0]["detail"]
    except (ValueError, KeyError, IndexError, TypeError):
        return f"{response.status_code} {response.text[:200]}"
    return detail.strip().splitlines()[-1].strip()


async def _count(placement, params) -> int | None:
    """Candidate hosts (distinct root providers) for ``params``; None when Placement refused the query."""
    response = await placement.get("/allocation_candidates", params=params)
    if response.status_code != 200:
        return None
    body = orjson.loads(response.content)
    return len({next(iter(r["allocations"])) for r in body.get("allocation_requests", [])})


async def empty_placement(placement, query: PlacementQuery, limit: int, trace: Trace | None = None) -> str:
    """The reason Placement offered no host for ``query``, stage by stage."""
    base = await _count(placement, query.params(limit, upto=0))
    tree = " in the requested destination's tree" if query.in_tree else ""
    if not base:
        short = []
        for rc, amount in sorted(query.resources.items()):
            alone = PlacementQuery({rc: amount}, in_tree=query.in_tree)
            if not await _count(placement, alone.params(limit, upto=0)):
                short.append(f"{rc}:{amount}")
        missing = ", ".join(short) or describe(query.resources) + " together"
        reason = f"no resource provider{tree} has {missing} available"
        if trace is not None:
            trace.add("placement", "placement", 0, 0, reason)
        return f"No valid host was found. Placement has {reason} (asked for {describe(query.resources)})."
    found = base
    if trace is not None:
        trace.add("placement", "placement", base, base, f"{base} host(s){tree} have {describe(query.resources)}")
    for index, (stage, added) in enumerate(query.steps, start=1):
        now = await _count(placement, query.params(limit, upto=index)) or 0
        what = _added(added)
        if trace is not None:
            trace.add(stage, "prefilter", found, now, f"{added['why']}: {what}")
        if not now:
            return (f"No valid host was found. Placement found {found} host(s){tree} with "
                    f"{describe(query.resources)}; pre-filter {stage} left none ({added['why']}: {what}).")
        found = now
    return (f"No valid host was found. Placement has no resource provider{tree} with "
            f"{describe(query.resources)} and every pre-filter's traits and aggregates available.")


def _added(added: dict[str, Any]) -> str:
    parts = []
    required = [t for t in added["required"] if not t.startswith("!")]
    forbidden = [t[1:] for t in added["required"] if t.startswith("!")]
    if required:
        parts.append("requires trait " + ", ".join(required))
    if forbidden:
        parts.append("forbids trait " + ", ".join(forbidden))
    for member in added["member_of"]:
        if member.startswith("!in:"):
            parts.append("not in aggregates " + member[4:])
        else:
            parts.append("in aggregates " + member.removeprefix("in:"))
    return "; ".join(parts)
