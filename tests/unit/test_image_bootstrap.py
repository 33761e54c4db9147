"""The default ``kilonova-tiny`` image and the qcow2 file behind it."""
import shutil
import struct
import subprocess

import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.image import bootstrap, qcow2
from kilonova.image.service import ImageService


def test_empty_qcow2_header():
    data = qcow2.empty_image()
    assert len(data) <= 512 * 1024
    magic, version = struct.unpack_from(">4sI", data)
    assert (magic, version) == (b"QFI\xfb", 3)
    assert qcow2.virtual_size(data) == 1 << 30
    assert struct.unpack_from(">I", data, 20)[0] == 16  # cluster bits
    assert qcow2.virtual_size(b"not an image") is None


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_qemu_img_accepts_it(tmp_path):
    path = tmp_path / "tiny.qcow2"
    path.write_bytes(qcow2.empty_image())
    info = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True,
                          check=True, timeout=30)
    assert '"virtual-size": 1073741824' in info.stdout
    subprocess.run(["qemu-img", "check", str(path)], check=True, capture_output=True, timeout=30)


async def test_default_image_is_idempotent_across_restarts(tmp_path):
    validator = FakeValidator({"demo": ("demo", "p-demo", ["member"])})
    env = service_env(tmp_path)
    first = ImageService(env, validator=validator)
    first.prepare()
    image = await first.ensure_default_image("p-admin")
    assert image["status"] == "active" and image["owner"] == "p-admin"
    again = ImageService(service_env(tmp_path), validator=validator)
    again.prepare()
    assert (await again.ensure_default_image("p-admin"))["id"] == image["id"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=again.app), base_url="http://i") as api:
        listed = (await api.get("/v2/images", params={"name": bootstrap.DEFAULT_IMAGE_NAME},
                                headers={"X-Auth-Token": "demo"})).json()["images"]
        assert len(listed) == 1
        shown = listed[0]
        assert shown["visibility"] == "public" and shown["disk_format"] == "qcow2"
        assert shown["container_format"] == "bare" and shown["virtual_size"] == 1 << 30
        data = await api.get(f"/v2/images/{shown['id']}/file", headers={"X-Auth-Token": "demo"})
        assert data.content == qcow2.empty_image()
    # a lost data file is put back
    again.store.path(image["id"]).unlink()
    repaired = await again.ensure_default_image("p-admin")
    assert repaired["status"] == "active" and again.store.exists(image["id"])
    again.db.close()
