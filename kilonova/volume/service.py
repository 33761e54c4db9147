"""The volume service: owns the ``cinder`` database and the volume files, serves Cinder's v3 API.

Volume work (allocating, extending, removing files) runs in tasks of this process after the API has
answered 202, as Cinder's volume manager does it after its API; a restart finishes what was left.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from kilonova.common import policy
from kilonova.common.auth import TokenValidator
from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.db import Database, migrate
from kilonova.common.http import HTTPError
from kilonova.common.service import Service, ServiceEnv
from kilonova.config import ConfigError
from kilonova.volume import attach_repo, connections, online_extend, repo
from kilonova.volume.app import create_app
from kilonova.volume.backend import FileBackend
from kilonova.volume.assisted import AssistedSnapshots
from kilonova.volume.creation import VolumeCreator
from kilonova.volume.exports import NbdExports
from kilonova.volume.images import ImageSource
from kilonova.volume.lvm import LvmThinBackend
from kilonova.volume.models import VolumeBase, utcnow

LOG = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
QUOTA_OPTIONS = {"volumes": "quota_volumes", "snapshots": "quota_snapshots", "gigabytes": "quota_gigabytes",
                 "backups": "quota_backups", "backup_gigabytes": "quota_backup_gigabytes",
                 "groups": "quota_groups", "per_volume_gigabytes": "per_volume_size_limit"}


def _port_range(text: str) -> range:
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def make_backend(conf) -> FileBackend:
    """``[volume] backend``: ``file`` (a sparse raw file per volume in volumes_dir) or ``lvm`` (a thin volume
    per volume in volume_group's thin pool)."""
    kind = conf.get("volume", "backend").strip().lower()
    if kind == "lvm":
        return LvmThinBackend(conf.get("volume", "volumes_dir"), conf.get("volume", "volume_group"))
    if kind != "file":
        raise ConfigError(f"[volume] backend: {kind!r} is not a volume backend (file or lvm)")
    try:
        return FileBackend(conf.get("volume", "volumes_dir"), conf.get("volume", "volume_format").strip().lower())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def settled_status(volume: dict[str, Any]) -> str:
    """Where a volume goes back to after an extend: ``in-use`` while a server has it, else ``available``."""
    return "in-use" if any(a["attach_status"] == "attached" for a in volume["attachments"]) else "available"


class VolumeService(Service):
    name = "volume"
    service_type = "block-storage"

    @classmethod
    def lock_name(cls, conf) -> str:
        return "volume"   # its volumes' files and their exports: one volume service per state directory

    def __init__(self, env: ServiceEnv, validator=None):
        super().__init__(env)
        conf = env.conf
        self.policy = policy.configure(conf, "volume")   # read at start: a bad policy file stops it
        self.db = Database.shared(conf.get("volume_database", "connection"), name="cinder")
        self.backend = make_backend(conf)
        self.default_quotas = {name: conf.getint("volume", option) for name, option in QUOTA_OPTIONS.items()}
        self.validator = validator or TokenValidator(
            env.endpoints.http_client("identity"),
            cache_seconds=conf.getfloat("keystone_authtoken", "token_cache_time"))
        auth = ServiceAuth(env.endpoints.http_client("identity"), conf.get("service_user", "username"),
                           conf.get("service_user", "password"), conf.get("service_user", "project_name"))
        self.images = ImageSource(env.endpoints.http_client("image"),
                                  ServiceClient(env.endpoints.http_client("image", timeout=3600.0), auth))
        self.compute = ServiceClient(env.endpoints.http_client("compute"), auth,
                                     {"OpenStack-API-Version": "compute 2.51"})
        self.creator = VolumeCreator(self.db, self.backend, self.images, conf)
        self.exports = NbdExports(self.backend.directory, conf.get("volume", "target_ip_address") or
                                  conf.get("DEFAULT", "my_ip"), _port_range(conf.get("volume", "nbd_ports")),
                                  self.backend.format_of)
        self.assisted = AssistedSnapshots(self, conf.getfloat("volume", "assisted_snapshot_timeout"))
        self.progress = self.assisted.progress
        self.attachment_timeout = conf.getfloat("volume", "attachment_timeout")
        self.my_ip = conf.get("DEFAULT", "my_ip")
        self._tasks: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self.app = create_app(self.validator, self)

    def prepare(self) -> None:
        migrate(self.db, MIGRATIONS, VolumeBase.metadata)
        self.db.run_sync(repo.ensure_default_type)
        self.backend.prepare()

    async def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_attachments_forever())

    async def after_start(self) -> None:
        """Volumes, snapshots and attachments a stopped process left half done: finish them from what is
        on disk (attachments: a detach is finished; reservations and connections past their deadline go)."""
        for attachment in await self.db.read(attach_repo.stale, ("detaching",), utcnow()):
            await self._finish_detach(attachment)
        await self.reap_attachments()
        await self.exports.restore({volume_id: self.backend.path(volume_id)
                                    for volume_id in await self.db.read(attach_repo.exported_volumes)})
        for snapshot in await self.db.read(repo.snapshots_in, ("creating", "deleting")):
            self.spawn(self._resume_snapshot(snapshot))
        for volume in await self.db.read(repo.volumes_in, ("creating", "downloading", "extending", "deleting",
                                                           "uploading")):
            if volume["extend_new_size"] is not None:   # the compute host's to finish (online_extend.reap)
                continue
            if volume["status"] == "uploading":   # the image stays queued: its owner deletes it
                await self.db.write(repo.set_status, volume["id"], settled_status(volume), ("uploading",))
            elif volume["status"] == "deleting":
                self.spawn(self.remove(volume["id"]))
            elif volume["status"] in ("creating", "downloading"):
                self.spawn(self.creator.resume(volume))
            else:   # an extend grew the file, or never got to: the volume is what its file holds
                allocated = await asyncio.to_thread(self.backend.size_gb, volume["id"])
                await self.db.write(repo.set_status, volume["id"],
                                    "error_extending" if allocated is None else settled_status(volume),
                                    size=max(allocated or 0, volume["size"]))

    async def _resume_snapshot(self, snapshot: dict[str, Any]) -> None:
        """A snapshot being taken or deleted when this process stopped: one in a compute host's hands is waited
        for again (assisted.py); the others are finished or made again from what is on disk."""
        snapshot_id, volume_id = snapshot["id"], snapshot["volume_id"]
        if self.backend.format_of(volume_id) == "qcow2":
            if await self.assisted.resume(snapshot):
                return
            chains = self.backend.chains
            if snapshot["status"] == "creating" and await asyncio.to_thread(chains.adopted, volume_id, snapshot_id):
                await self.db.write(repo.set_snapshot_status, snapshot_id, "available", ("creating",))
                return
            await asyncio.to_thread(chains.drop_plan, volume_id, snapshot_id)
            if snapshot["status"] == "creating":   # its overlay, never made active: made again
                await asyncio.to_thread(chains.drop_overlay, volume_id, snapshot_id)
                await self.take_snapshot(snapshot_id, volume_id)
            else:
                await self.remove_snapshot(snapshot_id)
            return
        # A copy cut short cannot be told from a whole one: made again from the volume.
        await asyncio.to_thread(self.backend.delete_snapshot, snapshot_id)
        if snapshot["status"] == "deleting":
            await self.db.write(repo.delete_snapshot, snapshot_id)
        else:
            await self.take_snapshot(snapshot_id, volume_id)

    async def snapshot_reported(self, snapshot_id: str, status: str, progress: str | None) -> None:
        await self.assisted.reported(snapshot_id, status, progress)

    async def take_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        if await self.assisted.wanted(volume_id):   # a guest has the qcow2 volume open: its host switches it
            await self.assisted.create(snapshot_id, volume_id)
            return
        try:
            await asyncio.to_thread(self.backend.snapshot, volume_id, snapshot_id)
        except OSError as exc:
            LOG.error("snapshot %s of volume %s failed: %s", snapshot_id, volume_id, exc)
            await self.db.write(repo.set_snapshot_status, snapshot_id, "error", ("creating",))
            return
        await self.db.write(repo.set_snapshot_status, snapshot_id, "available", ("creating",))

    async def remove_snapshot(self, snapshot_id: str) -> None:
        volume_id = self.backend.chains.volume_of_snapshot(snapshot_id)
        if volume_id and await self.assisted.wanted(volume_id):
            await self.assisted.delete(snapshot_id, volume_id)
            return
        try:
            await asyncio.to_thread(self.backend.delete_snapshot, snapshot_id)
        except OSError as exc:
            LOG.error("snapshot %s: removing its file failed: %s", snapshot_id, exc)
            await self.db.write(repo.set_snapshot_status, snapshot_id, "error_deleting", ("deleting",))
            return
        await self.db.write(repo.delete_snapshot, snapshot_id)

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def quota_limits(self, project_id: str) -> dict[str, int]:
        return {**self.default_quotas, **await self.db.read(repo.quota_overrides, project_id)}

    async def allocate(self, volume: dict[str, Any]) -> None:
        await self.creator.create(volume)

    async def remove(self, volume_id: str, snapshot_ids: list[str] = ()) -> None:
        for snapshot_id in snapshot_ids:
            await self.remove_snapshot(snapshot_id)
        try:
            await asyncio.to_thread(self.backend.delete, volume_id)
        except OSError as exc:
            LOG.error("volume %s: removing its file failed: %s", volume_id, exc)
            await self.db.write(repo.set_status, volume_id, "error_deleting", ("deleting",))
            return
        await self.db.write(repo.delete_volume, volume_id)

    async def extend(self, volume: dict[str, Any], new_size: int, in_use: bool = False) -> None:
        """os-extend: checks and quota in the API's answer, the file grown after it (3.42: an attached volume
        too, whose server is then told by a ``volume-extended`` event)."""
        extendable = ("available", "in-use") if in_use else ("available",)
        if volume["status"] not in extendable:
            raise HTTPError(400, f"Invalid volume: Volume status must be {' or '.join(repr(s) for s in extendable)}"
                                 f" to extend, currently in '{volume['status']}'.")
        if new_size <= volume["size"]:
            raise HTTPError(400, f"Invalid input received: New size for extend must be greater than current size. "
                                 f"(current: {volume['size']}, extended: {new_size}).")
        limits = await self.quota_limits(volume["project_id"])
        by_host = online_extend.wanted(self, volume)   # an attached qcow2 file: its guest's hypervisor grows it

        def begin(session):
            repo.check_quota(session, volume["project_id"], limits, 0, new_size - volume["size"], new_size)
            return repo.set_status(session, volume["id"], "extending", extendable,
                                   **({"extend_new_size": new_size} if by_host else {}))

        if await self.db.write(begin) is None:
            raise HTTPError(400, "Invalid volume: Volume status must be 'available' to extend.")
        self.spawn(online_extend.ask(self, volume["id"], new_size) if by_host else self._grow(volume, new_size))

    async def _grow(self, volume: dict[str, Any], new_size: int) -> None:
        try:
            await asyncio.to_thread(self.backend.extend, volume["id"], new_size)
        except OSError as exc:
            LOG.error("volume %s: extending to %d GiB failed: %s", volume["id"], new_size, exc)
            await self.db.write(repo.set_status, volume["id"], "error_extending", ("extending",))
            return
        grown = await self.db.write(lambda session: repo.set_status(
            session, volume["id"], settled_status(repo.get_volume(session, volume["id"])), ("extending",),
            size=new_size))
        servers = {a["instance_uuid"] for a in (grown or {}).get("attachments", [])
                   if a["attach_status"] == "attached" and a["instance_uuid"]}
        if servers:
            await self._tell_compute([{"name": "volume-extended", "server_uuid": server, "tag": volume["id"]}
                                      for server in sorted(servers)])

    async def _tell_compute(self, events: list[dict[str, Any]]) -> None:
        """Nova's os-server-external-events, as Cinder sends them; a failure is logged (the volume is grown)."""
        try:
            response = await self.compute.post("/v2.1/os-server-external-events", json={"events": events})
        except Exception as exc:   # the compute API is down or unreachable
            LOG.warning("could not tell compute %s: %s", events, exc)
            return
        if response.status_code not in (200, 207):
            LOG.warning("compute answered %s to %s: %s", response.status_code, events, response.text[:200])

    # --- attachments: what happens on the volume host when a connection is made or removed

    async def connection(self, volume: dict[str, Any], attachment_id: str | None, connector: dict[str, Any],
                         attach_mode: str = "null") -> dict[str, Any]:
        """The connection_info for a host's connector: the file itself on this machine, else an NBD export
        (started for the volume's first remote connection)."""
        mode = connections.access_mode(attach_mode, connector, volume["readonly"])
        path = self.backend.path(volume["id"])
        if connections.is_local(connector, (self.my_ip,)):
            return connections.local_info(path, volume["id"], attachment_id, mode,
                                          self.backend.format_of(volume["id"]))
        try:
            port = await self.exports.export(volume["id"], path)
        except OSError as exc:
            LOG.error("volume %s: NBD export failed: %s", volume["id"], exc)
            raise HTTPError(500, f"Unable to update attachment.(Bad or unexpected response from the storage "
                                 f"volume backend API: could not export volume {volume['id']}: {exc}).") from None
        return connections.nbd_info(self.exports.address, port, volume["id"], attachment_id, mode)

    async def connect_attachment(self, attachment: dict[str, Any], connector: dict[str, Any]) -> dict[str, Any]:
        """The connection for a host's connector, recorded on the attachment (which answers it)."""
        volume = await self.db.read(repo.get_volume, attachment["volume_id"])
        info = await self.connection(volume, attachment["id"], connector, attachment["attach_mode"])
        connected = await self.db.write(attach_repo.connect, attachment["id"], connector, info,
                                        attachment["attach_mode"])
        if connected is None:
            await self.release_export(attachment["volume_id"])
            raise attach_repo.attachment_not_found(attachment["id"])
        if info["driver_volume_type"] != "nbd":
            # Connected again from this machine (an evacuated server's new host, say): an export the old
            # remote connection had goes unless another attachment still uses it.
            await self.release_export(attachment["volume_id"])
        return connected

    async def detach_attachment(self, attachment_id: str, project_id: str | None) -> list[dict[str, Any]]:
        """Delete an attachment: ``detaching`` while its connection goes (an NBD export, when it was the
        volume's last remote connection), then gone; answers the volume's attachments left."""
        attachment = await self.db.write(attach_repo.begin_detach, attachment_id, project_id)
        return await self._finish_detach(attachment)

    async def _finish_detach(self, attachment: dict[str, Any]) -> list[dict[str, Any]]:
        left = await self.db.write(attach_repo.finish_detach, attachment["id"])
        await self.release_export(attachment["volume_id"], left)
        return left

    async def release_export(self, volume_id: str, left: list[dict[str, Any]] | None = None) -> None:
        """Stop the volume's NBD export once no attachment is connected through it."""
        if left is None:
            left = (await self.db.read(repo.get_volume, volume_id))["attachments"]
        if self.exports.port_of(volume_id) is None:
            return
        if not any((a["connection_info"] or {}).get("driver_volume_type") == "nbd" for a in left):
            await self.exports.unexport(volume_id)

    async def reap_attachments(self) -> None:
        """Connections never completed within ``[volume] attachment_timeout``: removed, so that no volume stays
        ``attaching`` or ``detaching`` for ever after a client or host went away. A reservation (an attachment
        without a connector, the volume ``reserved``) is not: as in Cinder it holds the volume for its server
        for as long as that needs (a shelved-offloaded server, one whose evacuation failed) until it is
        deleted or connected."""
        before = utcnow() - timedelta(seconds=self.attachment_timeout)
        for attachment in await self.db.read(attach_repo.stale, ("attaching", "detaching"), before):
            LOG.warning("attachment %s of volume %s still %s after %d s: removed", attachment["id"],
                        attachment["volume_id"], attachment["attach_status"], self.attachment_timeout)
            await self._finish_detach(attachment)

    async def _reap_attachments_forever(self) -> None:
        interval = max(1.0, min(60.0, self.attachment_timeout / 10, self.assisted.timeout / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_attachments()
                await online_extend.reap(self, self.assisted.timeout)
            except Exception:   # a database hiccup: tried again next round
                LOG.exception("reaping stale attachments failed")
