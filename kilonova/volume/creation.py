"""Making a volume after the API accepted it (``creating``): the scheduler's capacity check, then its file,
empty, copied from a snapshot or another volume, or written from an image (``downloading`` meanwhile,
``bootable`` after). A failure leaves the volume in ``error`` with the user message Cinder would leave."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from kilonova.volume import message_repo as M, repo, scheduler

LOG = logging.getLogger(__name__)


class VolumeCreator:
    def __init__(self, db, backend, images, conf):
        self.db = db
        self.backend = backend
        self.images = images
        self.ratio = conf.getfloat("volume", "max_over_subscription_ratio")
        self.reserved_percentage = conf.getfloat("volume", "reserved_percentage")
        self.message_ttl = conf.getfloat("volume", "message_ttl")

    def source_path(self, volume: dict[str, Any]) -> Path | None:
        if volume.get("snapshot_id"):
            return self.backend.snapshot_path(volume["snapshot_id"])
        if volume.get("source_volid"):
            return self.backend.path(volume["source_volid"])
        return None

    async def create(self, volume: dict[str, Any]) -> None:
        if not await self._scheduled(volume):
            return
        if volume["image_metadata"].get("image_id"):
            await self._from_image(volume)
            return
        source = self.source_path(volume)
        try:
            if source is None:
                await asyncio.to_thread(self.backend.create, volume["id"], volume["size"])
            else:
                await asyncio.to_thread(self.backend.create_from, source, volume["id"], volume["size"])
        except OSError as exc:
            LOG.error("volume %s: allocating %d GiB failed: %s", volume["id"], volume["size"], exc)
            await self._fail(volume, ("creating",), M.SCHEDULE_ALLOCATE_VOLUME, M.UNKNOWN_ERROR)
            return
        await self.db.write(repo.set_status, volume["id"], "available", ("creating",))

    async def _scheduled(self, volume: dict[str, Any]) -> bool:
        """Cinder's CapacityFilter on the one backend; False (and the volume in error) when it does not fit."""
        total, free = await asyncio.to_thread(self.backend.capacity_gb)
        others = await self.db.read(repo.provisioned_gb) - volume["size"]
        if scheduler.fits(volume["size"], total, free, others, self.ratio, self.reserved_percentage):
            return True
        LOG.warning("volume %s: %d GiB does not fit the backend (%.0f GiB, %.0f free, %d provisioned, ratio %s)",
                    volume["id"], volume["size"], total, free, others, self.ratio)
        await self._fail(volume, ("creating",), M.SCHEDULE_ALLOCATE_VOLUME, M.NO_BACKEND_AVAILABLE)
        return False

    async def _from_image(self, volume: dict[str, Any]) -> None:
        image = volume["image_metadata"]
        if await self.db.write(repo.set_status, volume["id"], "downloading", ("creating", "downloading")) is None:
            return
        try:
            await self.images.download(image["image_id"], self.backend.image_path(volume["id"]))
            await asyncio.to_thread(self.backend.write_image, volume["id"], volume["size"],
                                    image.get("disk_format") or "raw")
        except OSError as exc:
            LOG.error("volume %s: writing image %s failed: %s", volume["id"], image["image_id"], exc)
            detail = M.NOT_ENOUGH_SPACE_FOR_IMAGE if "doesn't fit" in str(exc) else M.UNKNOWN_ERROR
            await asyncio.to_thread(self.backend.delete, volume["id"])
            # (Nova may have reserved it for a boot from volume meanwhile: an error all the same)
            await self._fail(volume, ("downloading", "reserved"), M.COPY_IMAGE_TO_VOLUME, detail)
            return
        finally:
            self.backend.image_path(volume["id"]).unlink(missing_ok=True)
        if await self.db.write(repo.finish_image, volume["id"]) is None:   # force-deleted meanwhile
            await asyncio.to_thread(self.backend.delete, volume["id"])

    async def _fail(self, volume: dict[str, Any], expected: tuple[str, ...], action, detail) -> None:
        def record(session):
            if repo.set_status(session, volume["id"], "error", expected) is not None:
                M.add(session, volume["project_id"], volume["id"], action, detail, self.message_ttl)
        await self.db.write(record)

    async def resume(self, volume: dict[str, Any]) -> None:
        """A volume a stopped process left ``creating`` or ``downloading``: an image written again from the
        start; a copy or an empty file finished from what is on disk."""
        if volume["status"] == "downloading" or volume["image_metadata"].get("image_id"):
            await asyncio.to_thread(self.backend.delete, volume["id"])
            await self.db.write(repo.set_status, volume["id"], "creating", ("downloading",))
            await self.create({**volume, "status": "creating"})
            return
        allocated = await asyncio.to_thread(self.backend.size_gb, volume["id"])
        if allocated is None:
            await self.create(volume)
        else:
            await self.db.write(repo.set_status, volume["id"], "available" if allocated == volume["size"] else "error")
