"""The pure parts of volumes on the libvirt driver (virt/libvirt/volumes.py): which of a guest's disks are
volumes, how a move hands them over, where a volume's disk goes at spawn, and the disk element."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

volumes = pytest.importorskip("kilonova.compute.virt.libvirt.volumes", reason="libvirt-python is not installed")
from kilonova.compute.virt.libvirt.domain import Disk  # noqa: E402

INSTANCES = Path("/var/lib/kilonova/instances")
ROOT = {"path": str(INSTANCES / "u1" / "disk"), "target": "vda", "format": "qcow2", "readonly": False,
        "cache": "none"}
VOLUME = {"path": "/srv/volumes/volume-v1", "target": "vdb", "format": "raw", "readonly": False, "cache": "none"}


def test_a_move_copies_the_instance_disks_by_name_and_leaves_volumes_where_they_are():
    assert not volumes.is_volume(ROOT, INSTANCES) and volumes.is_volume(VOLUME, INSTANCES)
    assert volumes.portable([ROOT, VOLUME], INSTANCES) == [{**ROOT, "path": "disk"}, VOLUME]


def test_volumes_at_spawn_take_their_device_unless_a_local_disk_has_it():
    info = {"driver_volume_type": "local", "data": {"device_path": "/srv/volumes/volume-v2"}, "serial": "v2"}
    local = [Disk("/x/disk", "vda"), Disk("/x/disk.config", "vdb", "raw", readonly=True)]
    added = volumes.disks_of([{"boot_index": 0, "connection_info": info, "device_name": "/dev/vda"},
                              {"boot_index": None, "connection_info": info, "device_name": "/dev/vdb"}], local, "none")
    assert [(d.path, d.target, d.format) for d in added] == [("/srv/volumes/volume-v2", "vdc", "raw")]


def test_the_disk_element_names_the_file_raw_virtio_and_the_volume():
    local = {"driver_volume_type": "local", "data": {"device_path": "/srv/volumes/volume-v1", "access_mode": "rw"}}
    disk = ET.fromstring(volumes.disk_xml(volumes.volume_disk(local, "vdb", "none"), "0123456789abcdef0123456789"))
    assert (disk.get("type"), disk.find("source").get("file"), disk.find("target").get("dev"),
            disk.find("target").get("bus"), disk.find("driver").get("type")) == \
        ("file", "/srv/volumes/volume-v1", "vdb", "virtio", "raw")
    assert disk.find("serial").text == "0123456789abcdef0123"   # QEMU takes 20 characters
    with pytest.raises(Exception, match="gave no file"):
        volumes.volume_disk({"driver_volume_type": "iscsi", "data": {}}, "vdb", "none")


def test_a_volume_of_another_machine_is_an_nbd_network_disk():
    nbd = {"driver_volume_type": "nbd", "data": {"host": "192.0.2.10", "port": 10809, "name": "v9",
                                                 "export": "nbd://192.0.2.10:10809/v9", "access_mode": "ro"}}
    disk = volumes.volume_disk(nbd, "vdc", "none")
    element = ET.fromstring(volumes.disk_xml(disk))
    source = element.find("source")
    assert (element.get("type"), source.get("protocol"), source.get("name"), element.find("readonly") is not None) \
        == ("network", "nbd", "v9", True)
    assert [(h.get("name"), h.get("port")) for h in source.findall("host")] == [("192.0.2.10", "10809")]
    # In a domain defined from the guest's layout too, and a move leaves it where it is.
    from dataclasses import asdict
    assert volumes.is_volume(asdict(disk), INSTANCES) and volumes._qemu_name(disk) == "nbd://192.0.2.10:10809/v9"


def test_a_moved_guest_reaches_its_volumes_as_its_new_host_was_told():
    """At a move's destination (and back on the source at a revert), each volume's disk is the one the volume
    service gave this host, at the target it had; a disk is found by its serial, or by its source in a layout
    written before disks had one; the instance's own disks are left alone."""
    from dataclasses import asdict
    local = {"driver_volume_type": "local", "data": {"device_path": "/srv/volumes/volume-v1"}, "serial": "v1"}
    nbd = {"driver_volume_type": "nbd", "data": {"host": "192.0.2.10", "port": 10811, "name": "v1"}, "serial": "v1"}
    before = [ROOT, asdict(volumes.volume_disk(local, "vdc", "none"))]
    assert before[1]["serial"] == "v1"
    moved = volumes.reconnected(before, [{"volume_id": "v1", "connection_info": nbd}], "writeback")
    assert moved[0] == ROOT
    assert {k: moved[1][k] for k in ("path", "target", "protocol", "hosts", "serial", "cache")} == {
        "path": "v1", "target": "vdc", "protocol": "nbd", "hosts": [{"name": "192.0.2.10", "port": "10811"}],
        "serial": "v1", "cache": "writeback"}
    back = volumes.reconnected(moved, [{"volume_id": "v1", "connection_info": local}], "none")
    assert (back[1]["path"], back[1]["target"], back[1]["protocol"]) == ("/srv/volumes/volume-v1", "vdc", "")
    old_layout = volumes.reconnected([VOLUME], [{"volume_id": "v1", "connection_info": local}], "none")
    assert (old_layout[0]["path"], old_layout[0]["target"], old_layout[0]["serial"]) == (VOLUME["path"], "vdb", "v1")
    assert volumes.reconnected([VOLUME], [], "none") == [VOLUME]


