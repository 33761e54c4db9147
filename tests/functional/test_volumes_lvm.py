"""The LVM thin backend for real (``[volume] backend = lvm``): a volume group with its thin pool on a loop
device made for the module (losetup, pvcreate, vgcreate, lvcreate --type thin-pool; all removed after), a
`kilonova up` whose volume service uses it, and openstacksdk. Each volume is a thin logical volume
``volume-<id>`` the LVM tools show: created, extended, snapshotted (``_snapshot-<id>``), copied from the
snapshot, written from an image (its data the image's), attached to a server (the host is given the
device), and removed with the volumes. Skipped, saying why, where lvm2 or the kernel's device-mapper is
missing (a kernel without device-mapper cannot activate logical volumes)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.cloud import Cloud, wait_for

GIB = 1024 ** 3


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()[-400:]}")
    return result


@pytest.fixture(scope="module")
def volume_group():
    if not shutil.which("lvm"):
        pytest.skip("lvm2 is not installed (scripts/bootstrap.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("making a volume group on a loop device needs root")
    probe = _run("dmsetup", "version", check=False)
    if probe.returncode != 0:
        pytest.skip(f"this kernel offers no device-mapper, so logical volumes cannot be activated here "
                    f"(dmsetup version: {probe.stderr.strip().splitlines()[0] if probe.stderr.strip() else probe.returncode})")
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-lvm-"))
    backing = workdir / "pv.img"
    with open(backing, "wb") as image:
        image.truncate(3 * GIB)
    vg = f"kn-test-{os.getpid()}"
    loop = _run("losetup", "--find", "--show", str(backing)).stdout.strip()
    try:
        try:
            _run("lvm", "pvcreate", "--yes", loop)
            _run("lvm", "vgcreate", "--yes", vg, loop)
            _run("lvm", "lvcreate", "--yes", "--type", "thin-pool", "--size", "2g", "--name", f"{vg}-pool", vg)
        except RuntimeError as exc:
            pytest.skip(f"no LVM thin pool can be made here: {exc}")
        yield vg
    finally:
        _run("lvm", "vgremove", "--yes", "--force", vg, check=False)
        _run("lvm", "pvremove", "--yes", loop, check=False)
        _run("losetup", "--detach", loop, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def lvm_cloud(volume_group):
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-test-"))
    instance = Cloud(workdir, hosts=1, config={"volume": {"backend": "lvm", "volume_group": volume_group}})
    instance.start(timeout=120)
    yield instance
    instance.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def logical_volumes(vg: str) -> dict[str, dict]:
    """{name: {"size": bytes, "origin": name}} of the group's thin volumes (the pool left out)."""
    out = _run("lvm", "lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
               "-o", "lv_name,lv_size,origin", vg).stdout
    found = {}
    for line in out.splitlines():
        name, size, origin = (field.strip() for field in line.split("|"))
        if name != f"{vg}-pool" and not name.startswith("["):
            found[name] = {"size": int(size), "origin": origin}
    return found


def test_volumes_are_thin_logical_volumes_from_create_to_delete(lvm_cloud, volume_group):
    conn = lvm_cloud.sdk()
    storage = conn.block_storage

    def ready(resource, waiter=storage.wait_for_status):
        return waiter(resource, "available", failures=["error"], interval=0.2, wait=120)

    volume = ready(storage.create_volume(size=1, name=f"lvm-{uuid.uuid4().hex[:6]}"))
    assert logical_volumes(volume_group)[f"volume-{volume.id}"]["size"] == GIB
    storage.extend_volume(volume, 2)
    wait_for(lambda: storage.get_volume(volume.id).size == 2 and storage.get_volume(volume.id).status == "available",
             "the extend", timeout=60)
    assert logical_volumes(volume_group)[f"volume-{volume.id}"]["size"] == 2 * GIB

    snapshot = ready(storage.create_snapshot(volume_id=volume.id, name="lvm-snap"))
    lvs = logical_volumes(volume_group)
    assert lvs[f"_snapshot-{snapshot.id}"]["origin"] == f"volume-{volume.id}"
    copy = ready(storage.create_volume(snapshot_id=snapshot.id, size=3, name="lvm-from-snap"))
    lvs = logical_volumes(volume_group)
    assert lvs[f"volume-{copy.id}"] == {"size": 3 * GIB, "origin": f"_snapshot-{snapshot.id}"}

    image = conn.image.find_image("kilonova-tiny")
    from_image = ready(storage.create_volume(size=1, image_id=image.id, name="lvm-from-image"))
    assert storage.get_volume(from_image.id).is_bootable
    device = f"/dev/{volume_group}/volume-{from_image.id}"
    stored = lvm_cloud.state_dir / "images" / image.id
    compared = _run("qemu-img", "compare", "-f", "raw", "-F", image.disk_format, device, str(stored), check=False)
    assert compared.returncode == 0, compared.stdout + compared.stderr   # the image's data, raw

    # Attached to a server: its host is given the logical volume's device.
    server = conn.compute.create_server(name="lvm-vm", flavor_id="1", image_id=image.id,
                                        networks=[{"uuid": conn.network.find_network("private").id}])
    conn.compute.wait_for_server(server, interval=0.2, wait=60)
    conn.compute.create_volume_attachment(server, volume_id=volume.id)
    attached = wait_for(lambda: (v := storage.get_volume(volume.id)).status == "in-use" and v, "the attach",
                        timeout=60)
    with lvm_cloud.http("block-storage") as api:
        shown = api.get(f"/v3/{conn.current_project_id}/attachments/{attached.attachments[0]['attachment_id']}",
                        headers={"OpenStack-API-Version": "volume 3.44"}).json()["attachment"]
    assert shown["connection_info"]["data"]["device_path"] == f"/dev/{volume_group}/volume-{volume.id}", shown
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.2, wait=60)
    wait_for(lambda: storage.get_volume(volume.id).status == "available", "the detach", timeout=60)

    # Removed with the LVM tools: nothing left in the pool.
    storage.delete_snapshot(snapshot)
    storage.wait_for_delete(snapshot, interval=0.2, wait=60)
    for each in (volume, copy, from_image):
        storage.delete_volume(each)
    for each in (volume, copy, from_image):
        storage.wait_for_delete(each, interval=0.2, wait=60)
    assert logical_volumes(volume_group) == {}
