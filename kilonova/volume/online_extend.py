"""Extending an attached qcow2 volume, as Cinder's NFS driver does it since ``os-extend_volume_completion``
(3.71): ``qemu-img`` cannot resize a file a running QEMU holds, so only the guest's hypervisor can grow it.

The volume goes ``extending`` with the size asked recorded (``extend_new_size``, shown in its metadata as
Cinder's admin metadata key is), and its one server is sent the ``volume-extended`` event; the compute host,
seeing the volume ``extending``, grows the guest's disk to that size (libvirt's block resize: QEMU grows the
file) and answers ``os-extend_volume_completion`` -- ``error: false``: the volume has its new size and is
``in-use`` again; ``error: true``: ``error_extending``, its size unchanged. A multiattach volume, or an event
the compute service does not take, fails at once. An answer that never comes (a host or this service killed)
is not waited for past ``[volume] assisted_snapshot_timeout``: the file's own size then says whether the host
grew it.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from kilonova.common.http import HTTPError
from kilonova.volume import repo
from kilonova.volume.models import utcnow

LOG = logging.getLogger(__name__)


def wanted(svc, volume: dict[str, Any]) -> bool:
    """An attached volume whose file only its guest's hypervisor may grow."""
    return volume["status"] == "in-use" and svc.backend.format_of(volume["id"]) == "qcow2"


async def ask(svc, volume_id: str, new_size: int) -> None:
    """The ``volume-extended`` event to the volume's one server; the completion is the host's."""
    volume = await svc.db.read(repo.get_volume, volume_id)
    servers = sorted({a["instance_uuid"] for a in volume["attachments"]
                      if a["attach_status"] == "attached" and a["instance_uuid"]})
    if len(servers) != 1:
        LOG.error("volume %s: an attached qcow2 volume is extended by its one server's host; it has %d",
                  volume_id, len(servers))
        await finish(svc, volume_id, error=True)
        return
    try:
        response = await svc.compute.post("/v2.1/os-server-external-events", json={"events": [
            {"name": "volume-extended", "server_uuid": servers[0], "tag": volume_id}]})
        taken = response.status_code == 200 and all(e.get("code") == 200 for e in response.json()["events"])
    except Exception as exc:  # noqa: BLE001 - the compute service is unreachable
        LOG.error("volume %s: the volume-extended event could not be sent: %s", volume_id, exc)
        taken = False
    if not taken:
        await finish(svc, volume_id, error=True)


async def complete(svc, volume: dict[str, Any], error: bool) -> None:
    """``os-extend_volume_completion``: 400 unless the volume waits for it."""
    if volume["status"] != "extending" or volume.get("extend_new_size") is None:
        raise HTTPError(400, f"Invalid volume: Volume {volume['id']} is not waiting for the completion of an "
                             f"extend (status {volume['status']}).")
    if not await finish(svc, volume["id"], error):
        raise HTTPError(400, f"Invalid volume: Volume {volume['id']} is not waiting for the completion of an "
                             "extend.")


async def finish(svc, volume_id: str, error: bool) -> bool:
    def write(session):
        volume = repo.get_volume(session, volume_id)
        new_size = volume.get("extend_new_size")
        if volume["status"] != "extending" or new_size is None:
            return None
        if error:
            return repo.set_status(session, volume_id, "error_extending", ("extending",), extend_new_size=None)
        settled = "in-use" if any(a["attach_status"] == "attached" for a in volume["attachments"]) else "available"
        return repo.set_status(session, volume_id, settled, ("extending",), size=new_size, extend_new_size=None)

    done = await svc.db.write(write)
    if done is not None:
        LOG.info("volume %s: extend %s (%s GiB)", volume_id, "failed" if error else "done", done["size"])
    return done is not None


async def reap(svc, timeout: float) -> None:
    """Extends the compute service never answered within ``timeout``: done if the file grew, else failed."""
    before = utcnow() - timedelta(seconds=timeout)
    for volume in await svc.db.read(repo.volumes_in, ("extending",)):
        if volume["extend_new_size"] is None or volume["updated_at"] is None:
            continue
        if volume["updated_at"] > before.strftime("%Y-%m-%dT%H:%M:%S.%f"):
            continue
        allocated = await asyncio.to_thread(svc.backend.size_gb, volume["id"])
        grown = allocated is not None and allocated >= volume["extend_new_size"]
        LOG.warning("volume %s: no extend completion from the compute service within %d s; its file is %s GiB",
                    volume["id"], timeout, allocated)
        await finish(svc, volume["id"], error=not grown)
