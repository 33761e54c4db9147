"""Volumes hot-plugged into and out of a libvirt guest (os-volume_attachments).

The volume service's ``connection_info`` names the volume's raw file (``driver_volume_type: local``,
``data.device_path``); it becomes a virtio ``<disk type='file'>`` of the guest, attached to the running
guest and its definition (LIVE|CONFIG) or to the definition only when the guest is off. The target is the
device the API reserved unless the guest already has a disk there (a config drive, an ephemeral or swap
disk), then the next free one. The guest's saved layout gains the disk, so a hard reboot, a start or a
rebuild defines it again. A live detach is a request the guest answers (ACPI hot-unplug): the disk is gone
only once the live definition no longer has it, which is waited for.
"""
from __future__ import annotations

import json
import string
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import libvirt

from kilonova.compute.virt.driver import BuildFailure
from kilonova.compute.virt.libvirt.domain import Disk
from kilonova.compute.virt.libvirt.hotplug import _flags
from kilonova.compute.volume_api import device_path

DETACH_TIMEOUT = 30.0
SWAP_TIMEOUT = 600.0  # seconds a running guest's copy to the new volume may take


def _targets(domain, flags: int = 0) -> set[str]:
    tree = ET.fromstring(domain.XMLDesc(flags))
    return {t.get("dev") for t in tree.findall("./devices/disk/target")}


def _target_of(domain, path: str, flags: int = 0) -> str | None:
    tree = ET.fromstring(domain.XMLDesc(flags))
    for disk in tree.findall("./devices/disk"):
        source = disk.find("source")
        if source is not None and source.get("file") == path:
            return disk.find("target").get("dev")
    return None


def disk_xml(path: str, target: str, serial: str | None, cache: str, readonly: bool = False) -> str:
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache=cache)
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    if serial:
        ET.SubElement(disk, "serial").text = serial[:20]
    if readonly:
        ET.SubElement(disk, "readonly")
    return ET.tostring(disk, encoding="unicode")


def is_volume(disk: dict, instances_path) -> bool:
    """A disk of the guest's layout that is a volume: a file of the volume service, not of the instance."""
    return not Path(disk["path"]).is_relative_to(instances_path)


def portable(disks: list[dict], instances_path) -> list[dict]:
    """The layout's disks as another host (a move's destination) takes them: the instance's own by their name
    (it copies them into its instance directory), volumes by their path (the volume service's file stays)."""
    return [d if is_volume(d, instances_path) else {**d, "path": Path(d["path"]).name} for d in disks]


def path_of(connection_info: dict) -> str:
    return _path(connection_info)


def disks_of(block_device_info: list[dict], disks: list[Disk], cache: str) -> list[Disk]:
    """The volumes other than the root one as disks of a guest being defined, each at its mapping's device
    unless one of ``disks`` (or an earlier volume) is there already."""
    added: list[Disk] = []
    for bdm in block_device_info:
        if bdm.get("boot_index") == 0:
            continue
        taken = {d.target for d in disks} | {d.target for d in added}
        target = _free_target(taken, (bdm.get("device_name") or "/dev/vdb").rsplit("/", 1)[-1])
        readonly = ((bdm["connection_info"].get("data") or {}).get("access_mode") == "ro")
        added.append(Disk(_path(bdm["connection_info"]), target, "raw", readonly=readonly, cache=cache))
    return added


def _path(connection_info: dict) -> str:
    path = device_path(connection_info)
    if not path:
        raise BuildFailure(f"The volume service gave no file for volume {connection_info.get('serial')} "
                           f"({connection_info.get('driver_volume_type')!r} connections are not supported).")
    return path


def _free_target(taken: set[str], wanted: str) -> str:
    if wanted not in taken:
        return wanted
    for suffix in string.ascii_lowercase[1:]:
        if f"vd{suffix}" not in taken:
            return f"vd{suffix}"
    raise BuildFailure("The guest has no free virtio disk name left.")


def _save_layout(driver, instance: dict, change) -> None:
    layout = driver._layout(instance)
    if layout is None:
        return
    layout["disks"] = change(layout.get("disks") or [])
    from kilonova.compute.virt.libvirt.driver import LAYOUT_FILE

    (driver._dir(instance) / LAYOUT_FILE).write_text(json.dumps(layout))


