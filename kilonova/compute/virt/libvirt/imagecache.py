"""Images cached once per host, and the disks of each instance made from them.

A base image is downloaded from the image service (as the service user) into
``<instances_path>/_base/<sha1 of the image id>``, verified against the
image's checksums (md5 ``checksum`` and its ``os_hash_algo``/``os_hash_value``),
checked as kilonova/common/image_safety.py does (the content is its disk_format; no backing or data
file may sneak in) and converted to raw when ``force_raw_images`` says so. Instance disks are qcow2 overlays on it
(or raw copies), grown to the flavor's root disk. Bases no instance has used
for a while are aged out.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from kilonova.common import image_safety
from kilonova.compute.virt.driver import BuildFailure

LOG = logging.getLogger(__name__)
GiB = 1024 ** 3


def _run(*cmd: str, timeout: float = 600) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise BuildFailure(f"{cmd[0]} failed: {result.stderr.strip()[-400:]}")
    return result.stdout


def qemu_img_info(path: Path, fmt: str | None = None) -> dict:
    args = ["qemu-img", "info", "--output", "json"]
    if fmt:
        args += ["-f", fmt]
    return json.loads(_run(*args, str(path)))


_base_info: dict[tuple[str, int, int], dict] = {}


def base_info(path: Path) -> dict:
    """``qemu-img info`` of a cached base, remembered while the file is the same (bases never change)."""
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_size)
    if key not in _base_info:
        if len(_base_info) > 256:
            _base_info.clear()
        _base_info[key] = qemu_img_info(path)
    return _base_info[key]


class ImageCache:
    def __init__(self, images, instances_path: Path, force_raw: bool = True):
        self.images = images            # a ServiceClient on the image service
        self.base_dir = instances_path / "_base"
        self.force_raw = force_raw
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def base_path(self, image_id: str) -> Path:
        return self.base_dir / hashlib.sha1(image_id.encode()).hexdigest()

    async def image_meta(self, image_id: str) -> dict:
        response = await self.images.get(f"/v2/images/{image_id}")
        if response.status_code != 200:
            raise BuildFailure(f"Image {image_id} could not be found in the image service "
                               f"({response.status_code}).")
        return response.json()

    async def fetch(self, image_id: str, meta: dict | None = None) -> tuple[Path, dict]:
        """The cached base of ``image_id`` (downloaded, verified and converted on first use)."""
        async with self._locks[image_id]:
            meta = meta or await self.image_meta(image_id)
            path = self.base_path(image_id)
            if path.exists():
                os.utime(path)
                return path, meta
            if meta.get("status") != "active":
                raise BuildFailure(f"Image {image_id} is {meta.get('status')}, not active.")
            self.base_dir.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".part")
            try:
                await self._download(image_id, meta, partial)
                await asyncio.to_thread(self._prepare, partial, path, meta)
            finally:
                partial.unlink(missing_ok=True)
                path.with_suffix(".converted").unlink(missing_ok=True)
            return path, meta

    async def _download(self, image_id: str, meta: dict, target: Path) -> None:
        md5 = hashlib.md5(usedforsecurity=False)
        algo = meta.get("os_hash_algo") or "sha512"
        multihash = hashlib.new(algo)
        token = await self.images.auth.token()
        async with self.images.http.stream("GET", f"/v2/images/{image_id}/file",
                                           headers={"X-Auth-Token": token}) as response:
            if response.status_code != 200:
                raise BuildFailure(f"Download of image {image_id} failed: {response.status_code}")
            with open(target, "wb") as out:
                async for chunk in response.aiter_bytes(1 << 20):
                    md5.update(chunk)
                    multihash.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
        if meta.get("checksum") and md5.hexdigest() != meta["checksum"]:
            raise BuildFailure(f"Image {image_id} failed verification: md5 {md5.hexdigest()} is not "
                               f"{meta['checksum']}")
        if meta.get("os_hash_value") and multihash.hexdigest() != meta["os_hash_value"]:
            raise BuildFailure(f"Image {image_id} failed verification: {algo} does not match os_hash_value")

    async def upload(self, image_id: str, path: Path) -> None:
        """Stream ``path`` as the data of image ``image_id``."""
        async def chunks():
            with open(path, "rb") as fh:
                while True:
                    chunk = await asyncio.to_thread(fh.read, 1 << 20)
                    if not chunk:
                        return
                    yield chunk

        token = await self.images.auth.token()
        response = await self.images.http.put(f"/v2/images/{image_id}/file", content=chunks(), headers={
            "X-Auth-Token": token, "Content-Type": "application/octet-stream"})
        if response.status_code != 204:
            raise BuildFailure(f"Upload of snapshot {image_id} failed: {response.status_code} {response.text[:200]}")

    def _prepare(self, partial: Path, path: Path, meta: dict) -> None:
        disk_format = meta.get("disk_format") or "raw"
        if disk_format in ("aki", "ari"):  # kernels and ramdisks are used as they are
            partial.rename(path)
            os.chmod(path, 0o644)
            return
        try:  # as Nova since CVE-2024-32498: inspected, qemu-img told the format, no backing or data file
            actual = image_safety.check_file(partial, disk_format)["format"]
        except image_safety.UnsafeImage as exc:
            raise BuildFailure(f"Image {meta['id']} is unacceptable: {exc}") from None
        if self.force_raw and actual != "raw":
            converted = path.with_suffix(".converted")
            _run("qemu-img", "convert", "-f", actual, "-O", "raw", str(partial), str(converted))
            converted.rename(path)
        else:
            partial.rename(path)
        os.chmod(path, 0o644)

    # ------------------------------------------------------------------ instance disks

    @staticmethod
    def create_root(base: Path, target: Path, size_gb: int, images_type: str) -> str:
        """The instance's root disk on ``base``; returns its format."""
        info = base_info(base)
        size = max(size_gb * GiB, info["virtual-size"])
        if images_type == "raw":
            _run("qemu-img", "convert", "-f", info["format"], "-O", "raw", str(base), str(target))
            if size > info["virtual-size"]:
                _run("qemu-img", "resize", "-f", "raw", str(target), str(size))
            return "raw"
        _run("qemu-img", "create", "-q", "-f", "qcow2", "-F", info["format"], "-b", str(base), str(target),
             str(size))
        return "qcow2"

    def blank_base(self, kind: str, size_mb: int) -> Path:
        """A cached formatted base: ``swap`` (mkswap) or ``ephemeral`` (ext4), shared by every instance."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        path = self.base_dir / (f"swap_{size_mb}" if kind == "swap" else f"ephemeral_{size_mb // 1024}_ext4")
        if path.exists():
            os.utime(path)
            return path
        partial = path.with_suffix(".part")
        with open(partial, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        if kind == "swap" and _has("mkswap"):
            _run("mkswap", "-q", str(partial))
        elif kind != "swap" and _has("mkfs.ext4"):
            _run("mkfs.ext4", "-q", "-F", "-L", "ephemeral0", str(partial))
        os.chmod(partial, 0o644)
        partial.rename(path)
        return path

    # ------------------------------------------------------------------ ageing

    def age_out(self, in_use: set[Path], min_age: float) -> list[Path]:
        """Remove bases that no instance uses and nobody touched for ``min_age`` seconds."""
        removed = []
        if not self.base_dir.exists():
            return removed
        now = time.time()
        for entry in self.base_dir.iterdir():
            if entry in in_use or entry.suffix in (".part", ".converted"):
                continue
            if now - entry.stat().st_mtime >= min_age:
                entry.unlink(missing_ok=True)
                removed.append(entry)
                LOG.info("removed unused base image %s", entry.name)
        return removed


def _has(tool: str) -> bool:
    return shutil.which(tool) is not None
