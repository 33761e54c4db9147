"""Where image data becomes a disk, hostile data is refused (kilonova/common/image_safety.py).

Real files made by qemu-img. The compute host's image cache and the volume service's volume-from-image
each refuse a qcow2 with an external data file or a backing file, a flat VMDK, and content that is not
its disk_format; qemu-img is told the format and runs under resource limits.
"""
from __future__ import annotations

import shutil

import pytest

from kilonova.common import image_safety
from kilonova.compute.virt.driver import BuildFailure
from kilonova.compute.virt.libvirt.imagecache import ImageCache
from kilonova.volume.images import ImageError
from tests import image_files

pytestmark = image_files.needs_qemu_img


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return image_files.make(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("name, disk_format, reason", [
    ("data-file.qcow2", "qcow2", "data_file"),
    ("backing.qcow2", "qcow2", "backing_file"),
    ("flat.vmdk", "vmdk", "descriptor"),
    ("real.qcow2", "raw", "does not match disk_format raw"),
    ("target.raw", "qcow2", "does not match disk_format qcow2"),
    ("target.raw", "iso", "does not match disk_format iso"),
])
def test_hostile_files_are_refused(files, name, disk_format, reason):
    with pytest.raises(image_safety.UnsafeImage, match=reason):
        image_safety.check_file(files / name, disk_format)


@pytest.mark.parametrize("name, disk_format, qemu_format", [
    ("real.qcow2", "qcow2", "qcow2"), ("sparse.vmdk", "vmdk", "vmdk"), ("target.raw", "raw", "raw"),
    ("target.raw", "ami", "raw"),
])
def test_safe_files_pass_with_the_format_qemu_opens(files, name, disk_format, qemu_format):
    assert image_safety.check_file(files / name, disk_format)["format"] == qemu_format


def test_qemu_img_runs_under_limits(files, monkeypatch):
    """The limits are really applied: with 1 MiB of address space qemu-img cannot even start."""
    monkeypatch.setattr(image_safety, "QEMU_IMG_LIMITS", ("--as=1048576", "--cpu=30"))
    with pytest.raises(image_safety.UnsafeImage, match="qemu-img could not read the image"):
        image_safety.qemu_img_info(files / "real.qcow2", "qcow2")


def test_the_compute_image_cache_refuses_and_keeps_nothing(files, tmp_path):
    cache = ImageCache(images=None, instances_path=tmp_path)
    partial = tmp_path / "base.part"
    shutil.copy(files / "data-file.qcow2", partial)
    with pytest.raises(BuildFailure, match="Image img-1 is unacceptable: .*data_file"):
        cache._prepare(partial, tmp_path / "base", {"id": "img-1", "disk_format": "qcow2"})
    assert not (tmp_path / "base").exists()


def test_a_volume_from_a_hostile_image_is_refused(files, tmp_path):
    from kilonova.volume.backend import FileBackend

    backend = FileBackend(tmp_path)
    shutil.copy(files / "backing.qcow2", backend.image_path("vol-1"))
    with pytest.raises(ImageError, match="Image for volume vol-1 is unacceptable: .*backing_file"):
        backend.write_image("vol-1", 1, "qcow2")
    assert not backend.path("vol-1").exists()
