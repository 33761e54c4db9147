"""A volume on real guests (os-volume_attachments on the libvirt driver) through `kilonova up` and the
`openstack` CLI: hot-plugged into a running guest as a virtio disk (live and in its definition), which
writes a note on it; detached cleanly (gone from the guest and its definition, the volume available);
swapped (admin) for another volume while the guest runs (QEMU mirrors the disk, the note with it);
attached to a second guest, which reads the first guest's note back."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import libvirt_cloud, upload_guest, wait_console
from tests.libvirt.test_real_guest_interfaces import _xml

HOST = "kilonova-volume-test"


@contextlib.contextmanager
def real_volume_cloud(host: str, **volume_options: str):
    """`kilonova up` with the libvirt driver on one host named ``host``; its volumes in ``volumes_dir``, where
    QEMU (libvirt-qemu) reaches them: libvirt gives it the volume's file itself."""
    volumes = Path(tempfile.mkdtemp(prefix="kilonova-volumes-"))
    os.chmod(volumes, 0o711)
    try:
        with libvirt_cloud({"DEFAULT": {"host": host},
                            "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
                            "libvirt": {"shutdown_timeout": "20"},
                            "volume": {"volumes_dir": str(volumes), **volume_options}}) as instance:
            instance.volumes_dir = volumes
            yield instance
    finally:
        shutil.rmtree(volumes, ignore_errors=True)


@pytest.fixture(scope="module")
def cloud(guest):
    with real_volume_cloud(HOST) as instance:
        yield instance


def _volume_status(cloud, volume_id: str, wanted: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    with cloud.http("block-storage") as volumes:
        project = cloud.sdk().current_project_id
        while True:
            shown = volumes.get(f"/v3/{project}/volumes/{volume_id}").json()["volume"]
            if shown["status"] == wanted or time.monotonic() > deadline:
                assert shown["status"] == wanted, shown
                return shown
            time.sleep(0.25)


def test_a_volume_carries_data_from_one_real_guest_to_another(cloud, guest):
    os_ = cloud.openstack
    image = upload_guest(cloud, guest, "volumes")
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.volumes")
    first, second = (os_("server", "create", "--flavor", "real.volumes", "--image", image["id"], "--network",
                         "private", "--wait", name, fmt_json=True, timeout=180) for name in ("vol-a", "vol-b"))
    for server in (first, second):
        wait_console(cloud, server["id"], f"{MARKER} ready", timeout=180)
    volume = os_("volume", "create", "--size", "1", "carried", fmt_json=True)
    _volume_status(cloud, volume["id"], "available")
    path = str(cloud.volumes_dir / f"volume-{volume['id']}")

    # Hot-plugged into the first guest: a virtio disk of its live domain and its definition; it writes its note.
    os_("server", "add", "volume", first["id"], volume["id"])
    attached = _volume_status(cloud, volume["id"], "in-use")
    assert attached["attachments"][0]["server_id"] == first["id"]
    assert path in _xml(first["id"]) and path in _xml(first["id"], inactive=True)
    log = wait_console(cloud, first["id"], f"{MARKER} volume vdb written:")
    written = re.search(rf"{MARKER} volume vdb written: (KILONOVA-VOLUME-NOTE from \S+)", log).group(1)
    listed = os_("server", "volume", "list", first["id"], fmt_json=True)
    assert [(v["Volume ID"], v["Device"]) for v in listed] == [(volume["id"], "/dev/vdb")]

    # An admin swaps it, in the running guest, for another volume: QEMU mirrors the disk, the note with it.
    other = os_("volume", "create", "--size", "1", "swapped-in", fmt_json=True)
    _volume_status(cloud, other["id"], "available")
    with cloud.http("compute") as compute:
        swapped = compute.put(f"/servers/{first['id']}/os-volume_attachments/{volume['id']}",
                              json={"volumeAttachment": {"volumeId": other["id"]}})
        assert swapped.status_code == 202, swapped.text
    _volume_status(cloud, volume["id"], "available", timeout=180)  # the mirror copies the whole disk first
    _volume_status(cloud, other["id"], "in-use")
    other_path = str(cloud.volumes_dir / f"volume-{other['id']}")
    with open(other_path, "rb") as disk:
        assert disk.read(512).split(b"\n")[0].decode() == written
    assert other_path in _xml(first["id"]) and other_path in _xml(first["id"], inactive=True)
    assert path not in _xml(first["id"]) and path not in _xml(first["id"], inactive=True)
    swapped_out, volume = volume, other  # the one the guest has now
    path = other_path

    # Detached cleanly: out of the guest and its definition, the volume available again.
    os_("server", "remove", "volume", first["id"], volume["id"])
    _volume_status(cloud, volume["id"], "available")
    assert path not in _xml(first["id"]) and path not in _xml(first["id"], inactive=True)

    # The second guest finds the first one's note on it.
    os_("server", "add", "volume", second["id"], volume["id"])
    _volume_status(cloud, volume["id"], "in-use")
    log = wait_console(cloud, second["id"], f"{MARKER} volume vdb holds:")
    assert f"{MARKER} volume vdb holds: {written}" in log
    # Deleting the server detaches it (not delete_on_termination: the volume stays, available).
    os_("server", "delete", "--wait", second["id"], timeout=120)
    _volume_status(cloud, volume["id"], "available")
    os_("server", "delete", "--wait", first["id"], timeout=120)
    os_("volume", "delete", volume["id"], swapped_out["id"])


def test_a_real_guest_boots_from_a_volume(cloud, guest):
    """``--boot-from-volume``: the volume service makes the volume from the image; its file is the guest's vda."""
    os_ = cloud.openstack
    image = upload_guest(cloud, guest, "bfv")
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.bfv")
    server = os_("server", "create", "--flavor", "real.bfv", "--image", image["id"], "--boot-from-volume", "1",
                 "--network", "private", "--wait", "bfv-vm", fmt_json=True, timeout=240)
    shown = os_("server", "show", server["id"], fmt_json=True)
    (root,) = [v["id"] for v in shown["volumes_attached"]]
    _volume_status(cloud, root, "in-use")
    log = wait_console(cloud, server["id"], f"{MARKER} ready", timeout=180)
    assert f"{MARKER} booted kernel" in log
    path = str(cloud.volumes_dir / f"volume-{root}")
    assert f"<source file='{path}'" in _xml(server["id"]) and "dev='vda'" in _xml(server["id"])
    os_("server", "delete", "--wait", server["id"], timeout=120)
    _volume_status(cloud, root, "available")   # the CLI's default: the boot volume is kept
    os_("volume", "delete", root)
