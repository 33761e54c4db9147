"""Image cache and snapshot upload of the libvirt driver, against a fake image service (real qemu-img)."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from kilonova.common.clients import ServiceClient
from kilonova.compute.virt.driver import BuildFailure
from kilonova.compute.virt.libvirt.imagecache import ImageCache
from kilonova.config import Config

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (Debian qemu-utils) is missing")


class _Auth:
    async def token(self, refresh: bool = False) -> str:
        return "token"


class FakeImages:
    """Just enough of the image API: GET metadata and data, PATCH, PUT data."""

    def __init__(self):
        self.images: dict[str, dict] = {}
        self.data: dict[str, bytes] = {}
        self.patches: list = []

    def add(self, image_id: str, data: bytes, disk_format: str, **extra) -> None:
        self.images[image_id] = {"id": image_id, "status": "active", "disk_format": disk_format,
                                 "checksum": hashlib.md5(data).hexdigest(), "os_hash_algo": "sha512",
                                 "os_hash_value": hashlib.sha512(data).hexdigest(), **extra}
        self.data[image_id] = data

    def handler(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        image_id = parts[2]
        if request.method == "GET" and len(parts) == 3:
            return httpx.Response(200, json=self.images[image_id]) if image_id in self.images \
                else httpx.Response(404)
        if request.method == "GET":
            return httpx.Response(200, content=self.data[image_id])
        if request.method == "PATCH":
            self.patches.append(json.loads(request.content))
            return httpx.Response(200, json=self.images[image_id])
        if request.method == "PUT":
            self.data[image_id] = request.read()
            return httpx.Response(204)
        return httpx.Response(405)

    def client(self) -> ServiceClient:
        return ServiceClient(httpx.AsyncClient(transport=httpx.MockTransport(self.handler),
                                               base_url="http://image"), _Auth())


def qcow2_of(tmp_path: Path, content: bytes) -> bytes:
    raw = tmp_path / "src.raw"
    raw.write_bytes(content.ljust(1024 * 1024, b"\0"))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp_path / "src.qcow2")],
                   check=True)
    return (tmp_path / "src.qcow2").read_bytes()


def test_fetch_verifies_converts_and_overlays(tmp_path):
    images = FakeImages()
    images.add("img", qcow2_of(tmp_path, b"ROOT-DISK"), "qcow2")
    cache = ImageCache(images.client(), tmp_path / "instances")
    base, meta = asyncio.run(cache.fetch("img"))
    assert base.read_bytes().startswith(b"ROOT-DISK")  # stored raw (force_raw_images)
    assert asyncio.run(cache.fetch("img"))[0] == base  # second use: from the cache
    overlay = tmp_path / "disk"
    assert ImageCache.create_root(base, overlay, 1, "qcow2") == "qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", str(overlay)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["virtual-size"] == 1024 ** 3 and info["backing-filename"] == str(base)


def test_fetch_refuses_bad_checksums_and_lying_formats(tmp_path):
    images = FakeImages()
    images.add("bad", b"data", "raw")
    images.images["bad"]["checksum"] = "0" * 32
    cache = ImageCache(images.client(), tmp_path / "instances")
    with pytest.raises(BuildFailure, match="failed verification: md5"):
        asyncio.run(cache.fetch("bad"))
    images.add("bad-hash", b"data", "raw")
    images.images["bad-hash"]["os_hash_value"] = "0" * 128  # md5 matches; the sha512 does not
    with pytest.raises(BuildFailure, match="failed verification: sha512 does not match os_hash_value"):
        asyncio.run(cache.fetch("bad-hash"))
    images.add("liar", b"plain bytes, not qcow2", "qcow2")
    with pytest.raises(BuildFailure, match="Image liar is unacceptable: Image content does not match disk_format qcow2"):
        asyncio.run(cache.fetch("liar"))
    assert not list((tmp_path / "instances" / "_base").iterdir())  # nothing half-done is kept


def test_age_out_keeps_what_is_in_use(tmp_path):
    cache = ImageCache(None, tmp_path)
    cache.base_dir.mkdir()
    used, unused, fresh = (cache.base_dir / name for name in ("used", "unused", "fresh"))
    for path in (used, unused, fresh):
        path.write_bytes(b"x")
    old = time.time() - 7200
    for path in (used, unused):
        os.utime(path, (old, old))
    assert cache.age_out({used}, 3600) == [unused]
    assert used.exists() and fresh.exists() and not unused.exists()


def test_periodic_ageing_keeps_the_bases_instances_use(tmp_path):
    """The driver's periodic task: bases named in an instance's disk.info stay, old unused ones go."""
    pytest.importorskip("libvirt")
    from kilonova.compute.virt.libvirt.driver import LibvirtDriver

    conf = Config.load(state_dir=tmp_path, overrides={"libvirt": {
        "virt_type": "qemu", "remove_unused_original_minimum_age_seconds": "3600"}})
    driver = LibvirtDriver("h", conf, images=None)
    driver.cache.base_dir.mkdir(parents=True)
    used, unused, kernel = (driver.cache.base_dir / name for name in ("used", "unused", "kernel"))
    old = time.time() - 7200
    for path in (used, unused, kernel):
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    (driver.instances_path / "u-1").mkdir()
    (driver.instances_path / "u-1" / "disk.info").write_text(json.dumps({"bases": [str(used), str(kernel)]}))
    assert driver.in_use_bases() == {used, kernel}

    async def run() -> None:
        task = asyncio.create_task(driver._age_cache_periodically(0.05))
        try:
            while unused.exists():
                await asyncio.sleep(0.02)
        finally:
            task.cancel()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert used.exists() and kernel.exists()


def test_snapshot_uploads_a_flat_qcow2(tmp_path):
    pytest.importorskip("libvirt")
    from kilonova.compute.virt.libvirt.driver import LibvirtDriver

    images = FakeImages()
    images.add("src", qcow2_of(tmp_path, b"SNAPSHOT-ME"), "qcow2", kernel_id="k", ramdisk_id="r")
    images.images["snap"] = {"id": "snap", "status": "queued", "disk_format": None, "container_format": None}
    conf = Config.load(state_dir=tmp_path / "state", overrides={"libvirt": {"virt_type": "qemu"}})
    driver = LibvirtDriver("h", conf, images.client())
    driver._lookup = lambda uuid: None  # no domain: a stopped guest
    instance = {"uuid": "u-1", "image_ref": "src"}
    base, _ = asyncio.run(driver.cache.fetch("src"))
    (driver.instances_path / "u-1").mkdir(parents=True)
    driver.cache.create_root(base, driver.instances_path / "u-1" / "disk", 0, "qcow2")
    asyncio.run(driver.snapshot(instance, "snap"))
    uploaded = tmp_path / "uploaded.qcow2"
    uploaded.write_bytes(images.data["snap"])
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", str(uploaded)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    flat = tmp_path / "flat.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(uploaded), str(flat)], check=True)
    assert flat.read_bytes().startswith(b"SNAPSHOT-ME")
    operations = {op["path"]: op["value"] for op in images.patches[0]}
    assert operations == {"/disk_format": "qcow2", "/container_format": "bare", "/kernel_id": "k",
                          "/ramdisk_id": "r"}
    assert not list((driver.instances_path / "u-1").glob("snapshot-*"))


def test_raw_images_type_copies_and_grows(tmp_path):
    base = tmp_path / "base"
    base.write_bytes(b"RAW-BASE".ljust(1024 * 1024, b"\0"))
    target = tmp_path / "disk"
    assert ImageCache.create_root(base, target, 1, "raw") == "raw"
    assert target.stat().st_size == 1024 ** 3
    with open(target, "rb") as fh:
        assert fh.read(8) == b"RAW-BASE"