def test_a_live_migration_destination_xml_names_its_own_connection_at_the_same_device():
    """The migratable XML's volume disk (by serial) becomes the destination's, alias and PCI address kept."""
    xml = ("<domain><devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
           "<source file='/srv/volumes/volume-v1'/><target dev='vdb' bus='virtio'/><serial>v1</serial>"
           "<alias name='virtio-disk1'/><address type='pci' slot='0x07'/></disk>"
           "<disk type='file' device='disk'><source file='/x/disk'/><target dev='vda' bus='virtio'/></disk>"
           "</devices></domain>")
    nbd = {"driver_volume_type": "nbd", "data": {"host": "192.0.2.10", "port": 10812, "name": "v1"}, "serial": "v1"}
    root = ET.fromstring(volumes.retarget_xml(xml, [{"volume_id": "v1", "connection_info": nbd}], "none"))
    first, second = root.findall("devices/disk")
    assert (first.get("type"), first.find("source").get("name"), first.find("target").get("dev"),
            first.find("address").get("slot"), first.find("alias").get("name"), first.findtext("serial")) == \
        ("network", "v1", "vdb", "0x07", "virtio-disk1", "v1")
    assert second.find("source").get("file") == "/x/disk"
    assert volumes.retarget_xml(xml, [], "none") == xml


def _chain_xml(*files: str) -> str:
    """A domain whose vdb is a chain of these files (the active one first), as libvirt's live XML nests them."""
    inner = ""
    for name in reversed(files[1:]):
        inner = f"<backingStore type='file'><format type='qcow2'/><source file='{name}'/>{inner}</backingStore>"
    return (f"<domain><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{files[0]}'/>{inner}<target dev='vdb' bus='virtio'/></disk></devices></domain>")


def test_a_snapshot_merge_is_done_only_when_the_live_chain_skips_what_it_merged():
    """A block job that failed leaves blockJobInfo as a finished one does: the chain tells them apart, so that
    the volume service never removes a file the guest's disk still reads."""
    base, older, newer = "/v/volume-1", "/v/volume-1.s1", "/v/volume-1.s2"
    before = volumes.disk_chain(_chain_xml(newer, older, base), "vdb")
    assert before == [newer, older, base]
    # Commit of the older snapshot's overlay into the base: done when the chain skips it.
    assert volumes.merge_left(volumes.disk_chain(_chain_xml(newer, base), "vdb"), older, base) is None
    assert "volume-1.s1 is still in the chain" in volumes.merge_left(before, older, base)
    # Pull into the active file: done when the active file's backing is the new base (or nothing at all).
    assert volumes.merge_left([newer, base], base, None) is None
    assert volumes.merge_left([newer], None, None) is None
    assert volumes.merge_left(before, base, None) == f"the active file is backed by {older}, not {base}"
    assert volumes.merge_left([newer, base], None, None) == f"the active file is backed by {base}, not nothing"
