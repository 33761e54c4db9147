"""Snapshots and extends of a qcow2 volume a running real guest has open, through the volume service and the compute
service's os-assisted-volume-snapshots, as Cinder's file-based drivers take them with Nova (`kilonova up`
with ``[volume] volume_format = qcow2`` and the libvirt driver; openstacksdk).

The guest writes its note on the hot-plugged volume. A snapshot (``force``: in-use) makes the volume service
put an overlay on the volume's file and the compute host switch the guest's disk onto it (an external
disk-only snapshot): the live domain then writes the overlay, over the frozen file that holds the snapshot,
and the host's connection names the overlay. A volume made from the snapshot holds the note. Deleting the
snapshot while the guest runs makes the host pull the frozen file's data into the overlay (a block rebase):
the old file is gone and the domain's disk has no backing file. The volume then detaches cleanly and, attached
again, the guest reads its note back."""
from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cloud import wait_for
from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import upload_guest, wait_console
from tests.libvirt.test_real_guest_interfaces import VIRSH, _xml
from tests.libvirt.test_real_guest_volumes import real_volume_cloud

HOST = "kilonova-assisted-test"
GIB = 1024 ** 3


@pytest.fixture(scope="module")
def cloud(guest):
    with real_volume_cloud(HOST, volume_format="qcow2") as instance:
        yield instance


def _disk(server_id: str, volume_id: str) -> ET.Element:
    """The live domain's disk of the volume (by its serial)."""
    tree = ET.fromstring(_xml(server_id))
    return next(d for d in tree.findall("./devices/disk") if d.findtext("serial") == volume_id[:20])


def _first_line(path: Path, fmt: str) -> bytes:
    out = path.with_name(path.name + ".read")
    subprocess.run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(path), str(out)], check=True,
                   capture_output=True)
    try:
        return out.read_bytes()[:512].split(b"\n")[0]
    finally:
        out.unlink()


def test_a_running_guest_volume_is_snapshotted_and_merged_by_its_host(cloud, guest):
    conn = cloud.sdk()
    storage, volumes = conn.block_storage, cloud.volumes_dir
    image = upload_guest(cloud, guest, "assisted")
    cloud.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.assisted")
    server = cloud.openstack("server", "create", "--flavor", "real.assisted", "--image", image["id"], "--network",
                             "private", "--wait", "assisted-vm", fmt_json=True, timeout=180)["id"]
    wait_console(cloud, server, f"{MARKER} ready", timeout=180)
    volume = storage.wait_for_status(storage.create_volume(size=1, name="assisted"), "available",
                                     failures=["error"], interval=0.2, wait=60)
    conn.compute.create_volume_attachment(server, volume_id=volume.id)
    log = wait_console(cloud, server, "written: KILONOVA-VOLUME-NOTE")
    (device, written) = re.findall(rf"{MARKER} volume (vd\w) written: (KILONOVA-VOLUME-NOTE from \S+)", log)[0]
    base = volumes / f"volume-{volume.id}"
    assert _disk(server, volume.id).find("driver").get("type") == "qcow2"

    # Taken with the host's help: the guest's disk is the overlay now, over the frozen file.
    snapshot = storage.create_snapshot(volume_id=volume.id, name="assisted-snap", force=True)
    snapshot = storage.wait_for_status(snapshot, "available", failures=["error"], interval=0.2, wait=90)
    overlay = volumes / f"volume-{volume.id}.{snapshot.id}"
    disk = _disk(server, volume.id)
    assert disk.find("source").get("file") == str(overlay), ET.tostring(disk)
    assert disk.find("backingStore/source").get("file") == str(base), ET.tostring(disk)
    attachment = storage.get_volume(volume.id).attachments[0]["attachment_id"]
    with cloud.http("block-storage") as api:
        shown = api.get(f"/v3/{conn.current_project_id}/attachments/{attachment}",
                        headers={"OpenStack-API-Version": "volume 3.44"}).json()["attachment"]
    assert shown["connection_info"]["data"]["device_path"] == str(overlay), shown

    # A volume from the snapshot holds what the guest wrote before it.
    copy = storage.wait_for_status(storage.create_volume(snapshot_id=snapshot.id, name="from-assisted"),
                                   "available", failures=["error"], interval=0.2, wait=60)
    assert _first_line(volumes / f"volume-{copy.id}", "qcow2").decode() == written

    # Deleted while the guest runs: the overlay pulls the frozen file in, which goes.
    storage.delete_snapshot(snapshot)
    storage.wait_for_delete(snapshot, interval=0.2, wait=90)
    disk = _disk(server, volume.id)
    assert disk.find("source").get("file") == str(overlay) and disk.find("backingStore/source") is None
    assert not base.exists()

    # It detaches cleanly (the host's connection names the overlay) and, back, the guest reads its note.
    conn.compute.delete_volume_attachment(volume.id, server)
    wait_for(lambda: storage.get_volume(volume.id).status == "available", "the detach", timeout=60)
    assert _first_line(overlay, "qcow2").decode() == written   # (read once QEMU has let go of the file)
    # The guest looks for new disks every 2 s: let it see this one gone (two heartbeats) before it comes back,
    # or it never notices that the disk it sees again is a new one.
    with cloud.http("compute") as api:
        def heartbeats() -> int:
            return api.post(f"/servers/{server}/action", json={"os-getConsoleOutput": {}}).json()["output"] \
                .count(f"{MARKER} alive")
        seen = heartbeats()
        wait_for(lambda: heartbeats() >= seen + 2, "two heartbeats of the guest without the disk", timeout=30)
    conn.compute.create_volume_attachment(server, volume_id=volume.id)
    log = wait_console(cloud, server, f"{MARKER} volume {device} holds:")
    assert f"{MARKER} volume {device} holds: {written}" in log, log
    cloud.openstack("server", "delete", "--wait", server, timeout=120)
    wait_for(lambda: storage.get_volume(volume.id).status == "available", "the detach at delete", timeout=60)
    storage.delete_volume(volume)
    storage.delete_volume(copy)
    wait_for(lambda: not list(volumes.glob(f"volume-{volume.id}*")), "the volume's files gone", timeout=60)


