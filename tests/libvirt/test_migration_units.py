"""The live migration's pure parts: the destination's domain XML and the progress reports."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from kilonova.compute.virt.libvirt.domain import Disk, DomainSpec, Nic, build_xml
from kilonova.compute.virt.libvirt.livemigration import _finished, _progress, rewrite_xml


def source_xml() -> str:
    return build_xml(DomainSpec(
        uuid="0e6e2f3c-6a4a-4c59-9c1b-2f1f1c3f0009", name="instance-x", virt_type="qemu", memory_mb=128, vcpus=2,
        disks=[Disk("/a/instances/u/disk", "vda"), Disk("/a/instances/u/disk.config", "vdb", "raw", readonly=True)],
        nics=[Nic("fa:16:3e:00:00:01", "kbr-netaaaa", "tapport")], console_log="/a/instances/u/console.log",
        kernel="/a/instances/u/kernel", initrd="/a/instances/u/ramdisk", cmdline="console=ttyS0",
        shared_cpus="0-1"))


def test_the_destination_gets_its_own_paths_bridges_vnc_address_and_cpus():
    root = ET.fromstring(rewrite_xml(source_xml(), "/a/instances/u", "/b/instances/u", {"kbr-netaaaa": "kbr-netbbbb"},
                                     "192.0.2.7", "2-3"))
    assert [d.find("source").get("file") for d in root.findall("devices/disk")] == [
        "/b/instances/u/disk", "/b/instances/u/disk.config"]
    assert root.findtext("os/kernel") == "/b/instances/u/kernel"
    assert root.findtext("os/initrd") == "/b/instances/u/ramdisk"
    assert root.find("devices/serial/log").get("file") == "/b/instances/u/console.log"
    assert root.find("devices/interface/source").get("bridge") == "kbr-netbbbb"
    assert root.find("devices/interface/target").get("dev") == "tapport"  # the port's tap keeps its name
    assert root.find("devices/graphics").get("listen") == "192.0.2.7"
    assert root.find("vcpu").get("cpuset") == "2-3" and root.findtext("vcpu") == "2"
    assert root.findtext("uuid") == "0e6e2f3c-6a4a-4c59-9c1b-2f1f1c3f0009" and root.findtext("memory") == "128"
    floating = ET.fromstring(rewrite_xml(source_xml(), "/a/instances/u", "/b/instances/u", {}, None, ""))
    assert "cpuset" not in floating.find("vcpu").attrib  # a destination without a shared set: any CPU


def test_progress_reports():
    stats = {"type": 2, "memory_total": 100, "memory_processed": 40, "memory_remaining": 60, "disk_total": 10,
             "disk_processed": 10, "disk_remaining": 0}
    assert _progress(stats) == {"memory_total_bytes": 100, "memory_processed_bytes": 40, "memory_remaining_bytes": 60,
                                "disk_total_bytes": 10, "disk_processed_bytes": 10, "disk_remaining_bytes": 0}
    assert _finished(_progress(stats)) == {"memory_total_bytes": 100, "memory_processed_bytes": 100,
                                           "memory_remaining_bytes": 0, "disk_total_bytes": 10,
                                           "disk_processed_bytes": 10, "disk_remaining_bytes": 0}
