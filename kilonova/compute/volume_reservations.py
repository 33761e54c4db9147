"""A server's volume connection replaced by a fresh reservation of the volume for the same server.

As upstream's compute manager does it when a server leaves a host (``_terminate_volume_connections``) or is
evacuated (the rebuild's ``detach_block_devices``): a new attachment without a connector is made first,
then the connected one deleted, so the volume stays ``reserved`` for the server throughout and is never
free for another one; whoever runs the server next connects the reservation with its own connector. An
NBD export made for the old attachment's host stops with it. Used by the compute agents (through the
conductor's block device calls) and by the conductor when it gives up on an evacuation.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from kilonova.compute.volume_api import VolumeAPI, VolumeError

Update = Callable[[dict, dict], Awaitable[dict]]  # (mapping, values) -> the mapping as recorded


async def reserve_again(volumes: VolumeAPI, bdm: dict, update: Update) -> dict:
    """``bdm``'s attachment replaced by a new reservation; answers the mapping as recorded."""
    try:
        reservation = await volumes.attachment_create(bdm["volume_id"], bdm["instance_uuid"])
    except VolumeError as exc:
        if exc.status != 400 or not bdm.get("attachment_id"):
            raise
        # Refused while the old connection is half made (``attaching``: a move cut short, as Cinder
        # refuses it): that connection goes first.
        await volumes.attachment_delete(bdm["attachment_id"])
        bdm = await update(bdm, {"attachment_id": None, "connection_info": None})
        reservation = await volumes.attachment_create(bdm["volume_id"], bdm["instance_uuid"])
    recorded = await update(bdm, {"attachment_id": reservation["id"], "connection_info": None})
    if bdm.get("attachment_id"):
        await volumes.attachment_delete(bdm["attachment_id"])
    return recorded