def test_a_running_guest_volume_is_extended_by_its_host(cloud, guest):
    """An attached qcow2 volume extended (cinder extend, 3.42): the host's QEMU grows the file (block resize,
    os-extend_volume_completion), the guest's disk has the new capacity, the volume its new size."""
    image = upload_guest(cloud, guest, "extend")
    cloud.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.extend")
    server = cloud.openstack("server", "create", "--flavor", "real.extend", "--image", image["id"], "--network",
                             "private", "--wait", "extend-vm", fmt_json=True, timeout=180)["id"]
    volume = cloud.openstack("volume", "create", "--size", "1", "extend-vol", fmt_json=True)["id"]
    wait_for(lambda: cloud.openstack("volume", "show", volume, fmt_json=True)["status"] == "available",
             "the volume", timeout=60)
    wait_console(cloud, server, f"{MARKER} ready")   # a disk there at its boot is not a hot-plugged one
    cloud.openstack("server", "add", "volume", server, volume)
    wait_console(cloud, server, "written: KILONOVA-VOLUME-NOTE")
    target = _disk(server, volume).find("target").get("dev")

    def capacity() -> int:
        shown = subprocess.run([*VIRSH, "domblkinfo", f"instance-{server}", target], capture_output=True,
                               text=True, check=True).stdout
        return int(re.search(r"Capacity:\s+(\d+)", shown).group(1))

    assert capacity() == GIB
    cloud.cinder("--os-volume-api-version", "3.42", "extend", volume, "2")
    wait_for(lambda: (v := cloud.openstack("volume", "show", volume, fmt_json=True))["status"] == "in-use"
             and v["size"] == 2, "the host's completion", timeout=90)
    assert capacity() == 2 * GIB
    info = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output", "json",
                           str(cloud.volumes_dir / f"volume-{volume}")], capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["virtual-size"] == 2 * GIB
    cloud.openstack("server", "delete", "--wait", server, timeout=120)
    wait_for(lambda: cloud.openstack("volume", "show", volume, fmt_json=True)["status"] == "available",
             "the detach at delete", timeout=60)
    cloud.openstack("volume", "delete", volume)
