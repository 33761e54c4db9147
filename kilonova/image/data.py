"""``/v2/images/{image_id}/file``: streamed upload into the store and streamed download.

An upload is inspected as it streams in (kilonova/common/image_safety.py): data that is not its
``disk_format`` or fails that format's safety checks is refused with a 400 and not kept, as Glance does.
"""
from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from kilonova.common import image_safety
from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError, Router, empty_response
from kilonova.image import policy, qcow2, repo
from kilonova.image.lookup import context, service, visible_image
from kilonova.image.store import SizeLimitExceeded, StoredData

LOG = logging.getLogger(__name__)


def data_fields(stored: StoredData, disk_format: str | None) -> dict:
    """Columns an upload fills in; virtual size read from the data itself (qcow2 header, raw size)."""
    virtual = qcow2.virtual_size(stored.head)
    if virtual is None and disk_format in ("raw", "iso"):
        virtual = stored.size
    return {"size": stored.size, "checksum": stored.checksum, "os_hash_algo": stored.os_hash_algo,
            "os_hash_value": stored.os_hash_value, "virtual_size": virtual}


async def upload(request: Request, image_id: str):
    svc = service(request)
    image, _ = await visible_image(request, image_id)
    policy.check_owner(context(request), image, "upload_image")
    media_type = request.headers.get("content-type", "").split(";")[0].strip()
    if media_type != "application/octet-stream":
        raise HTTPError(415, f"Content-Type must be application/octet-stream, not {media_type or '(none)'}")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > svc.store.size_cap:
        raise HTTPError(413, "The provided image is too large.")
    try:
        await svc.db.write(repo.set_status, image_id, ("queued",), "saving")
    except repo.BadStatus as exc:
        raise HTTPError(409, f"Image status transition from {exc.args[0]} to saving is not allowed") from None
    except NotFound:
        raise HTTPError(404, f"No image found with ID {image_id}") from None
    inspector = None
    if image_safety.inspected(image["disk_format"]):
        inspector = image_safety.StreamInspector(image["disk_format"], svc.require_image_format_match)
    try:
        stored = await svc.store.save(image_id, request.stream(), inspector)
    except image_safety.UnsafeImage as exc:
        await _back_to_queued(svc, image_id)
        raise HTTPError(400, str(exc)) from None
    except SizeLimitExceeded:
        await _back_to_queued(svc, image_id)
        raise HTTPError(413, "The provided image is too large.") from None
    except ClientDisconnect:
        await _back_to_queued(svc, image_id)
        raise HTTPError(400, "The client disconnected before the image data was complete.") from None
    except BaseException:
        await _back_to_queued(svc, image_id)
        raise
    try:
        await svc.db.write(repo.activate, image_id, data_fields(stored, image["disk_format"]))
    except (NotFound, repo.BadStatus):
        await svc.store.delete(image_id)
        raise HTTPError(410, f"Image {image_id} could not be found after upload. "
                             "The image may have been deleted during the upload.") from None
    return empty_response(204)


async def _back_to_queued(svc, image_id: str) -> None:
    try:
        await svc.db.write(repo.set_status, image_id, ("saving",), "queued")
    except Exception:  # noqa: BLE001 - deleted meanwhile: nothing to reset
        LOG.debug("image %s vanished during a failed upload", image_id)


async def download(request: Request, image_id: str):
    svc = service(request)
    image, _ = await visible_image(request, image_id)
    if image["status"] == "deactivated" and not context(request).is_admin:
        raise HTTPError(403, "The requested image has been deactivated. Image data download is forbidden.")
    if image["status"] not in ("active", "deactivated") or not svc.store.exists(image_id):
        return empty_response(204)
    headers = {"Content-Length": str(image["size"])}
    if image["checksum"]:
        headers["Content-MD5"] = image["checksum"]
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(svc.store.read(image_id), media_type="application/octet-stream", headers=headers)


def register(router: Router) -> None:
    router.add("PUT", "/v2/images/{image_id}/file", upload)
    router.add("GET", "/v2/images/{image_id}/file", download)
