"""Placement claims of an evacuation, as upstream holds them.

An evacuated server is one consumer with allocations on two providers: its failed source host's
(kept, since nobody knows yet what is left running there) and its destination's. The source's
part is dropped when the source host's agent comes back and cleans up (or when the instance is
deleted); the destination's part is dropped when the evacuation fails.

Both changes are a PUT of the consumer's whole allocations with its generation (Placement checks
the capacity of what is added); a concurrent change of the consumer is retried. Both may run twice.
"""
from __future__ import annotations

import logging

from kilonova.compute.move_claims import RETRIES, ClaimError, held

LOG = logging.getLogger(__name__)


def _generation_conflict(response) -> bool:
    return response.status_code == 409 and "concurrent_update" in response.text


async def _put(placement, consumer: str, allocations: dict, generation, project: str, user: str):
    return await placement.put(f"/allocations/{consumer}", json={
        "allocations": allocations, "project_id": project, "user_id": user, "consumer_generation": generation})


async def add_provider(placement, consumer: str, provider: str, resources: dict[str, int] | None,
                       project_id: str, user_id: str) -> None:
    """``consumer`` also holds ``resources`` on ``provider`` (by default: what it holds on its other
    provider, as upstream copies the source's claim to a forced destination). ClaimError when the
    destination cannot take it."""
    for _ in range(RETRIES):
        allocations, generation, project, user = await held(placement, consumer)
        if provider in allocations:
            return  # done already (a retried message)
        wanted = resources or next(iter(allocations.values()), {}).get("resources")
        if not wanted:
            raise ClaimError(f"no resources known to claim for {consumer} on {provider}")
        allocations[provider] = {"resources": dict(wanted)}
        response = await _put(placement, consumer, allocations, generation, project or project_id, user or user_id)
        if response.status_code == 204:
            return
        if not _generation_conflict(response):
            raise ClaimError(f"Unable to allocate resources on the destination provider {provider}: "
                             f"{response.status_code} {response.text[:300]}")
    raise ClaimError(f"claiming {provider} for {consumer}: too many concurrent changes")


async def remove_provider(placement, consumer: str, provider: str) -> bool:
    """``consumer`` no longer holds anything on ``provider`` (its other allocations stay). False when it
    held nothing there."""
    for _ in range(RETRIES):
        allocations, generation, project, user = await held(placement, consumer)
        if provider not in allocations:
            return False
        del allocations[provider]
        if allocations:
            response = await _put(placement, consumer, allocations, generation, project, user)
        else:  # nothing else held: an empty allocation set removes the consumer
            response = await placement.post("/allocations", json={consumer: {
                "allocations": {}, "project_id": project, "user_id": user, "consumer_generation": generation}})
        if response.status_code == 204:
            return True
        if not _generation_conflict(response):
            raise ClaimError(f"allocations of {consumer} on {provider} could not be removed: "
                             f"{response.status_code} {response.text[:300]}")
    raise ClaimError(f"removing {provider} from {consumer}: too many concurrent changes")


async def merge_into(placement, source: str, target: str, project_id: str, user_id: str) -> None:
    """Everything ``source`` holds joins ``target``'s allocations, in one transaction (the migration's claim of
    the source host back into the instance, once the scheduler claimed the destination for it)."""
    for _ in range(RETRIES):
        moving, source_generation, _p, _u = await held(placement, source)
        if not moving:
            return
        allocations, target_generation, project, user = await held(placement, target)
        for provider, allocation in moving.items():
            allocations.setdefault(provider, allocation)
        project, user = project or project_id, user or user_id
        response = await placement.post("/allocations", json={
            source: {"allocations": {}, "project_id": project, "user_id": user,
                     "consumer_generation": source_generation},
            target: {"allocations": allocations, "project_id": project, "user_id": user,
                     "consumer_generation": target_generation}})
        if response.status_code == 204:
            return
        if not _generation_conflict(response):
            raise ClaimError(f"merging the allocations of {source} into {target} was refused: "
                             f"{response.status_code} {response.text[:300]}")
    raise ClaimError(f"merging {source} into {target}: too many concurrent changes")


async def provider_of(placement, name: str) -> str | None:
    """The uuid of the resource provider named ``name`` (a compute node's provider has its node's name)."""
    response = await placement.get("/resource_providers", params={"name": name})
    if response.status_code != 200:
        return None
    found = response.json().get("resource_providers", [])
    return found[0]["uuid"] if found else None
