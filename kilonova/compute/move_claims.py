"""Placement claims during a move (resize, cold and live migration), as upstream holds them since Queens.

While a server moves, its migration record is the consumer of the source host's allocation and the
instance is the consumer of the destination's:

1. ``hand_to_migration`` -- before scheduling: the instance's allocation becomes the migration's,
   in one atomic ``POST /allocations`` (both consumers' generations checked), so the scheduler can
   claim the destination for the instance without the source counting twice for it.
2. the scheduler claims the destination for the instance (``PUT /allocations/{instance}``).
3. at confirm, ``drop`` the migration's (the source's capacity is free again); at revert, or when the
   move fails before the guest left the source, ``give_back_to_instance``: the instance holds the
   source allocation again and the destination's is gone, in one atomic call.

Every step may be run twice (a retried message, a reconcile pass after a crash): a step already done
is recognised and is not an error.
"""
from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)

# Conflicts on consumer generations (another writer changed a consumer meanwhile) are retried this often.
RETRIES = 4


class ClaimError(Exception):
    """Placement refused a change of a move's claims."""


async def held(placement, consumer: str) -> tuple[dict, int | None, str | None, str | None]:
    """(allocations {provider: {"resources": {...}}}, consumer generation, project, user) of ``consumer``."""
    response = await placement.get(f"/allocations/{consumer}")
    if response.status_code != 200:
        raise ClaimError(f"allocations of {consumer} unreadable: {response.status_code} {response.text[:200]}")
    body = response.json()
    allocations = {rp: {"resources": a["resources"]} for rp, a in body.get("allocations", {}).items()}
    return allocations, body.get("consumer_generation"), body.get("project_id"), body.get("user_id")


async def _swap(placement, source: str, target: str, project_id: str, user_id: str,
                target_is_new: bool = False) -> dict | None:
    """Move all of ``source``'s allocations to ``target`` (which must then hold nothing else).

    Returns the allocations moved (what ``target`` holds now); None when ``source`` holds nothing
    (already moved, or never claimed). ``target_is_new``: the target most likely has no allocations yet,
    so the first try does not read them (Placement refuses it as a concurrent update if it has, and the
    next try reads them).
    """
    for attempt in range(RETRIES):
        allocations, source_generation, project, user = await held(placement, source)
        if not allocations:
            return None
        if target_is_new and attempt == 0:
            target_generation = None
        else:
            _target_allocations, target_generation, _p, _u = await held(placement, target)
        body = {
            source: {"allocations": {}, "project_id": project or project_id, "user_id": user or user_id,
                     "consumer_generation": source_generation},
            target: {"allocations": allocations, "project_id": project or project_id, "user_id": user or user_id,
                     "consumer_generation": target_generation},
        }
        response = await placement.post("/allocations", json=body)
        if response.status_code == 204:
            return allocations
        if response.status_code != 409 or "concurrent_update" not in response.text:
            raise ClaimError(f"moving the allocations of {source} to {target} was refused: "
                             f"{response.status_code} {response.text[:300]}")
        LOG.info("consumer generation conflict moving %s's allocations to %s; retrying", source, target)
    raise ClaimError(f"moving the allocations of {source} to {target}: too many concurrent changes")


async def hand_to_migration(placement, instance_uuid: str, migration_uuid: str, project_id: str,
                            user_id: str) -> dict:
    """The instance's allocations (the source host's) become the migration's. Returns what the migration
    holds now (empty when the instance held nothing, e.g. a server whose claim was lost)."""
    moved = await _swap(placement, instance_uuid, migration_uuid, project_id, user_id, target_is_new=True)
    if moved is not None:
        return moved
    return (await held(placement, migration_uuid))[0]


async def give_back_to_instance(placement, migration_uuid: str, instance_uuid: str, project_id: str,
                                user_id: str) -> bool:
    """Revert: the instance holds the source allocation again (its destination claim is dropped in the same
    transaction). False when the migration held nothing (already given back, or confirmed)."""
    return await _swap(placement, migration_uuid, instance_uuid, project_id, user_id) is not None


async def drop(placement, consumer: str) -> None:
    """Remove every allocation of ``consumer`` (the migration's at confirm; a failed destination claim)."""
    response = await placement.delete(f"/allocations/{consumer}")
    if response.status_code not in (204, 404):
        raise ClaimError(f"allocations of {consumer} could not be removed: {response.status_code} "
                         f"{response.text[:200]}")