def attach(driver, instance: dict, connection_info: dict, device: str) -> str:
    domain = driver._domain(instance)
    path = _path(connection_info)
    flags = _flags(domain)
    taken = _targets(domain, libvirt.VIR_DOMAIN_XML_INACTIVE)
    if flags & libvirt.VIR_DOMAIN_AFFECT_LIVE:
        taken |= _targets(domain)
    target = _free_target(taken, device.rsplit("/", 1)[-1])
    readonly = (connection_info.get("data") or {}).get("access_mode") == "ro"
    xml = disk_xml(path, target, connection_info.get("serial"), driver._disk_cache, readonly)
    try:
        domain.attachDeviceFlags(xml, flags)
    except libvirt.libvirtError as exc:
        raise BuildFailure(f"Failed to attach volume {connection_info.get('serial')} to "
                           f"{instance['uuid']}: {exc}") from exc
    disk = asdict(Disk(path, target, "raw", readonly=readonly, cache=driver._disk_cache))
    _save_layout(driver, instance, lambda disks: [d for d in disks if d["target"] != target] + [disk])
    return f"/dev/{target}"


def detach(driver, instance: dict, connection_info: dict, device: str) -> None:
    domain = driver._lookup(instance["uuid"])
    path = _path(connection_info)
    if domain is not None:
        flags = _flags(domain)
        live = bool(flags & libvirt.VIR_DOMAIN_AFFECT_LIVE)
        target = _target_of(domain, path, libvirt.VIR_DOMAIN_XML_INACTIVE) or (live and _target_of(domain, path))
        if target:
            _detach(domain, instance, path, target, flags, live)
    _save_layout(driver, instance, lambda disks: [d for d in disks if d["path"] != path])


def _detach(domain, instance: dict, path: str, target: str, flags: int, live: bool) -> None:
    xml = disk_xml(path, target, None, "none")
    try:
        domain.detachDeviceFlags(xml, flags)
    except libvirt.libvirtError as exc:
        still = _target_of(domain, path, libvirt.VIR_DOMAIN_XML_INACTIVE) or (live and _target_of(domain, path))
        if still:
            raise BuildFailure(f"Failed to detach volume from {instance['uuid']}: {exc}") from exc
    if live:
        deadline = time.monotonic() + DETACH_TIMEOUT
        while _target_of(domain, path):
            if time.monotonic() > deadline:
                raise BuildFailure(f"Failed to detach volume from {instance['uuid']}: the guest did not release "
                                   f"/dev/{target} within {DETACH_TIMEOUT:g} s")
            time.sleep(0.2)


def swap(driver, instance: dict, old_info: dict, new_info: dict, device: str) -> None:
    """The new volume in the old one's place, with its data: a running guest's disk is mirrored to the new
    file by QEMU (libvirt's block copy, then a pivot: the guest never stops); a stopped guest's file is
    copied. The definition then names the new file, as upstream's swap_volume leaves it."""
    domain = driver._domain(instance)
    old_path, new_path = _path(old_info), _path(new_info)
    live = bool(domain.isActive())
    target = _target_of(domain, old_path) if live else _target_of(domain, old_path, libvirt.VIR_DOMAIN_XML_INACTIVE)
    if not target:
        raise BuildFailure(f"Volume {old_info.get('serial')} is not a disk of {instance['uuid']}.")
    new_xml = disk_xml(new_path, target, new_info.get("serial"), driver._disk_cache)
    if live:
        _mirror(domain, instance, target, new_xml)
    else:
        copied = subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", old_path, new_path],
                                capture_output=True, text=True)
        if copied.returncode != 0:
            raise BuildFailure(f"Failed to copy volume {old_info.get('serial')}: {copied.stderr.strip()}")
    if _target_of(domain, old_path, libvirt.VIR_DOMAIN_XML_INACTIVE):
        domain.detachDeviceFlags(disk_xml(old_path, target, None, "none"), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        domain.attachDeviceFlags(new_xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    disk = asdict(Disk(new_path, target, "raw", cache=driver._disk_cache))
    _save_layout(driver, instance, lambda disks: [d for d in disks if d["path"] != old_path] + [disk])


def _mirror(domain, instance: dict, target: str, new_xml: str) -> None:
    flags = libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
    try:
        domain.blockCopy(target, new_xml, None, flags)
    except libvirt.libvirtError as exc:
        raise BuildFailure(f"Failed to swap the volume of {instance['uuid']}: {exc}") from exc
    deadline = time.monotonic() + SWAP_TIMEOUT
    while True:
        info = domain.blockJobInfo(target, 0)
        if info and info.get("end", 0) > 0 and info.get("cur") == info.get("end"):
            break
        if time.monotonic() > deadline:
            domain.blockJobAbort(target, 0)
            raise BuildFailure(f"Failed to swap the volume of {instance['uuid']}: the copy did not finish within "
                               f"{SWAP_TIMEOUT:g} s")
        time.sleep(0.2)
    domain.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)


def extend(driver, instance: dict, connection_info: dict, new_size: int) -> None:
    """A running guest's disk of the volume grows to ``new_size`` bytes (its file already has)."""
    domain = driver._lookup(instance["uuid"])
    if domain is None or not domain.isActive():
        return  # a stopped guest sees the file's new size when it starts
    target = _target_of(domain, _path(connection_info))
    if target:
        domain.blockResize(target, new_size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
