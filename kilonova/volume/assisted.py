"""Snapshots of a qcow2 volume a guest has open, taken and deleted with its compute host's help, as Cinder's
file-based drivers do it through Nova's ``os-assisted-volume-snapshots``.

Take: the volume service makes the new overlay on the active file, asks the compute service to switch the
guest's disk onto it (POST), and waits for the host's report (``os-update_snapshot_status``: ``creating`` at
90% -- the overlay is then the volume's active file and the snapshot ``available`` -- or ``error``: the
overlay goes, the snapshot is ``error``). Delete: the merge Cinder would ask for (qcow2_chain.plan_online_delete),
the DELETE, and on ``deleting`` at 90% the chain's info changed and the stale file removed; ``error_deleting``
leaves everything as it was. The info file changes while the report is being answered, before the host reads
the volume's connection again (it then names the new active file). A host that does not answer within
``[volume] assisted_snapshot_timeout`` ends the snapshot.

A crash of this service does not end what the host was asked: the overlay being made and the plan of a merge
are on disk before the host is asked (``save_plan``), the host repeats its report until the restarted service
answers it, and ``resume`` waits again for what was in hand, up to the same deadline counted from the
snapshot's last change. A report nothing waits for any more is still acted on. Past the deadline without a
report, a new overlay a running QEMU holds open (its guest was switched, the report lost) is adopted -- the
snapshot was taken -- and any other is removed with the snapshot ``error``; a merge that was never reported
leaves the chain as recorded, ``error_deleting``.

Only a volume whose guest opens its file on the host (a ``local`` connection) can be assisted: one reached
over NBD is served by this service's qemu-nbd, whose file no hypervisor can switch; its snapshot is an error
saying so.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from kilonova.volume import repo
from kilonova.volume.models import utcnow

LOG = logging.getLogger(__name__)


class AssistedSnapshots:
    def __init__(self, service, timeout: float = 120.0):
        self.svc = service
        self.timeout = timeout
        self.progress: dict[str, str] = {}   # the hosts' last reported progress, per snapshot
        self._reports: dict[str, asyncio.Future] = {}   # snapshot id: the host's outcome (True: done)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)   # one ending at a time

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
        """A host's report (the API has moved the snapshot's status already when it is an error)."""
        if progress:
            self.progress[snapshot_id] = progress
        ok = False if status in ("error", "error_deleting") else (True if progress and progress.startswith("90")
                                                                    else None)
        if ok is None:
            return
        # Ended here, before the host is answered: the host reads the volume's connection next, which must name
        # the new active file. Whether or not a task still waits (none after a restart, or past its deadline).
        snapshot = await self.svc.db.read(repo.get_snapshot, snapshot_id)
        if status in ("creating", "error"):
            await self._end_create(snapshot_id, snapshot["volume_id"], ok)
        else:
            await self._end_delete(snapshot_id, snapshot["volume_id"], ok)
        waiting = self._reports.get(snapshot_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(ok)

    async def _ask(self, snapshot_id: str, method: str, path: str, ok: int, **kwargs) -> bool | None:
        """Ask the compute service; None once it took the request (the host reports later), False if it did not."""
        self._reports[snapshot_id] = asyncio.get_running_loop().create_future()
        try:
            response = await self.svc.compute.request(method, path, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the compute service is unreachable
            LOG.error("snapshot %s: asking the compute service failed: %s", snapshot_id, exc)
        else:
            if response.status_code == ok:
                return None
            LOG.error("snapshot %s: the compute service answered %s: %s", snapshot_id, response.status_code,
                      response.text[:300])
        self._reports.pop(snapshot_id, None)
        return False

    async def _wait(self, snapshot_id: str, deadline: datetime) -> bool | None:
        """The host's outcome, or None when none came before ``deadline``."""
        waiting = self._reports.setdefault(snapshot_id, asyncio.get_running_loop().create_future())
        try:
            seconds = max(0.0, (deadline - utcnow()).total_seconds())
            return await asyncio.wait_for(asyncio.shield(waiting), seconds)
        except asyncio.TimeoutError:
            LOG.error("snapshot %s: no report from the compute host within %d s", snapshot_id, self.timeout)
            return None
        finally:
            self._reports.pop(snapshot_id, None)
            self.progress.pop(snapshot_id, None)

    def _local_only(self, volume: dict[str, Any], snapshot_id: str) -> bool:
        remote = [c for c in self._connections(volume) if c.get("driver_volume_type") != "local"]
        if remote:
            LOG.error("snapshot %s of volume %s: the volume is open over NBD on a host, whose hypervisor cannot "
                      "switch its file; detach it to snapshot it", snapshot_id, volume["id"])
        return not remote

    def _deadline(self, snapshot: dict[str, Any] | None = None) -> datetime:
        if snapshot is None:
            return utcnow() + timedelta(seconds=self.timeout)
        changed = snapshot["updated_at"] or snapshot["created_at"]
        return datetime.strptime(changed, "%Y-%m-%dT%H:%M:%S.%f") + timedelta(seconds=self.timeout)

    # ---------------------------------------------------------------- take

    async def create(self, snapshot_id: str, volume_id: str) -> None:
        chains, db = self.svc.backend.chains, self.svc.db
        volume = await db.read(repo.get_volume, volume_id)
        if not self._local_only(volume, snapshot_id):
            await self._end_create(snapshot_id, volume_id, False)
            return
        overlay = await asyncio.to_thread(chains.make_overlay, volume_id, snapshot_id)
        body = {"snapshot": {"volume_id": volume_id, "create_info": {
            "snapshot_id": snapshot_id, "type": "qcow2", "new_file": overlay.name, "id": snapshot_id}}}
        if await self._ask(snapshot_id, "POST", "/v2.1/os-assisted-volume-snapshots", 200, json=body) is False:
            await self._end_create(snapshot_id, volume_id, False)
        elif await self._wait(snapshot_id, self._deadline()) is None:   # else the report ended it
            await self._end_create(snapshot_id, volume_id, None)

    async def _end_create(self, snapshot_id: str, volume_id: str, ok: bool | None) -> None:
        """The host switched the guest (True), could not (False) or never said (None: its overlay's lock tells)."""
        chains, db = self.svc.backend.chains, self.svc.db
        async with self._locks[snapshot_id]:
            snapshot = await db.read(repo.get_snapshot, snapshot_id)
            adopted = await asyncio.to_thread(chains.adopted, volume_id, snapshot_id)
            overlay = chains.overlay_path(volume_id, snapshot_id)
            if ok is None and not adopted and overlay.exists():
                ok = await asyncio.to_thread(chains.in_use, overlay)
                if ok:
                    LOG.warning("snapshot %s: the host never reported, but a guest has its overlay open: adopted",
                                snapshot_id)
            if ok and snapshot["status"] == "creating":
                if not adopted:
                    try:
                        await asyncio.to_thread(chains.snapshot_taken, volume_id, snapshot_id)
                    except OSError as exc:
                        LOG.error("snapshot %s: the chain could not follow the host's change: %s", snapshot_id, exc)
                        ok = False
                if ok:
                    await db.write(repo.set_snapshot_status, snapshot_id, "available", ("creating",))
                    return
            if not adopted:   # never made the volume's active file: nothing reads it
                await asyncio.to_thread(chains.drop_overlay, volume_id, snapshot_id)
            await db.write(repo.set_snapshot_status, snapshot_id, "available" if adopted else "error", ("creating",))

    # ---------------------------------------------------------------- delete

    async def delete(self, snapshot_id: str, volume_id: str) -> None:
        chains, db = self.svc.backend.chains, self.svc.db
        volume = await db.read(repo.get_volume, volume_id)
        if not self._local_only(volume, snapshot_id):
            await self._end_delete(snapshot_id, volume_id, False)
            return
        delete_info, stale, after = await asyncio.to_thread(chains.plan_online_delete, volume_id, snapshot_id)
        await asyncio.to_thread(chains.save_plan, volume_id, snapshot_id, stale, after)
        if await self._ask(snapshot_id, "DELETE", f"/v2.1/os-assisted-volume-snapshots/{snapshot_id}", 204,
                           params={"delete_info": json.dumps(delete_info)}) is False:
            await self._end_delete(snapshot_id, volume_id, False)
        elif await self._wait(snapshot_id, self._deadline()) is None:
            await self._end_delete(snapshot_id, volume_id, None)

    async def _end_delete(self, snapshot_id: str, volume_id: str, ok: bool | None) -> None:
        chains, db = self.svc.backend.chains, self.svc.db
        async with self._locks[snapshot_id]:
            plan = await asyncio.to_thread(chains.load_plan, volume_id, snapshot_id)
            if ok and plan is not None:
                try:
                    await asyncio.to_thread(chains.online_deleted, volume_id, snapshot_id, *plan)
                except OSError as exc:
                    LOG.error("snapshot %s: the chain could not follow the host's merge: %s", snapshot_id, exc)
                    ok = False
            gone = not await asyncio.to_thread(chains.adopted, volume_id, snapshot_id)
            await asyncio.to_thread(chains.drop_plan, volume_id, snapshot_id)
            if gone:
                await db.write(repo.delete_snapshot, snapshot_id)
            else:
                await db.write(repo.set_snapshot_status, snapshot_id, "error_deleting", ("deleting",))

    # ---------------------------------------------------------------- after a restart

    async def resume(self, snapshot: dict[str, Any]) -> bool:
        """An assisted snapshot ``creating`` or ``deleting`` when this service stopped: wait again for its host's
        report (up to the deadline), or finish it from what is on disk. False when it was not in a host's hands
        (the caller starts it again)."""
        chains = self.svc.backend.chains
        snapshot_id, volume_id = snapshot["id"], snapshot["volume_id"]
        if not await self.wanted(volume_id):
            return False
        adopted = await asyncio.to_thread(chains.adopted, volume_id, snapshot_id)
        if snapshot["status"] == "creating":
            if adopted:
                await self._end_create(snapshot_id, volume_id, True)
                return True
            if not chains.overlay_path(volume_id, snapshot_id).exists():
                return False
            if await self._wait(snapshot_id, self._deadline(snapshot)) is None:
                await self._end_create(snapshot_id, volume_id, None)
            return True
        if not adopted or await asyncio.to_thread(chains.load_plan, volume_id, snapshot_id) is None:
            if adopted:
                return False   # the host was never asked
            await self._end_delete(snapshot_id, volume_id, True)
            return True
        if await self._wait(snapshot_id, self._deadline(snapshot)) is None:
            await self._end_delete(snapshot_id, volume_id, None)
        return True
