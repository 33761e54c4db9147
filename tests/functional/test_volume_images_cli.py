"""Volumes from images and the volume actions clients send, through the real `openstack` CLI and
openstacksdk: an image's data written into a volume (bootable, volume_image_metadata), Cinder's 400s for
images that cannot be used, a volume that does not fit the image's virtual size going to error with a user
message; bootable/read-only flags, retype, state reset and forced delete."""
from __future__ import annotations

import subprocess
import time

import pytest
from openstack import exceptions as sdk_exc

MARKER = b"kilonova-volume-from-image"


def _qcow2(tmp_path, virtual: str = "64M") -> bytes:
    raw, qcow2 = tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    with open(raw, "wb") as handle:
        handle.truncate(1 << 20)
        handle.seek(4096)
        handle.write(MARKER)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    subprocess.run(["qemu-img", "resize", "-f", "qcow2", str(qcow2), virtual], check=True, capture_output=True)
    return qcow2.read_bytes()


@pytest.fixture(scope="module")
def images(cloud, tmp_path_factory):
    conn = cloud.sdk()
    made = {}
    for name, virtual, extra in (("vol-src", "64M", {}), ("vol-huge", "3G", {}),
                                 ("vol-mindisk", "64M", {"min_disk": 5})):
        made[name] = conn.image.create_image(name=name, data=_qcow2(tmp_path_factory.mktemp(name), virtual),
                                             disk_format="qcow2", container_format="bare", visibility="public",
                                             **extra)
    conn.image.update_image(made["vol-src"], os_distro="kilonova")
    yield made
    for image in made.values():
        conn.image.delete_image(image)


def _wait(conn, volume_id, *statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        volume = conn.block_storage.get_volume(volume_id)
        if volume.status in statuses or time.monotonic() > deadline:
            assert volume.status in statuses, volume.status
            return volume
        time.sleep(0.2)


def test_volume_from_an_image_and_back_with_cli(cloud, images, tmp_path):
    made = cloud.openstack("volume", "create", "--image", "vol-src", "--size", "1", "from-image",
                           cloud="kilonova-demo", fmt_json=True)
    conn = cloud.sdk("kilonova-demo")
    try:
        volume = _wait(conn, made["id"], "available", "error")
        assert volume.status == "available" and volume.is_bootable is True
        shown = cloud.openstack("volume", "show", made["id"], cloud="kilonova-demo", fmt_json=True)
        metadata = shown["volume_image_metadata"]
        assert metadata["image_id"] == images["vol-src"].id and metadata["image_name"] == "vol-src"
        assert metadata["disk_format"] == "qcow2" and metadata["os_distro"] == "kilonova"
        path = cloud.state_dir / "volumes" / f"volume-{made['id']}"
        with open(path, "rb") as handle:   # the image's data, raw, in a volume of its own size
            handle.seek(4096)
            assert handle.read(len(MARKER)) == MARKER
        assert path.stat().st_size == 1024 ** 3
        cloud.openstack("volume", "set", "--image-property", "purpose=test", made["id"], cloud="kilonova-demo")
        shown = cloud.openstack("volume", "show", made["id"], cloud="kilonova-demo", fmt_json=True)
        assert shown["volume_image_metadata"]["purpose"] == "test"
        # and back: the volume's data as a new qcow2 image, with the volume's image properties
        image = cloud.openstack("image", "create", "--volume", made["id"], "--disk-format", "qcow2",
                                "image-of-volume", cloud="kilonova-demo", fmt_json=True)
        uploaded = conn.image.wait_for_status(conn.image.find_image("image-of-volume"), "active", wait=60,
                                              interval=0.3)
        try:
            assert _wait(conn, made["id"], "available").status == "available" and image
            assert uploaded.disk_format == "qcow2" and uploaded.os_distro == "kilonova"
            copy = tmp_path / "uploaded.qcow2"
            copy.write_bytes(conn.image.download_image(uploaded).content)
            subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(copy), str(copy) + ".raw"],
                           check=True)
            with open(str(copy) + ".raw", "rb") as handle:
                handle.seek(4096)
                assert handle.read(len(MARKER)) == MARKER
        finally:
            conn.image.delete_image(uploaded)
    finally:
        cloud.openstack("volume", "delete", made["id"], cloud="kilonova-demo")


def test_images_that_cannot_be_used(cloud, images):
    conn = cloud.sdk("kilonova-demo")
    with pytest.raises(sdk_exc.BadRequestException, match="Invalid image identifier"):
        conn.block_storage.create_volume(size=1, image_id="4e0a1f0e-0000-4000-8000-000000000000")
    with pytest.raises(sdk_exc.BadRequestException, match="minDisk"):
        conn.block_storage.create_volume(size=1, image_id=images["vol-mindisk"].id)
    with pytest.raises(sdk_exc.BadRequestException, match="only one of them"):
        conn.block_storage.create_volume(size=1, image_id=images["vol-src"].id,
                                         source_volume_id="4e0a1f0e-0000-4000-8000-000000000001")
    # 3 GiB of virtual disk in a 1 GiB volume: found once the data is there; the volume goes to error
    volume = conn.block_storage.create_volume(size=1, image_id=images["vol-huge"].id, name="too-small")
    try:
        assert _wait(conn, volume.id, "error", "available").status == "error"
        # (`openstack volume message list` asks at 3.0, where Cinder has no messages: the cinder CLI then)
        listed = [line for line in cloud.cinder("message-list", cloud="kilonova-demo").stdout.splitlines()
                  if volume.id in line]
        assert len(listed) == 1 and "VOLUME_VOLUME_005_011" in listed[0]
        assert "copy image to volume: Image used for creating volume exceeds available space." in listed[0]
        assert not (cloud.state_dir / "volumes" / f"volume-{volume.id}").exists()
    finally:
        conn.block_storage.delete_volume(volume)


def test_flags_state_and_forced_delete_with_cli(cloud):
    made = cloud.openstack("volume", "create", "--size", "1", "flags", cloud="kilonova-demo", fmt_json=True)
    conn = cloud.sdk("kilonova-demo")
    _wait(conn, made["id"], "available")
    cloud.openstack("volume", "set", "--bootable", "--read-only", made["id"], cloud="kilonova-demo")
    volume = conn.block_storage.get_volume(made["id"])
    assert volume.is_bootable is True
    cloud.openstack("volume", "type", "create", "retype-target")
    try:
        cloud.openstack("volume", "set", "--type", "retype-target", made["id"], cloud="kilonova-demo")
        assert conn.block_storage.get_volume(made["id"]).volume_type == "retype-target"
        cloud.openstack("volume", "set", "--type", "__DEFAULT__", made["id"], cloud="kilonova-demo")
    finally:
        cloud.openstack("volume", "type", "delete", "retype-target")
    denied = cloud.openstack("volume", "set", "--state", "error", made["id"], cloud="kilonova-demo", check=False)
    assert denied.returncode != 0 and "403" in denied.stderr
    cloud.openstack("volume", "set", "--state", "creating", made["id"])      # admin
    assert conn.block_storage.get_volume(made["id"]).status == "creating"
    refused = cloud.openstack("volume", "delete", made["id"], cloud="kilonova-demo", check=False)
    assert refused.returncode != 0 and "creating" in refused.stderr
    cloud.openstack("volume", "delete", "--force", made["id"])                # admin
    conn.block_storage.wait_for_delete(volume, wait=30, interval=0.2)
    assert not (cloud.state_dir / "volumes" / f"volume-{made['id']}").exists()
