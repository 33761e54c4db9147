"""The libvirt driver's lifecycle operations on one host: resize and cold migration, rebuild, rescue, and what
is asked of a running guest (admin password, NMI, network info, diagnostics).

A resize or cold migration moves ``<instances_path>/<uuid>`` aside to ``<uuid>_resize`` on the source (the
copy a revert brings back, removed at confirm) and the destination copies the disks from there: the
destination must be able to read the source's instances path (the same machine, or shared storage), which
``finish_migration`` checks and refuses clearly otherwise. Root disks that are qcow2 overlays are rebased on
the destination's own cached base of the image; other overlays are copied flattened.

A rescued guest boots ``disk.rescue`` (a new overlay on the rescue image) with its own root disk second;
``rescue.json`` holds that layout while it lasts, ``domain.json`` keeps the guest's own.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import (BuildFailure, InstanceAgentNotEnabled, InstanceNotRunning,
                                          InstancePasswordSetFailed, MigrationError, ResizeError)
from kilonova.compute.virt.libvirt import configdrive, imagecache
from kilonova.compute.virt.libvirt import volumes as volume_hotplug
from kilonova.compute.virt.libvirt.domain import Disk, Unsupported, build_xml

try:
    import libvirt
except ImportError:  # pragma: no cover - the driver itself refuses to start without it
    libvirt = None

RESIZE_SUFFIX = "_resize"
RESCUE_FILE = "rescue.json"
GiB = 1024 ** 3
# Nova's power_state.STATE_MAP names, for diagnostics.
STATE_NAMES = {power.NOSTATE: "pending", power.RUNNING: "running", power.PAUSED: "paused",
               power.SHUTDOWN: "shutdown", power.CRASHED: "crashed", power.SUSPENDED: "suspended"}


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("yes", "true", "1", "on")


class LifecycleMixin:
    """Methods of LibvirtDriver (they use its connection, paths, image cache and dataplane)."""

    # ------------------------------------------------------------------ shared steps

    def _resize_dir(self, instance: dict) -> Path:
        return self.instances_path / f"{instance['uuid']}{RESIZE_SUFFIX}"

    def _undefine(self, domain) -> None:
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)

    def _define(self, instance: dict, layout: dict, network_info: list[dict], start: bool) -> None:
        """Write ``layout`` as the guest's own, define its domain from it (the flavor in ``instance``), and
        start it when asked."""
        directory = self._dir(instance)
        (directory / "domain.json").write_text(json.dumps(layout))
        (directory / "network_info.json").write_text(json.dumps(network_info))
        self._domain_from(instance, layout, network_info, start)

    def _domain_from(self, instance: dict, layout: dict, network_info: list[dict], start: bool) -> None:
        try:
            self._pin(instance, layout.get("properties") or {})
            xml = build_xml(self._spec(instance, network_info, layout))
        except Unsupported as exc:
            raise BuildFailure(f"Host {self.host} cannot honour the flavor or image: {exc}") from exc
        for vif in network_info:
            self.dataplane.plug(vif, instance["uuid"])
        domain = self._connection().defineXML(xml)
        if start:
            domain.create()

    # ------------------------------------------------------------------ resize and cold migration

    async def migrate_disk_and_power_off(self, instance: dict, dest_host: str, flavor: dict) -> dict:
        return await self._call(self._migrate_disk_and_power_off, instance, dest_host, flavor)

    def _migrate_disk_and_power_off(self, instance: dict, dest_host: str, flavor: dict) -> dict:
        current = instance["flavor"]
        if (flavor.get("root_gb") or 0) < (current.get("root_gb") or 0) or \
                (flavor.get("ephemeral_gb") or 0) < (current.get("ephemeral_gb") or 0):
            raise ResizeError("Unable to resize disk down.")
        layout = self._layout(instance)
        if layout is None:
            raise MigrationError(f"Instance {instance['uuid']} has no saved layout on {self.host}; it cannot move")
        if (self._dir(instance) / RESCUE_FILE).exists():
            raise MigrationError(f"Instance {instance['uuid']} is in rescue mode; unrescue it first")
        domain = self._lookup(instance["uuid"])
        if domain is not None:
            if domain.isActive() and not self._shutdown(domain, self.conf.getfloat("DEFAULT", "shutdown_timeout")):
                domain.destroy()
            self._undefine(domain)
        for vif in self._network_info(instance):
            self.dataplane.unplug(vif)
        source, kept = self._dir(instance), self._resize_dir(instance)
        if kept.exists():  # left by an earlier attempt that failed: what is in <uuid> now is newer
            shutil.rmtree(kept)
        source.rename(kept)
        disks = []
        for disk in layout["disks"]:
            path = kept / Path(disk["path"]).name
            if disk.get("readonly") or volume_hotplug.is_volume(disk, self.instances_path):
                continue  # the config drive is made again where the guest lands; a volume stays where it is
            info = imagecache.qemu_img_info(path, disk["format"])
            disks.append({"name": path.name, "target": disk["target"], "format": disk["format"],
                          "virtual_size": info["virtual-size"], "backing": info.get("full-backing-filename")})
        return {"source_host": self.host, "source_dir": str(kept), "disks": disks,
                "layout": {**layout, "disks": volume_hotplug.portable(layout["disks"], self.instances_path)}}

    async def finish_migration(self, instance: dict, disk_info: dict, network_info: list[dict], image_meta: dict,
                               resize_instance: bool, power_on: bool,
                               block_device_info: list[dict] | None = None) -> None:
        layout = disk_info["layout"]
        source = Path(disk_info["source_dir"])
        if not os.access(source, os.R_OK | os.X_OK) or not source.is_dir():
            raise MigrationError(
                f"Host {self.host} cannot read the disks of instance {instance['uuid']} at {source} on host "
                f"{disk_info.get('source_host')}: a cold migration or resize needs the destination to reach the "
                "source's [DEFAULT] instances_path (the same machine, or shared storage)")
        root_base = None
        if layout.get("image_id") and any(d["name"] == "disk" and d["backing"] for d in disk_info["disks"]):
            try:
                root_base, _ = await self.cache.fetch(layout["image_id"])  # this host's own copy of the image
            except BuildFailure:  # the image is gone (e.g. an unshelved server's snapshot): copied flattened
                root_base = None
        wants_drive = any(d.get("readonly") for d in layout["disks"])
        await self._call(self._take_disks, instance, disk_info, network_info, root_base, resize_instance,
                         wants_drive, power_on, block_device_info or [])

    def _take_disks(self, instance: dict, disk_info: dict, network_info: list[dict], root_base: Path | None,
                    resize_instance: bool, wants_drive: bool, power_on: bool, block_device_info: list[dict]) -> None:
        source, directory = Path(disk_info["source_dir"]), self._dir(instance)
        if directory.exists():  # a failed earlier attempt
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        os.chmod(directory, 0o755)
        flavor = instance["flavor"]
        sizes = {"disk": (flavor.get("root_gb") or 0) * GiB, "disk.eph0": (flavor.get("ephemeral_gb") or 0) * GiB}
        bases = []
        for disk in disk_info["disks"]:
            src, dst = source / disk["name"], directory / disk["name"]
            if disk["backing"] and disk["name"] == "disk" and root_base is not None:
                _copy(src, dst)  # the overlay, rebased on this host's base of the same image
                fmt = imagecache.base_info(root_base)["format"]
                imagecache._run("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", fmt, "-b", str(root_base), str(dst))
                bases.append(str(root_base))
            elif disk["backing"]:
                imagecache._run("qemu-img", "convert", "-f", disk["format"], "-O", disk["format"], str(src),
                                str(dst))
            else:
                _copy(src, dst)
            if resize_instance and sizes.get(disk["name"], 0) > disk["virtual_size"]:
                imagecache._run("qemu-img", "resize", "-f", disk["format"], str(dst), str(sizes[disk["name"]]))
        for name in ("kernel", "ramdisk"):
            if (source / name).exists():
                shutil.copyfile(source / name, directory / name)
        (directory / "disk.info").write_text(json.dumps({"bases": bases}))
        layout = dict(disk_info["layout"])
        # The instance's own disks (named by portable()) are in its directory here; a volume (a network disk
        # or the volume service's file) is where this host reaches it now.
        layout["disks"] = volume_hotplug.reconnected(
            [d if d.get("protocol") or Path(d["path"]).is_absolute() else
             {**d, "path": str(directory / d["path"]), "cache": self._disk_cache} for d in layout["disks"]],
            block_device_info, self._disk_cache)
        if wants_drive:
            configdrive.build(instance, network_info, directory / "disk.config", self.conf.get("DEFAULT",
                                                                                               "mkisofs_cmd"))
        configdrive.write_tree(instance, network_info, directory / "metadata")
        self._define(instance, layout, network_info, start=power_on)

    async def confirm_migration(self, instance: dict) -> None:
        await self._call(shutil.rmtree, self._resize_dir(instance), True)

    async def finish_revert_migration(self, instance: dict, network_info: list[dict], power_on: bool,
                                      block_device_info: list[dict] | None = None) -> None:
        await self._call(self._finish_revert_migration, instance, network_info, power_on, block_device_info or [])

    def _finish_revert_migration(self, instance: dict, network_info: list[dict], power_on: bool,
                                 block_device_info: list[dict]) -> None:
        kept, directory = self._resize_dir(instance), self._dir(instance)
        if not kept.is_dir() and self._layout(instance) is not None:
            # The move failed before the disks were set aside: the guest is all here still (maybe stopped).
            domain = self._lookup(instance["uuid"])
            if power_on and (domain is None or not domain.isActive()):
                self._rebuild(instance)
            elif domain is None:
                self._define(instance, self._layout(instance), network_info, start=False)
            return
        if not kept.is_dir():
            raise MigrationError(f"Host {self.host} kept no copy of instance {instance['uuid']} to revert to "
                                 f"({kept} is missing)")
        domain = self._lookup(instance["uuid"])
        if domain is not None:  # the destination's guest, on this very libvirt (a resize to the same host)
            self._undefine(domain)
        if directory.exists():
            shutil.rmtree(directory)
        kept.rename(directory)
        layout = self._layout(instance)
        if layout is not None:
            layout["disks"] = volume_hotplug.reconnected(layout["disks"], block_device_info, self._disk_cache)
        self._define(instance, layout, network_info, start=power_on)

    # ------------------------------------------------------------------ rebuild

    async def rebuild(self, instance: dict, image_meta: dict, network_info: list[dict],
                      admin_password: str | None = None) -> None:
        """As upstream: stop the guest, remove it and its disks, and spawn it again from the new image."""
        timeout = self.conf.getfloat("DEFAULT", "shutdown_timeout")
        with contextlib.suppress(BuildFailure):
            await self._call(self._power_off, instance, timeout)
        await self._call(self._destroy, instance)
        rebuilt = {**instance, "image_ref": image_meta.get("id") or instance.get("image_ref")}
        if admin_password:
            rebuilt["admin_password"] = admin_password
        await self.spawn(rebuilt, image_meta, network_info)

    # ------------------------------------------------------------------ rescue

    async def rescue(self, instance: dict, rescue_image_meta: dict, network_info: list[dict],
                     admin_password: str | None) -> None:
        directory = self._dir(instance)
        if (directory / RESCUE_FILE).exists():
            raise BuildFailure(f"Instance {instance['uuid']} is already in rescue mode")
        layout = self._layout(instance)
        if layout is None:
            raise BuildFailure(f"Instance {instance['uuid']} has no saved layout on {self.host}; it cannot be "
                               "rescued")
        image_id = rescue_image_meta.get("id") or layout.get("image_id")
        meta = await self.cache.image_meta(image_id)
        base, meta = await self.cache.fetch(image_id, meta)
        boot = {}
        for key, name in (("kernel_id", "kernel.rescue"), ("ramdisk_id", "ramdisk.rescue")):
            if meta.get("kernel_id") and meta.get(key):
                boot[name] = (await self.cache.fetch(meta[key]))[0]
        properties = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}
        rescued = {**instance, "admin_password": admin_password} if admin_password else instance
        await self._call(self._rescue, rescued, layout, base, boot, properties, network_info)

    def _rescue(self, instance: dict, layout: dict, base: Path, boot: dict, properties: dict,
                network_info: list[dict]) -> None:
        directory = self._dir(instance)
        self._power_off(instance, self.conf.getfloat("DEFAULT", "shutdown_timeout"))
        rescue_disk = directory / "disk.rescue"
        fmt = self.cache.create_root(base, rescue_disk, 0, self.images_type)
        for name, cached in boot.items():
            shutil.copyfile(cached, directory / name)
        own = [d for d in layout["disks"] if not d.get("readonly")]
        disks = [asdict(Disk(str(rescue_disk), "vda", fmt, cache=self._disk_cache))]
        for disk in own:
            disks.append({**disk, "target": f"vd{chr(ord('a') + len(disks))}"})
        if any(d.get("readonly") for d in layout["disks"]) or configdrive.wanted(instance, False):
            drive = configdrive.build(instance, network_info, directory / "disk.config.rescue",
                                      self.conf.get("DEFAULT", "mkisofs_cmd"))
            disks.append(asdict(Disk(str(drive), f"vd{chr(ord('a') + len(disks))}", "raw", readonly=True,
                                     cache=self._disk_cache)))
        rescue = {"image_id": properties.get("id") or "", "properties": properties,
                  "kernel": "kernel.rescue" in boot, "initrd": "ramdisk.rescue" in boot,
                  "kernel_file": "kernel.rescue", "initrd_file": "ramdisk.rescue",
                  "cmdline": (properties.get("os_command_line") or "root=/dev/vda console=tty0 console=ttyS0")
                  if "kernel.rescue" in boot else None, "disks": disks}
        (directory / RESCUE_FILE).write_text(json.dumps(rescue))
        self._domain_from(instance, rescue, self._network_info(instance), start=True)

    async def unrescue(self, instance: dict) -> None:
        await self._call(self._unrescue, instance)

    def _unrescue(self, instance: dict) -> None:
        directory = self._dir(instance)
        if not (directory / RESCUE_FILE).exists():
            raise BuildFailure(f"Instance {instance['uuid']} is not in rescue mode")
        domain = self._lookup(instance["uuid"])
        if domain is not None and domain.isActive():
            domain.destroy()  # as upstream: the rescue system is not shut down cleanly
        self._rebuild(instance)  # the guest's own domain again, from domain.json
        for name in ("disk.rescue", "kernel.rescue", "ramdisk.rescue", "disk.config.rescue", RESCUE_FILE):
            (directory / name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ asked of the running guest

    async def set_admin_password(self, instance: dict, new_pass: str) -> None:
        await self._call(self._set_admin_password, instance, new_pass)

    def _set_admin_password(self, instance: dict, new_pass: str) -> None:
        properties = (self._layout(instance) or {}).get("properties") or {}
        if not _truthy(properties.get("hw_qemu_guest_agent", "no")):
            raise InstanceAgentNotEnabled()
        user = properties.get("os_admin_user") or ("Administrator" if properties.get("os_type") == "windows"
                                                   else "root")
        domain = self._domain(instance)
        try:
            domain.setUserPassword(user, new_pass, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
                # Upstream answers 501 for this (NotImplementedError), not 409.
                raise NotImplementedError("set_admin_password is not implemented by this driver or guest "
                                          "instance: its QEMU guest agent does not answer") from exc
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                raise InstancePasswordSetFailed(instance["uuid"], "the instance is not running") from exc
            raise InstancePasswordSetFailed(instance["uuid"], f"libvirt refused: {exc}") from exc

    async def trigger_crash_dump(self, instance: dict) -> None:
        await self._call(self._trigger_crash_dump, instance)

    def _trigger_crash_dump(self, instance: dict) -> None:
        domain = self._domain(instance)
        try:
            domain.injectNMI(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                raise InstanceNotRunning(f"Instance {instance['uuid']} is not running.") from exc
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                raise NotImplementedError(f"Triggering a crash dump is not supported by {self.host}'s "
                                          "hypervisor") from exc
            raise

    async def inject_network_info(self, instance: dict, network_info: list[dict]) -> None:
        """Nothing reaches a running libvirt guest (as upstream); the metadata API serves the new ports."""
        def write() -> None:
            directory = self._dir(instance)
            if directory.is_dir():
                (directory / "network_info.json").write_text(json.dumps(network_info))
                configdrive.write_tree(instance, network_info, directory / "metadata")
        await self._call(write)

    async def get_diagnostics(self, instance: dict) -> dict:
        return await self._call(self._diagnostics, instance)

    def _diagnostics(self, instance: dict) -> dict:
        domain = self._domain(instance)
        state, max_kib, used_kib, vcpus, _ = domain.info()
        state = STATE_NAMES.get(self._state(instance["uuid"]), "pending")
        root = ET.fromstring(domain.XMLDesc(0))
        active = domain.isActive()
        cpu_details = []
        if active:
            with contextlib.suppress(libvirt.libvirtError):
                cpu_details = [{"id": number, "time": cpu_time, "utilisation": None}
                               for number, _, cpu_time, _ in domain.vcpus()[0]]
        disks = [d.find("target").get("dev") for d in root.findall("devices/disk")]
        disk_details = []
        for dev in disks:
            stats = (0, 0, 0, 0, 0)
            if active:
                with contextlib.suppress(libvirt.libvirtError):
                    stats = domain.blockStats(dev)
            disk_details.append({"read_requests": stats[0], "read_bytes": stats[1], "write_requests": stats[2],
                                 "write_bytes": stats[3], "errors_count": max(0, stats[4])})
        nic_details = []
        for interface in root.findall("devices/interface"):
            target = interface.find("target")
            stats = (0,) * 8
            if active and target is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    stats = domain.interfaceStats(target.get("dev"))
            nic_details.append({"mac_address": interface.find("mac").get("address"), "rx_octets": stats[0],
                                "rx_packets": stats[1], "rx_errors": stats[2], "rx_drop": stats[3],
                                "tx_octets": stats[4], "tx_packets": stats[5], "tx_errors": stats[6],
                                "tx_drop": stats[7], "rx_rate": None, "tx_rate": None})
        return {"state": state, "driver": "libvirt", "hypervisor": self.virt_type, "hypervisor_os": "linux",
                "uptime": _uptime(instance) if active else None,
                "config_drive": (self._dir(instance) / "disk.config").exists(),
                "num_cpus": vcpus, "num_nics": len(nic_details), "num_disks": len(disks),
                "memory_details": {"maximum": max_kib // 1024, "used": used_kib // 1024 if active else 0},
                "cpu_details": cpu_details, "nic_details": nic_details, "disk_details": disk_details}


def _copy(source: Path, target: Path) -> None:
    """A disk file copied with its holes kept (a raw disk is mostly holes)."""
    imagecache._run("cp", "--sparse=always", str(source), str(target))


def _uptime(instance: dict) -> int | None:
    """Seconds since the instance was launched, as upstream counts it (None when it never was)."""
    launched = instance.get("launched_at")
    if not launched:
        return None
    if isinstance(launched, str):
        try:
            launched = datetime.fromisoformat(launched.replace("Z", "+00:00"))
        except ValueError:
            return None
    if launched.tzinfo is None:
        launched = launched.replace(tzinfo=timezone.utc)
    return max(0, int(time.time() - launched.timestamp()))
