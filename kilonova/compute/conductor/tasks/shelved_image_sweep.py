"""The sweep of shelve snapshots nobody deleted: every image recorded in a cell's ledger of shelve snapshots
(kilonova/compute/db/shelved_images.py) that no server refers to any more is deleted, then forgotten.

Whoever ends a shelve deletes its image right after clearing the server's shelved state (the host at
unshelve or when the shelve fails, the conductor's shelving reconcile pass, the API's delete); a crash or an
unreachable image service between the two used to leave the image behind for good. Here the image service
usually answers 404 (the image went as it should) and only the ledger row goes. Only images made for a
shelve are in the ledger, so a user's own snapshot, even one named "<server>-shelved", is never touched.
"""
from __future__ import annotations

import logging

from kilonova.compute.conductor.tasks import reconcile
from kilonova.compute.db import shelved_images as ledger

LOG = logging.getLogger(__name__)


@reconcile
async def sweep_shelved_images(conductor) -> int:
    """Delete the unreferenced shelve snapshots of every cell; how many were still there."""
    if conductor.images is None:
        return 0
    deleted = 0
    for cell in conductor.cells.real():
        try:
            for row in await cell.db.read(ledger.unreferenced):
                if await _delete(conductor.images, row):
                    await cell.db.write(ledger.forget, row["image_id"])
                    deleted += row["found"]
        except Exception:  # noqa: BLE001 - a cell or an image service that is down: the next pass retries
            LOG.warning("sweeping shelve snapshots in cell %s failed; next pass retries", cell.name, exc_info=True)
    return deleted


async def _delete(images, row: dict) -> bool:
    """True once the image is gone (``row["found"]``: it was still there)."""
    reply = await images.delete(f"/v2/images/{row['image_id']}")
    if reply.status_code == 204:
        LOG.warning("deleted shelve snapshot %s of server %s: its deletion had been cut short", row["image_id"],
                    row["instance_uuid"])
    elif reply.status_code == 403:  # protected by its owner since: theirs to keep
        LOG.warning("shelve snapshot %s of server %s is no longer referenced but protected: kept", row["image_id"],
                    row["instance_uuid"])
    elif reply.status_code != 404:
        LOG.warning("could not delete shelve snapshot %s: %s", row["image_id"], reply.status_code)
        return False
    row["found"] = reply.status_code == 204
    return True
