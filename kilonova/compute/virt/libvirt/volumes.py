"""Volumes hot-plugged into and out of a libvirt guest (os-volume_attachments).

The volume service's ``connection_info`` names the volume's raw file on this machine (``driver_volume_type:
local``, ``data.device_path``: a ``<disk type='file'>``) or its NBD export on the volume host's (``nbd``: a
``<disk type='network'>`` QEMU's own NBD client opens); the virtio disk is attached to the running
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
from kilonova.compute.virt.libvirt.domain import Disk, disk_source, disk_type
from kilonova.compute.virt.libvirt.hotplug import _flags
from kilonova.compute.volume_api import device_path

DETACH_TIMEOUT = 30.0
SWAP_TIMEOUT = 600.0  # seconds a running guest's copy to the new volume may take


def _targets(domain, flags: int = 0) -> set[str]:
    tree = ET.fromstring(domain.XMLDesc(flags))
    return {t.get("dev") for t in tree.findall("./devices/disk/target")}


def _source_key(source: ET.Element) -> str | None:
    return source.get("file") or source.get("dev") or source.get("name")


def _target_of(domain, path: str, flags: int = 0) -> str | None:
    """The target of the guest's disk whose source is ``path`` (a file, or a network disk's export name)."""
    tree = ET.fromstring(domain.XMLDesc(flags))
    for disk in tree.findall("./devices/disk"):
        source = disk.find("source")
        if source is not None and _source_key(source) == path:
            return disk.find("target").get("dev")
    return None


def volume_disk(connection_info: dict, target: str, cache: str) -> Disk:
    """The guest's disk of a volume, from the volume service's ``connection_info``."""
    data = connection_info.get("data") or {}
    readonly = data.get("access_mode") == "ro"
    serial = str(connection_info.get("serial") or data.get("volume_id") or "")
    if connection_info.get("driver_volume_type") == "nbd" and data.get("host") and data.get("name"):
        return Disk(str(data["name"]), target, "raw", readonly=readonly, cache=cache, protocol="nbd",
                    hosts=[{"name": str(data["host"]), "port": str(data.get("port") or 10809)}], serial=serial)
    # A file is raw unless the volume service says qcow2 (a qcow2 volume's active file); never probed.
    fmt = "qcow2" if data.get("format") == "qcow2" else "raw"
    return Disk(_path(connection_info), target, fmt, readonly=readonly, cache=cache, serial=serial)


def reconnected(disks: list[dict], block_device_info: list[dict], cache: str) -> list[dict]:
    """A moved guest's layout with each volume's disk as this host reaches the volume now (the volume service
    answered this host's connector: the file here, or an NBD export), at the target it had. A disk is the
    volume's by its serial (the volume id), or, in a layout written before disks had one, by its source."""
    if not block_device_info:
        return disks
    result = []
    for disk in disks:
        for bdm in block_device_info:
            info = bdm.get("connection_info") or {}
            volume_id = str(info.get("serial") or bdm.get("volume_id") or "")
            if disk.get("serial") == volume_id or (not disk.get("serial") and disk["path"] in (
                    volume_id, device_path(info))):
                disk = asdict(volume_disk({**info, "serial": volume_id}, disk["target"], cache))
                break
        result.append(disk)
    return result


def disk_xml(disk: Disk, serial: str | None = None) -> str:
    element = ET.Element("disk", type=disk_type(disk), device="disk")
    ET.SubElement(element, "driver", name="qemu", type=disk.format, cache=disk.cache)
    disk_source(element, disk)
    ET.SubElement(element, "target", dev=disk.target, bus="virtio")
    if serial or disk.serial:
        ET.SubElement(element, "serial").text = (serial or disk.serial)[:20]
    if disk.readonly:
        ET.SubElement(element, "readonly")
    return ET.tostring(element, encoding="unicode")


def is_volume(disk: dict, instances_path) -> bool:
    """A disk of the guest's layout that is a volume: a network disk, or a file of the volume service."""
    return bool(disk.get("protocol")) or not Path(disk["path"]).is_relative_to(instances_path)


def portable(disks: list[dict], instances_path) -> list[dict]:
    """The layout's disks as another host (a move's destination) takes them: the instance's own by their name
    (it copies them into its instance directory), volumes by their path (the volume service's file stays)."""
    return [d if is_volume(d, instances_path) else {**d, "path": Path(d["path"]).name} for d in disks]


def retarget_xml(xml: str, block_device_info: list[dict], cache: str) -> str:
    """A domain's XML with each volume's disk (found by its serial) as ``block_device_info``'s connection gives
    it (a live migration's destination reaches its volumes its own way: the file, or an NBD export)."""
    if not block_device_info:
        return xml
    root = ET.fromstring(xml)
    devices = root.find("devices")
    for index, element in enumerate(list(devices)):
        if element.tag != "disk" or not element.findtext("serial"):
            continue
        for bdm in block_device_info:
            info = bdm["connection_info"]
            volume_id = str(info.get("serial") or bdm.get("volume_id") or "")
            if element.findtext("serial") != volume_id[:20]:
                continue
            target = element.find("target").get("dev")
            new = ET.fromstring(disk_xml(volume_disk({**info, "serial": volume_id}, target, cache)))
            for kept in ("alias", "address"):   # the guest's ABI: the same device at the same place
                if element.find(kept) is not None:
                    new.append(element.find(kept))
            devices.remove(element)
            devices.insert(index, new)
            break
    return ET.tostring(root, encoding="unicode")


def disks_of(block_device_info: list[dict], disks: list[Disk], cache: str) -> list[Disk]:
    """The volumes other than the root one as disks of a guest being defined, each at its mapping's device
    unless one of ``disks`` (or an earlier volume) is there already."""
    added: list[Disk] = []
    for bdm in block_device_info:
        if bdm.get("boot_index") == 0:
            continue
        taken = {d.target for d in disks} | {d.target for d in added}
        target = _free_target(taken, (bdm.get("device_name") or "/dev/vdb").rsplit("/", 1)[-1])
        added.append(volume_disk(bdm["connection_info"], target, cache))
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
    flags = _flags(domain)
    taken = _targets(domain, libvirt.VIR_DOMAIN_XML_INACTIVE)
    if flags & libvirt.VIR_DOMAIN_AFFECT_LIVE:
        taken |= _targets(domain)
    disk = volume_disk(connection_info, _free_target(taken, device.rsplit("/", 1)[-1]), driver._disk_cache)
    try:
        domain.attachDeviceFlags(disk_xml(disk, connection_info.get("serial")), flags)
    except libvirt.libvirtError as exc:
        raise BuildFailure(f"Failed to attach volume {connection_info.get('serial')} to "
                           f"{instance['uuid']}: {exc}") from exc
    _save_layout(driver, instance, lambda disks: [d for d in disks if d["target"] != disk.target] + [asdict(disk)])
    return f"/dev/{disk.target}"


def detach(driver, instance: dict, connection_info: dict, device: str) -> None:
    domain = driver._lookup(instance["uuid"])
    disk = volume_disk(connection_info, "", "none")
    if domain is not None:
        flags = _flags(domain)
        live = bool(flags & libvirt.VIR_DOMAIN_AFFECT_LIVE)
        disk.target = _target_of(domain, disk.path, libvirt.VIR_DOMAIN_XML_INACTIVE) or \
            (live and _target_of(domain, disk.path)) or ""
        if disk.target:
            _detach(domain, instance, disk, flags, live)
    _save_layout(driver, instance, lambda disks: [d for d in disks if d["path"] != disk.path])


def _detach(domain, instance: dict, disk: Disk, flags: int, live: bool) -> None:
    try:
        domain.detachDeviceFlags(disk_xml(disk), flags)
    except libvirt.libvirtError as exc:
        still = _target_of(domain, disk.path, libvirt.VIR_DOMAIN_XML_INACTIVE) or \
            (live and _target_of(domain, disk.path))
        if still:
            raise BuildFailure(f"Failed to detach volume from {instance['uuid']}: {exc}") from exc
    if live:
        deadline = time.monotonic() + DETACH_TIMEOUT
        while _target_of(domain, disk.path):
            if time.monotonic() > deadline:
                raise BuildFailure(f"Failed to detach volume from {instance['uuid']}: the guest did not release "
                                   f"/dev/{disk.target} within {DETACH_TIMEOUT:g} s")
            time.sleep(0.2)


def _qemu_name(disk: Disk) -> str:
    """The volume as qemu-img opens it (a file, or an NBD URL)."""
    if disk.protocol:
        server = disk.hosts[0]
        return f"nbd://{server['name']}:{server['port']}/{disk.path}"
    return disk.path


def swap(driver, instance: dict, old_info: dict, new_info: dict, device: str) -> None:
    """The new volume in the old one's place, with its data: a running guest's disk is mirrored to the new
    volume by QEMU (libvirt's block copy, then a pivot: the guest never stops); a stopped guest's is copied.
    The definition then names the new volume, as upstream's swap_volume leaves it."""
    domain = driver._domain(instance)
    old, new = volume_disk(old_info, "", "none"), volume_disk(new_info, "", driver._disk_cache)
    live = bool(domain.isActive())
    old.target = new.target = (_target_of(domain, old.path) if live
                               else _target_of(domain, old.path, libvirt.VIR_DOMAIN_XML_INACTIVE)) or ""
    if not old.target:
        raise BuildFailure(f"Volume {old_info.get('serial')} is not a disk of {instance['uuid']}.")
    new_xml = disk_xml(new, new_info.get("serial"))
    if live:
        _mirror(domain, instance, old.target, new_xml)
    else:
        copied = subprocess.run(["qemu-img", "convert", "-n", "-f", old.format, "-O", new.format, _qemu_name(old),
                                 _qemu_name(new)], capture_output=True, text=True)
        if copied.returncode != 0:
            raise BuildFailure(f"Failed to copy volume {old_info.get('serial')}: {copied.stderr.strip()}")
    if _target_of(domain, old.path, libvirt.VIR_DOMAIN_XML_INACTIVE):
        domain.detachDeviceFlags(disk_xml(old), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        domain.attachDeviceFlags(new_xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    _save_layout(driver, instance, lambda disks: [d for d in disks if d["path"] != old.path] + [asdict(new)])


def _mirror(domain, instance: dict, target: str, new_xml: str) -> None:
    flags = libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
    try:
        domain.blockCopy(target, new_xml, None, flags)
    except libvirt.libvirtError as exc:
        raise BuildFailure(f"Failed to swap the volume of {instance['uuid']}: {exc}") from exc
    deadline = time.monotonic() + SWAP_TIMEOUT
    while True:
        # Pivot once QEMU says the mirror is ready: the copy's counters can meet (cur == end) a moment before
        # it does, and a pivot then is refused ("not ready for pivot yet"), which a busy host makes likely.
        if _mirror_ready(domain, target):
            try:
                domain.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_BLOCK_COPY_ACTIVE, libvirt.VIR_ERR_OPERATION_INVALID):
                    raise BuildFailure(f"Failed to swap the volume of {instance['uuid']}: {exc}") from exc
        if time.monotonic() > deadline:
            domain.blockJobAbort(target, 0)
            raise BuildFailure(f"Failed to swap the volume of {instance['uuid']}: the copy did not finish within "
                               f"{SWAP_TIMEOUT:g} s")
        time.sleep(0.2)


def _mirror_ready(domain, target: str) -> bool:
    """Whether the block copy of the disk ``target`` has reached its mirroring phase (ready to pivot)."""
    info = domain.blockJobInfo(target, 0)
    if not info or info.get("end", 0) <= 0 or info.get("cur") != info.get("end"):
        return False
    for disk in ET.fromstring(domain.XMLDesc(0)).findall("./devices/disk"):
        if (disk.find("target") is not None and disk.find("target").get("dev") == target):
            mirror = disk.find("mirror")
            return mirror is not None and mirror.get("ready") == "yes"
    return False


def extend(driver, instance: dict, connection_info: dict, new_size: int) -> None:
    """A running guest's disk of the volume grows to ``new_size`` bytes: a raw volume has grown already, an
    attached qcow2 file is grown by QEMU itself (block resize: qemu-img cannot resize a file QEMU holds). A
    stopped guest's qcow2 file is free: resized here; any other volume is seen at its new size at the start."""
    domain = driver._lookup(instance["uuid"])
    if domain is None or not domain.isActive():
        data = connection_info.get("data") or {}
        if connection_info.get("driver_volume_type") == "local" and data.get("format") == "qcow2":
            result = subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2", data["device_path"], str(new_size)],
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise BuildFailure(f"qemu-img resize of {data['device_path']} failed: {result.stderr.strip()}")
        return
    target = _target_of(domain, volume_disk(connection_info, "", "none").path)
    if target:
        domain.blockResize(target, new_size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    elif (connection_info.get("data") or {}).get("format") == "qcow2":   # only this guest could have grown it
        raise BuildFailure(f"Volume {connection_info.get('serial')} is not a disk of {instance['uuid']}")


# ---------------------------------------------------------------- assisted snapshots (os-assisted-volume-snapshots)

JOB_TIMEOUT = 600.0  # seconds a block rebase or commit of a snapshot's file may take


def _volume_file(domain, instance: dict, volume_id: str, flags: int = 0) -> tuple[str, str]:
    """(target, file) of the guest's disk of the volume, found by its serial (the volume id)."""
    for disk in ET.fromstring(domain.XMLDesc(flags)).findall("./devices/disk"):
        serial, source = disk.findtext("serial"), disk.find("source")
        if serial and serial == volume_id[:20] and source is not None:
            if not source.get("file"):
                raise BuildFailure(f"Volume {volume_id} of {instance['uuid']} is not a file on this host: its "
                                   "snapshots cannot be assisted here.")
            return disk.find("target").get("dev"), source.get("file")
    raise BuildFailure(f"Volume {volume_id} is not a disk of {instance['uuid']}.")


def snapshot_create(driver, instance: dict, volume_id: str, create_info: dict) -> None:
    """The guest's disk of the volume switched onto ``new_file`` (an overlay of its current file the volume
    service made next to it): a running guest by an external disk-only snapshot that reuses the file (its
    writes go there from now on; quiesced when the guest agent can, as upstream tries first); a stopped
    guest's definition names the new file. The saved layout follows either way."""
    domain = driver._domain(instance)
    live = bool(domain.isActive())
    target, current = _volume_file(domain, instance, volume_id, 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE)
    new = str(Path(current).parent / Path(create_info["new_file"]).name)
    if live:
        root = ET.Element("domainsnapshot")
        disks = ET.SubElement(root, "disks")
        for dev in sorted(_targets(domain)):
            if dev == target:
                disk = ET.SubElement(disks, "disk", name=dev, snapshot="external", type="file")
                ET.SubElement(disk, "driver", type="qcow2")
                ET.SubElement(disk, "source", file=new)
            else:
                ET.SubElement(disks, "disk", name=dev, snapshot="no")
        xml = ET.tostring(root, encoding="unicode")
        flags = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA |
                 libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT)
        try:
            domain.snapshotCreateXML(xml, flags | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE)
        except libvirt.libvirtError:  # no guest agent to freeze the file systems: crash-consistent, as upstream
            try:
                domain.snapshotCreateXML(xml, flags)
            except libvirt.libvirtError as exc:
                raise BuildFailure(f"Snapshot of volume {volume_id} of {instance['uuid']} failed: {exc}") from exc
    else:
        old = ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        element = next(d for d in old.findall("./devices/disk") if d.find("target").get("dev") == target)
        domain.detachDeviceFlags(ET.tostring(element, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        element.find("driver").set("type", "qcow2")
        element.find("source").set("file", new)
        domain.attachDeviceFlags(ET.tostring(element, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    _save_layout(driver, instance, lambda disks: [{**d, "path": new, "format": "qcow2"} if d["path"] == current
                                                  else d for d in disks])


def _wait_job(domain, target: str, what: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while domain.blockJobInfo(target, 0):
        if time.monotonic() > deadline:
            domain.blockJobAbort(target, 0)
            raise BuildFailure(f"{what} did not finish within {JOB_TIMEOUT:g} s")
        time.sleep(0.1)


def disk_chain(xml: str, target: str) -> list[str]:
    """The files of a domain's disk (by its target), its active file first, as its XML names them."""
    node = next((d for d in ET.fromstring(xml).findall("./devices/disk") if d.find("target").get("dev") == target),
                None)
    chain = []
    while node is not None and node.find("source") is not None and node.find("source").get("file"):
        chain.append(node.find("source").get("file"))
        node = node.find("backingStore")
    return chain


def merge_left(chain: list[str], top: str | None, base: str | None) -> str | None:
    """What is wrong with a disk's chain after a block job that merged ``top`` (into ``base``; no base: the active
    file pulled everything above ``top``, none: the whole chain), or None when the chain is as the merge leaves
    it. A failed job ends like a finished one (it leaves blockJobInfo), but leaves the chain as it was: the
    volume service must not remove a file the guest's disk still reads."""
    if base is not None:
        return None if top not in chain and base in chain else f"{Path(top).name} is still in the chain"
    if chain[1:2] != ([top] if top else []):
        return f"the active file is backed by {chain[1] if len(chain) > 1 else 'nothing'}, not {top or 'nothing'}"
    return None


def _backing_child(active: str, top: str) -> str | None:
    """The file of the chain from ``active`` whose backing file is ``top`` (None when there is none)."""
    info = subprocess.run(["qemu-img", "info", "--backing-chain", "--output", "json", "-U", active],
                          capture_output=True, text=True, check=True)
    for image in json.loads(info.stdout):
        if image.get("full-backing-filename") == top or image.get("backing-filename") in (top, Path(top).name):
            return image["filename"]
    return None


def _merged(domain, target: str, top: str | None, base: str | None, what: str) -> None:
    """After the job left (libvirt updated the live definition before letting it go): the chain it left."""
    wrong = merge_left(disk_chain(domain.XMLDesc(0), target), top, base)
    if wrong:
        raise BuildFailure(f"{what} failed: the block job ended but {wrong}")


def snapshot_delete(driver, instance: dict, volume_id: str, snapshot_id: str, delete_info: dict) -> None:
    """A snapshot's file merged out of the chain of the guest's disk, as the volume service asks: with no
    ``merge_target_file`` the active file pulls the data of the files above ``file_to_merge`` (libvirt's block
    rebase onto it; none: the whole chain), else ``file_to_merge`` is committed into ``merge_target_file``
    (block commit). A stopped guest's files are merged the same way with qemu-img. Backing names stay
    relative (the volume service moves none of them)."""
    domain = driver._domain(instance)
    live = bool(domain.isActive())
    target, active = _volume_file(domain, instance, volume_id, 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE)
    directory = Path(active).parent

    def named(key: str) -> str | None:
        return str(directory / Path(delete_info[key]).name) if delete_info.get(key) else None

    base, top = named("merge_target_file"), named("file_to_merge")
    what = f"The merge of snapshot {snapshot_id} of volume {volume_id}"
    try:
        if base is None:   # pull into the active file
            if live:
                flags = libvirt.VIR_DOMAIN_BLOCK_REBASE_RELATIVE if top else 0
                domain.blockRebase(target, Path(top).name if top else None, 0, flags)
                _wait_job(domain, target, what)
                _merged(domain, target, top, None, what)
            else:
                args = ["-b", Path(top).name, "-F", "qcow2"] if top else ["-b", ""]
                subprocess.run(["qemu-img", "rebase", "-f", "qcow2", *args, active], capture_output=True,
                               text=True, check=True, cwd=directory)
        else:              # commit a file into its backing file
            if live:
                domain.blockCommit(target, Path(base).name, Path(top).name, 0,
                                   libvirt.VIR_DOMAIN_BLOCK_COMMIT_RELATIVE)
                _wait_job(domain, target, what)
                _merged(domain, target, top, base, what)
            else:
                child = _backing_child(active, top)
                subprocess.run(["qemu-img", "commit", "-f", "qcow2", top], capture_output=True, text=True,
                               check=True)
                if child:
                    subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", Path(base).name, "-F", "qcow2",
                                    child], capture_output=True, text=True, check=True, cwd=directory)
    except (libvirt.libvirtError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        raise BuildFailure(f"{what} failed: {detail}") from exc
