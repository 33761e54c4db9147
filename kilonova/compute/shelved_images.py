"""The snapshot image of a shelve, as the server's system_metadata records it.

The API records ``shelved_image_id`` with the state change that starts a shelve, so whoever ends a
shelve (its host, or the conductor's reconcile pass when the host died half-way) knows the image to
delete; the host adds ``shelved_at`` and ``shelved_host`` once the server is shelved.
"""
from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)

SHELVED_KEYS = ("shelved_at", "shelved_image_id", "shelved_host")
SHELVING_TASK_STATES = ("shelving", "shelving_image_pending_upload", "shelving_image_uploading")


def shelved_image_id(instance: dict) -> str | None:
    return (instance.get("system_metadata") or {}).get("shelved_image_id")


def without_shelved_keys(system_metadata: dict | None) -> dict:
    return {k: v for k, v in (system_metadata or {}).items() if k not in SHELVED_KEYS}


async def delete(images, image_id: str | None, **kwargs) -> None:
    """Delete the image through ``images`` (a client on the image service; ``kwargs`` go with the request),
    best effort: one already gone is fine, any other failure is logged."""
    if not image_id or images is None:
        return
    try:
        reply = await images.delete(f"/v2/images/{image_id}", **kwargs)
        if reply.status_code not in (204, 404):
            LOG.warning("could not delete shelved image %s: %s", image_id, reply.status_code)
    except Exception:  # noqa: BLE001 - the server's state is settled already; a leftover image is only logged
        LOG.warning("could not delete shelved image %s", image_id, exc_info=True)
