"""Snapshots of a qcow2 volume a guest has open, taken and deleted with its compute host's help, as Cinder's
file-based drivers do it through Nova's ``os-assisted-volume-snapshots``.

Take: the volume service makes the new overlay on the active file, asks the compute service to switch the
guest's disk onto it (POST), and waits for the host's report (``os-update_snapshot_status``: ``creating`` at
90% -- the overlay is then the volume's active file and the snapshot ``available`` -- or ``error``: the
overlay goes, the snapshot is ``error``). Delete: the merge Cinder would ask for (qcow2_chain.plan_online_delete),
the DELETE, and on ``deleting`` at 90% the chain's info changed and the stale file removed; ``error_deleting``
leaves everything as it was. The info file changes while the report is being answered, before the host reads
the volume's connection again (it then names the new active file). A host that does not answer within
``ASSIST_TIMEOUT`` fails the snapshot.

Only a volume whose guest opens its file on the host (a ``local`` connection) can be assisted: one reached
over NBD is served by this service's qemu-nbd, whose file no hypervisor can switch; its snapshot is an error
saying so.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from kilonova.volume import repo

LOG = logging.getLogger(__name__)
ASSIST_TIMEOUT = 120.0


class AssistedSnapshots:
    def __init__(self, service):
        self.svc = service
        self.progress: dict[str, str] = {}   # the hosts' last reported progress, per snapshot
        self._pending: dict[str, tuple[asyncio.Future, Callable[[], None]]] = {}

    def _connections(self, volume: dict[str, Any]) -> list[dict]:
        return [a["connection_info"] for a in volume["attachments"]
                if a["connection_info"] and a["attach_status"] in ("attaching", "attached")]

    async def wanted(self, volume_id: str) -> bool:
        """Whether the volume is qcow2 and connected to a host (its guest has the file open)."""
        if self.svc.backend.format_of(volume_id) != "qcow2":
            return False
        volume = await self.svc.db.read(repo.get_volume, volume_id)
        return bool(self._connections(volume))

    async def reported(self, snapshot_id: str, status: str, progress: str | None) -> None:
        if progress:
            self.progress[snapshot_id] = progress
        pending = self._pending.get(snapshot_id)
        if pending is None or pending[0].done():
            return
        future, on_done = pending
        if status in ("error", "error_deleting"):
            future.set_result(False)
        elif progress and progress.startswith("90"):
            try:
                await asyncio.to_thread(on_done)
            except OSError as exc:
                LOG.error("snapshot %s: the chain could not follow the host's change: %s", snapshot_id, exc)
                future.set_result(False)
                return
            future.set_result(True)

    async def _ask(self, snapshot_id: str, on_done: Callable[[], None], method: str, path: str, ok: int,
                   **kwargs) -> bool:
        """Ask the compute service, then wait for the host's report; True when it did it."""
        future = asyncio.get_running_loop().create_future()
        self._pending[snapshot_id] = (future, on_done)
        try:
            response = await self.svc.compute.request(method, path, **kwargs)
            if response.status_code != ok:
                LOG.error("snapshot %s: the compute service answered %s: %s", snapshot_id, response.status_code,
                          response.text[:300])
                return False
            return await asyncio.wait_for(asyncio.shield(future), ASSIST_TIMEOUT)
        except asyncio.TimeoutError:
            LOG.error("snapshot %s: no report from the compute host within %d s", snapshot_id, ASSIST_TIMEOUT)
            return False
        except Exception as exc:  # noqa: BLE001 - the compute service is unreachable
            LOG.error("snapshot %s: asking the compute service failed: %s", snapshot_id, exc)
            return False
        finally:
            self._pending.pop(snapshot_id, None)
            self.progress.pop(snapshot_id, None)

    def _local_only(self, volume: dict[str, Any], snapshot_id: str) -> bool:
        remote = [c for c in self._connections(volume) if c.get("driver_volume_type") != "local"]
        if remote:
            LOG.error("snapshot %s of volume %s: the volume is open over NBD on a host, whose hypervisor cannot "
                      "switch its file; detach it to snapshot it", snapshot_id, volume["id"])
        return not remote

    async def create(self, snapshot_id: str, volume_id: str) -> None:
        chains, db = self.svc.backend.chains, self.svc.db
        volume = await db.read(repo.get_volume, volume_id)
        done = False
        if self._local_only(volume, snapshot_id):
            overlay = await asyncio.to_thread(chains.make_overlay, volume_id, snapshot_id)
            body = {"snapshot": {"volume_id": volume_id, "create_info": {
                "snapshot_id": snapshot_id, "type": "qcow2", "new_file": overlay.name, "id": snapshot_id}}}
            done = await self._ask(snapshot_id, lambda: chains.snapshot_taken(volume_id, snapshot_id), "POST",
                                   "/v2.1/os-assisted-volume-snapshots", 200, json=body)
            if not done:
                await asyncio.to_thread(chains.drop_overlay, volume_id, snapshot_id)
        await db.write(repo.set_snapshot_status, snapshot_id, "available" if done else "error", ("creating",))

    async def delete(self, snapshot_id: str, volume_id: str) -> None:
        chains, db = self.svc.backend.chains, self.svc.db
        volume = await db.read(repo.get_volume, volume_id)
        done = False
        if self._local_only(volume, snapshot_id):
            delete_info, stale, after = await asyncio.to_thread(chains.plan_online_delete, volume_id, snapshot_id)
            done = await self._ask(snapshot_id, lambda: chains.online_deleted(volume_id, snapshot_id, stale, after),
                                   "DELETE", f"/v2.1/os-assisted-volume-snapshots/{snapshot_id}", 204,
                                   params={"delete_info": json.dumps(delete_info)})
        if done:
            await db.write(repo.delete_snapshot, snapshot_id)
        else:
            await db.write(repo.set_snapshot_status, snapshot_id, "error_deleting", ("deleting",))
