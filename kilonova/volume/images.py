"""Volumes made from an image: the image looked up as the caller (who must be able to see it), its data
streamed from the image service as the service user (after the API's answer, maybe after a restart), and
what of it a volume keeps as ``volume_image_metadata``."""
from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import httpx

from kilonova.common.clients import ServiceClient, segment
from kilonova.common.http import HTTPError
from kilonova.volume.errors import bad_request

GIB = 1024 ** 3
CONVERTIBLE = ("raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx", "iso", "ami")
# Image fields that are the image service's own, not properties a volume carries.
NOT_PROPERTIES = {"id", "name", "status", "visibility", "protected", "owner", "tags", "created_at", "updated_at",
                  "virtual_size", "size", "checksum", "disk_format", "container_format", "min_disk", "min_ram",
                  "locations", "direct_url", "file", "schema", "self", "os_hash_algo", "os_hash_value", "stores",
                  "os_hidden"}


class ImageError(OSError):
    """The image's data could not be made into the volume (a message for the log and the volume's error)."""


def invalid_image() -> HTTPError:
    return bad_request("Invalid image identifier or unable to access requested image.")


class ImageSource:
    def __init__(self, http: httpx.AsyncClient, client: ServiceClient):
        self.http = http         # as the caller, with their token
        self.client = client     # as the service user

    async def lookup(self, token: str, ref: str) -> dict[str, Any]:
        """The image ``ref`` names (an id, or a name that only one image the caller sees has); 400 as Cinder
        when there is none, 503 when the image service cannot be reached."""
        try:
            return await self._lookup(token, ref)
        except httpx.HTTPError as exc:
            raise HTTPError(503, f"Connection to glance failed: {exc.__class__.__name__}") from None

    async def _lookup(self, token: str, ref: str) -> dict[str, Any]:
        headers = {"X-Auth-Token": token}
        try:
            uuid.UUID(ref)
        except ValueError:
            found = await self.http.get("/v2/images", params={"name": ref}, headers=headers)
            images = found.json().get("images", []) if found.status_code == 200 else []
            if len(images) > 1:
                raise bad_request(f"Multiple matches found for '{ref}', use an ID to be more specific.")
            if not images:
                raise invalid_image()
            return images[0]
        response = await self.http.get(f"/v2/images/{segment(ref)}", headers=headers)
        if response.status_code != 200:
            raise invalid_image()
        return response.json()

    async def download(self, image_id: str, target: Path) -> None:
        try:
            await self._download(image_id, target)
        except (httpx.HTTPError, RuntimeError) as exc:   # unreachable, or the service user could not log in
            raise ImageError(f"download of image {image_id} failed: {exc}") from None

    async def _download(self, image_id: str, target: Path) -> None:
        token = await self.client.auth.token()
        async with self.client.http.stream("GET", f"/v2/images/{segment(image_id)}/file",
                                           headers={"X-Auth-Token": token}) as response:
            if response.status_code != 200:
                raise ImageError(f"download of image {image_id} failed: {response.status_code}")
            with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
                async for chunk in response.aiter_bytes(1 << 20):
                    out.write(chunk)


    async def create_image(self, token: str, values: dict[str, Any]) -> dict[str, Any]:
        """A new (queued) image as the caller, for ``os-volume_upload_image``; Glance's refusal as a 400."""
        try:
            response = await self.http.post("/v2/images", json=values, headers={"X-Auth-Token": token})
        except httpx.HTTPError as exc:
            raise HTTPError(503, f"Connection to glance failed: {exc.__class__.__name__}") from None
        if response.status_code != 201:
            raise bad_request(f"Invalid image metadata: the image service answered {response.status_code}: "
                              f"{response.text[:300]}")
        return response.json()

    async def upload(self, token: str, image_id: str, source: Path) -> None:
        """Stream ``source`` as the image's data, as the caller."""
        async def chunks():
            with open(source, "rb") as handle:
                while True:
                    chunk = await asyncio.to_thread(handle.read, 1 << 20)
                    if not chunk:
                        return
                    yield chunk
        try:
            response = await self.http.put(f"/v2/images/{segment(image_id)}/file", content=chunks(), headers={
                "X-Auth-Token": token, "Content-Type": "application/octet-stream"}, timeout=3600)
        except httpx.HTTPError as exc:
            raise ImageError(f"upload to image {image_id} failed: {exc}") from None
        if response.status_code != 204:
            raise ImageError(f"upload to image {image_id} failed: {response.status_code} {response.text[:200]}")

    async def delete_image(self, token: str, image_id: str) -> None:
        try:
            await self.http.delete(f"/v2/images/{segment(image_id)}", headers={"X-Auth-Token": token})
        except httpx.HTTPError:
            pass


def check_fits(image: dict[str, Any], size_gb: int) -> None:
    """An image a volume of ``size_gb`` can be made from, in Cinder's words when it cannot."""
    if image.get("status") != "active":
        raise bad_request(f"Invalid input received: Image {image['id']} is not active.")
    if (image.get("disk_format") or "raw") not in CONVERTIBLE:
        raise bad_request(f"Invalid input received: Image {image['id']} has disk format "
                          f"{image.get('disk_format')}, which cannot be written to a volume.")
    image_gb = -(-(image.get("size") or 0) // GIB)
    if image_gb > size_gb:
        raise bad_request(f"Invalid input received: Size of specified image {image_gb}GB is larger than volume "
                          f"size {size_gb}GB.")
    min_disk = image.get("min_disk") or 0
    if min_disk > size_gb:
        raise bad_request(f"Invalid input received: Volume size {size_gb}GB cannot be smaller than the image "
                          f"minDisk size {min_disk}GB.")


def volume_image_metadata(image: dict[str, Any]) -> dict[str, str]:
    """What a volume keeps of its image (Cinder's ``volume_image_metadata``): every value a string."""
    kept = {"image_id": image["id"], "image_name": image.get("name"), "checksum": image.get("checksum"),
            "container_format": image.get("container_format"), "disk_format": image.get("disk_format"),
            "min_disk": image.get("min_disk", 0), "min_ram": image.get("min_ram", 0), "size": image.get("size")}
    kept.update({key: value for key, value in image.items()
                 if key not in NOT_PROPERTIES and not key.startswith("os_glance")})
    return {key: str(value) for key, value in kept.items() if value is not None and len(str(value)) <= 255}
