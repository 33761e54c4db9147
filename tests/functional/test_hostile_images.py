"""Images that could hurt a host are refused at upload, with a clear error and nothing kept (issue 16).

Real files made by ``qemu-img`` -- a qcow2 naming an external data file, a qcow2 with a backing file, a
VMDK whose data is a "flat" extent file, random bytes labelled qcow2, a qcow2 labelled raw -- uploaded
with the ``openstack`` CLI and openstacksdk as a user would. Each answers a 400 that says why, the image
stays ``queued`` with no data, and the store holds no file for it.
"""
from __future__ import annotations

import pytest

from tests import image_files

pytestmark = image_files.needs_qemu_img


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """name -> (path, disk_format, what the error must say)."""
    d = image_files.make(tmp_path_factory.mktemp("hostile"))
    return {
        "data-file": (d / "data-file.qcow2", "qcow2", "safety check"),
        "backing": (d / "backing.qcow2", "qcow2", "safety check"),
        "flat-vmdk": (d / "flat.vmdk", "vmdk", "safety check"),
        "raw-as-qcow2": (d / "random.bin", "qcow2", "does not match disk_format qcow2"),
        "qcow2-as-raw": (d / "real.qcow2", "raw", "does not match disk_format raw"),
    }


def _stored_files(cloud) -> set[str]:
    return {p.name for p in (cloud.state_dir / "images").iterdir()}


@pytest.mark.parametrize("name", ["data-file", "backing", "flat-vmdk", "raw-as-qcow2", "qcow2-as-raw"])
def test_a_hostile_upload_is_refused_and_nothing_is_kept(cloud, hostile, name):
    path, disk_format, reason = hostile[name]
    conn = cloud.sdk()
    image = conn.image.create_image(name=f"hostile-{name}", disk_format=disk_format, container_format="bare")
    try:
        before = _stored_files(cloud)
        response = conn.image.put(f"/images/{image.id}/file", data=path.read_bytes(), raise_exc=False,
                                  headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 400, response.text
        assert reason in response.text
        shown = conn.image.get_image(image.id)
        assert shown.status == "queued" and not shown.size and not shown.checksum
        assert _stored_files(cloud) == before  # no file, no partial file
    finally:
        conn.image.delete_image(image.id)


def test_the_cli_says_why(cloud, hostile):
    path, _, _ = hostile["data-file"]
    result = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2",
                             "--container-format", "bare", "hostile-cli", check=False)
    try:
        assert result.returncode != 0
        assert "Image does not pass safety check" in result.stderr and "data_file" in result.stderr
    finally:
        cloud.openstack("image", "delete", "hostile-cli", check=False)


def test_a_real_qcow2_still_uploads(cloud, hostile):
    path, _, _ = hostile["qcow2-as-raw"]
    created = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2",
                              "--container-format", "bare", "safe-qcow2", fmt_json=True)
    try:
        assert created["status"] == "active" and created["size"] == path.stat().st_size
    finally:
        cloud.openstack("image", "delete", created["id"])
