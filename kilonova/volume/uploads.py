"""``os-volume_upload_image``: a volume's data made into a new image (``openstack image create --volume``).

The image is created as the caller in the API's answer (queued, with the volume's image properties), the
volume is ``uploading`` while its data, converted to the asked disk format, is streamed into it as the
caller, and ``available`` again after; a failed upload deletes the image and leaves a user message.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from kilonova.volume import message_repo as M, repo
from kilonova.volume.errors import bad_request
from kilonova.volume.validation import is_true

LOG = logging.getLogger(__name__)
CONVERTIBLE = ("raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx")
CORE = ("image_id", "image_name", "checksum", "size", "container_format", "disk_format", "min_disk", "min_ram")


def image_values(volume: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """The new image's fields from the action's schema-checked arguments (``visibility`` and ``protected``
    only from 3.1, which the schema of each version says)."""
    disk_format = args.get("disk_format", "raw")
    if disk_format not in CONVERTIBLE:
        raise bad_request(f"Disk format {disk_format} is not supported: the volume cannot be converted to it.")
    values = {key: value for key, value in volume["image_metadata"].items() if key not in CORE}
    values.update({"name": args["image_name"], "disk_format": disk_format,
                   "container_format": args.get("container_format") or "bare"})
    for key in ("min_disk", "min_ram"):
        if key in volume["image_metadata"]:
            values[key] = int(volume["image_metadata"][key])
    if "visibility" in args:
        values["visibility"] = args["visibility"]
    if "protected" in args:
        values["protected"] = is_true(args["protected"])
    return values


def answer(volume: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    return {"os-volume_upload_image": {
        "id": volume["id"], "updated_at": volume["updated_at"], "status": "uploading",
        "display_description": volume["description"], "size": volume["size"],
        "volume_type": {"name": volume["volume_type"], "id": volume["volume_type_id"]},
        "image_id": image["id"], "container_format": image.get("container_format"),
        "disk_format": image.get("disk_format"), "image_name": image.get("name"),
        "protected": image.get("protected", False), "visibility": image.get("visibility")}}


async def upload(svc, volume: dict[str, Any], token: str, image: dict[str, Any]) -> None:
    """After the answer: the data converted and streamed; the volume back to what it was before."""
    back = "in-use" if volume["status"] == "in-use" else "available"
    source = None
    try:
        source = await asyncio.to_thread(svc.backend.export_image, volume["id"], image["disk_format"])
        await svc.images.upload(token, image["id"], source)
    except OSError as exc:
        LOG.error("volume %s: upload to image %s failed: %s", volume["id"], image["id"], exc)
        await svc.images.delete_image(token, image["id"])

        def record(session):
            repo.set_status(session, volume["id"], back, ("uploading",))
            M.add(session, volume["project_id"], volume["id"], M.COPY_VOLUME_TO_IMAGE, M.UNKNOWN_ERROR,
                  svc.creator.message_ttl)
        await svc.db.write(record)
        return
    finally:
        if source is not None and source != svc.backend.path(volume["id"]):
            source.unlink(missing_ok=True)
    await svc.db.write(repo.set_status, volume["id"], back, ("uploading",))
