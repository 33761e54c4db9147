"""The libvirt driver: real QEMU/KVM guests on this host.

Each instance lives in ``<instances_path>/<uuid>/``: ``disk`` (qcow2 overlay on
the cached base, or a raw copy), ``disk.eph0``, ``disk.swap``, ``disk.config``
(the config drive), ``kernel``/``ramdisk`` for images booted that way,
``console.log`` (the serial console, written by virtlogd) and ``cpus.json`` (the host CPUs of
``[compute] cpu_dedicated_set`` a pinned guest holds). The domain is
persistent (defined), so power operations keep its XML; ``destroy`` removes the
domain, its managed-save image, its files and its ports' dataplane.

Every libvirt and qemu-img call runs in a worker thread; the event loop never blocks.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid as uuid_mod
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import BuildFailure, ComputeDriver
from kilonova.compute.virt.libvirt import configdrive, cpus, host, imagecache
from kilonova.compute.virt.libvirt import hotplug
from kilonova.compute.virt.libvirt import volumes as volume_hotplug
from kilonova.compute.virt.libvirt.dataplane import Dataplane, tap_name
from kilonova.compute.virt.libvirt.firewall import Firewall, FirewallError, enable_bridge_netfilter
from kilonova.compute.virt.libvirt.domain import Disk, DomainSpec, Nic, Unsupported, build_xml, cpu_policy
from kilonova.compute.virt.libvirt.imagecache import ImageCache
from kilonova.compute.virt.libvirt.lifecycle import LifecycleMixin
from kilonova.compute.virt.libvirt.livemigration import LiveMigrationMixin

LOG = logging.getLogger(__name__)
MAX_CONSOLE_BYTES = 100 * 1024
LAYOUT_FILE = "domain.json"
PINNING_FILE = "cpus.json"     # the host CPUs a dedicated guest holds, read by every later choice

try:  # libvirt-python is the optional "libvirt" extra; the fake driver never needs it
    import libvirt
except ImportError:  # pragma: no cover - reported when the driver is chosen
    libvirt = None


def _power_state(state: int, has_managed_save: bool) -> int:
    if libvirt is None:
        return power.NOSTATE
    mapping = {libvirt.VIR_DOMAIN_NOSTATE: power.NOSTATE, libvirt.VIR_DOMAIN_RUNNING: power.RUNNING,
               libvirt.VIR_DOMAIN_BLOCKED: power.RUNNING, libvirt.VIR_DOMAIN_PAUSED: power.PAUSED,
               libvirt.VIR_DOMAIN_SHUTDOWN: power.SHUTDOWN, libvirt.VIR_DOMAIN_SHUTOFF: power.SHUTDOWN,
               libvirt.VIR_DOMAIN_CRASHED: power.CRASHED, libvirt.VIR_DOMAIN_PMSUSPENDED: power.SUSPENDED}
    if state == libvirt.VIR_DOMAIN_SHUTOFF and has_managed_save:
        return power.SUSPENDED
    return mapping.get(state, power.NOSTATE)


def _closed_parent(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that other users (QEMU's) cannot search, if any."""
    for directory in [*reversed(path.parents), path]:
        try:
            if not directory.stat().st_mode & 0o001:
                return directory
        except OSError:
            return directory
    return None


def _direct_io_supported(path: Path) -> bool:
    probe = path / ".directio.test"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | getattr(os, "O_DIRECT", 0), 0o600)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid_mod.UUID(text)) == text.lower()
    except ValueError:
        return False


_EVENT_LOOP_LOCK = threading.Lock()
_event_loop_started = False


def _start_event_loop() -> None:
    """libvirt's default event loop in a daemon thread (once per process), so lifecycle events arrive."""
    global _event_loop_started
    with _EVENT_LOOP_LOCK:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # libvirt also prints every error to stderr ("Domain not found" on each lookup of a missing guest);
        # the exceptions carry them already.
        libvirt.registerErrorHandler(lambda _ctx, _error: None, None)

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class LibvirtDriver(LifecycleMixin, LiveMigrationMixin, ComputeDriver):
    hypervisor_type = "QEMU"
    waits_for_vif_plugging = True
    enforces_security_groups = True
    serves_dhcp = True  # a DHCP namespace per network on this host, with a network:dhcp port of its own

    def __init__(self, host_name: str, conf, images):
        if libvirt is None:
            raise RuntimeError("[DEFAULT] compute_driver = libvirt needs libvirt-python "
                               "(pip install 'kilonova[libvirt]'; it builds against Debian's libvirt-dev)")
        self.host = host_name
        self.conf = conf
        self.uri = conf.get("libvirt", "connection_uri") or "qemu:///system"
        self.instances_path = Path(conf.get("DEFAULT", "instances_path"))
        self.images_type = conf.get("libvirt", "images_type")
        if self.images_type not in ("qcow2", "raw"):
            raise ValueError(f"[libvirt] images_type must be qcow2 or raw, not {self.images_type!r}")
        self.virt_type, self.virt_type_reason = host.choose_virt_type(conf.get("libvirt", "virt_type"))
        self.cache = ImageCache(images, self.instances_path, conf.getbool("DEFAULT", "force_raw_images"))
        self.dataplane = Dataplane(self.instances_path / "_networks")
        self.firewall = self.dataplane.firewall = Firewall(self.dataplane.scope)
        self._conn = None
        self._event_handler = None
        self._cache_task: asyncio.Task | None = None
        self._version = 0
        self._disk_cache = "none"
        self._flags = host.cpu_flags()
        self.host_cpus = cpus.online()
        self.dedicated_cpus, self.shared_cpus = cpus.host_sets(
            conf.get("compute", "cpu_dedicated_set"), conf.get("compute", "cpu_shared_set"), self.host_cpus)
        self._pinning_lock = threading.Lock()
        self._live_jobs: dict = {}  # instance uuid -> its outgoing live migration, while it runs

    # ------------------------------------------------------------------ connection and host

    def _connection(self):
        if self._conn is None or not self._conn.isAlive():
            _start_event_loop()
            self._conn = libvirt.open(self.uri)
            self._conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
        return self._conn

    def _on_lifecycle(self, conn, domain, event, detail, opaque) -> None:
        handler = self._event_handler
        if handler is not None and domain.name().startswith("instance-"):
            handler(domain.UUIDString())

    def set_event_handler(self, handler) -> None:
        self._event_handler = handler

    async def _call(self, function, *args):
        return await asyncio.to_thread(function, *args)

    async def init_host(self) -> None:
        self.instances_path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.instances_path, 0o755)
        try:
            conn = await self._call(self._connection)
            self._version = await self._call(conn.getVersion)
        except libvirt.libvirtError as exc:
            raise RuntimeError(f"the libvirt driver cannot reach {self.uri}: {exc}. Is libvirtd running "
                               "(libvirtd -d, with virtlogd -d) and is this user allowed to use it?") from exc
        try:
            enable_bridge_netfilter()
        except FirewallError as exc:
            LOG.error("%s", exc)
        self._disk_cache = "none" if _direct_io_supported(self.instances_path) else "writeback"
        closed = _closed_parent(self.instances_path)
        if closed is not None:
            LOG.warning("QEMU (user libvirt-qemu) cannot reach %s: %s is not searchable by others. Guests "
                        "will fail to start; set [DEFAULT] instances_path elsewhere (e.g. /var/lib/kilonova/"
                        "instances) or chmod o+x %s", self.instances_path, closed, closed)
        LOG.warning("libvirt driver on %s: virt_type=%s (%s), %s, instances in %s", self.host, self.virt_type,
                    self.virt_type_reason, self.uri, self.instances_path)
        interval = self.conf.getfloat("image_cache", "manager_interval")
        if interval > 0:
            self._cache_task = asyncio.create_task(self._age_cache_periodically(interval),
                                                   name=f"libvirt-image-cache-{self.host}")

    async def _age_cache_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.age_image_cache()
            except Exception:  # noqa: BLE001 - the next round tries again
                LOG.exception("ageing the image cache of %s failed", self.host)

    async def cleanup_host(self) -> None:
        if self._cache_task is not None:
            self._cache_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cache_task

    def describe(self) -> str:
        return f"libvirt {self.virt_type} ({self.virt_type_reason})"

    def get_available_resource(self) -> dict[str, Any]:
        vcpus = len(self.host_cpus)
        return {
            "vcpus": cpus.unpinned_count(self.dedicated_cpus, self.shared_cpus, self.host_cpus),
            "pcpus": len(self.dedicated_cpus),
            "memory_mb": host.memory_mb(), "local_gb": host.disk_gb(self.instances_path),
            "hypervisor_type": self.hypervisor_type, "hypervisor_version": self._version,
            "host_ip": self.conf.get("DEFAULT", "my_ip"),
            "cpu_info": json.dumps({"arch": "x86_64", "model": "host", "vendor": "unknown",
                                    "topology": {"sockets": 1, "cores": vcpus, "threads": 1},
                                    "features": sorted(self._flags),
                                    "supported_instances": [["x86_64", self.virt_type, "hvm"]]}),
        }

    def get_traits(self) -> list[str]:
        return host.cpu_traits(self._flags) + host.compute_traits()

    async def get_host_uptime(self) -> str:
        """``uptime``'s line, as upstream's libvirt driver answers it (the other host calls it leaves unimplemented:
        enabling, maintenance and power actions are os-services' and the operator's)."""
        return await power.uptime_line()

    # ------------------------------------------------------------------ helpers

    def _dir(self, instance: dict) -> Path:
        return self.instances_path / instance["uuid"]

    def _lookup(self, uuid: str):
        try:
            return self._connection().lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _domain(self, instance: dict):
        domain = self._lookup(instance["uuid"])
        if domain is None:
            raise BuildFailure(f"Instance {instance['uuid']} has no domain on {self.host}.")
        return domain

    def _network_info(self, instance: dict) -> list[dict]:
        saved = self._dir(instance) / "network_info.json"
        if saved.exists():
            return json.loads(saved.read_text())
        return instance.get("network_info") or []

    def _layout(self, instance: dict) -> dict | None:
        path = self._dir(instance) / LAYOUT_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _spec(self, instance: dict, network_info: list[dict], layout: dict) -> DomainSpec:
        """The domain of ``instance`` from its flavor, ports and saved disk/image layout."""
        directory = self._dir(instance)
        flavor = instance["flavor"]
        properties = layout.get("properties") or {}
        return DomainSpec(
            uuid=instance["uuid"], name=f"instance-{instance['uuid']}", virt_type=self.virt_type,
            memory_mb=flavor["memory_mb"], vcpus=flavor["vcpus"], disks=[Disk(**d) for d in layout["disks"]],
            nics=[Nic(vif["mac_address"], self.dataplane.bridge(vif["network_id"]), tap_name(vif["port_id"]),
                      properties.get("hw_vif_model", "virtio")) for vif in network_info],
            console_log=str(directory / "console.log"), cpu_mode=self.conf.get("libvirt", "cpu_mode"),
            cpu_model=(self.conf.getlist("libvirt", "cpu_models") or [""])[0],
            machine_type=properties.get("hw_machine_type") or self.conf.get("libvirt", "machine_type"),
            kernel=str(directory / layout.get("kernel_file", "kernel")) if layout.get("kernel") else None,
            initrd=str(directory / layout.get("initrd_file", "ramdisk")) if layout.get("initrd") else None,
            cmdline=layout.get("cmdline"),
            vnc_listen=self.conf.get("vnc", "server_listen") if self.conf.getbool("vnc", "enabled") else None,
            extra_specs=flavor.get("extra_specs") or {}, image_properties=properties,
            pinned_cpus=self._pinned(instance), shared_cpus=cpus.format_set(self.shared_cpus),
            host_numa_nodes=sorted(cpus.numa_nodes()), free_hugepages_kb=host.free_hugepages(),
            metadata={"name": instance.get("display_name") or "", "flavor": flavor.get("name") or "",
                      "project": instance.get("project_id") or "", "user": instance.get("user_id") or "",
                      "image": layout.get("image_id") or ""})

    def _pinned(self, instance: dict) -> list[int]:
        try:
            return json.loads((self._dir(instance) / PINNING_FILE).read_text())
        except (OSError, ValueError):
            return []

    def _pin(self, instance: dict, properties: dict) -> None:
        """Set aside host CPUs of cpu_dedicated_set for a dedicated guest: ones no other guest here holds.

        Placement counted them (PCPU); which ones is this host's business, kept in each instance's
        directory so that a hard reboot or a start keeps them and a delete frees them.
        """
        flavor = instance["flavor"]
        if cpu_policy(flavor.get("extra_specs") or {}, properties) != "dedicated" or self._pinned(instance):
            return
        with self._pinning_lock:
            taken: set[int] = set()
            for other in self.instances_path.glob(f"*/{PINNING_FILE}"):
                if other.parent.name != instance["uuid"]:
                    with contextlib.suppress(OSError, ValueError):
                        taken.update(json.loads(other.read_text()))
            chosen = cpus.pick_dedicated(flavor["vcpus"], self.dedicated_cpus, taken)
            (self._dir(instance) / PINNING_FILE).write_text(json.dumps(chosen))

    def _check_honoured(self, instance: dict, properties: dict, network_info: list[dict], kernel: bool) -> None:
        """Refuse, before any disk is made, a flavor or image this host cannot honour (saying why)."""
        try:
            self._pin(instance, properties)
            build_xml(self._spec(instance, network_info, {"properties": properties, "disks": [], "kernel": kernel}))
        except Unsupported as exc:
            raise BuildFailure(f"Host {self.host} cannot honour the flavor or image: {exc}") from exc

    # ------------------------------------------------------------------ spawn

    async def spawn(self, instance: dict, image_meta: dict, network_info: list[dict],
                    block_device_info: list[dict] | None = None) -> None:
        """Image (cached), disks, config drive and ports' dataplane (the last three at once), then start.

        ``block_device_info``: the server's volumes, each a raw file the volume service named; the one of
        boot_index 0 is the root disk (no image is copied then: its properties come with ``image_meta``)."""
        started = time.monotonic()
        directory = self._dir(instance)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        (directory / "network_info.json").write_text(json.dumps(network_info))
        # The image handed over, as upstream: unshelve boots the shelved snapshot, not the server's image_ref.
        image_id = image_meta.get("id") or instance.get("image_ref")
        root_volume = next((b for b in block_device_info or [] if b.get("boot_index") == 0), None)
        if root_volume is not None:  # boot from volume: the image's properties only
            meta = {**(image_meta.get("properties") or {}), "id": ""}
        else:
            meta = await self.cache.image_meta(image_id)
        properties = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}
        await self._call(self._check_honoured, instance, properties, network_info, bool(meta.get("kernel_id")))
        root_disk = None
        if root_volume is not None:
            base, root_disk = None, volume_hotplug.volume_disk(root_volume["connection_info"], "vda",
                                                               self._disk_cache)
        else:
            base, meta = await self.cache.fetch(image_id, meta)
        boot_files = {}
        for key, name in (("kernel_id", "kernel"), ("ramdisk_id", "ramdisk")):
            if meta.get("kernel_id") and meta.get(key):
                boot_files[name] = (await self.cache.fetch(meta[key]))[0]
        fetched = time.monotonic()
        flavor = instance["flavor"]
        wants_drive = configdrive.wanted(instance, self.conf.getbool("DEFAULT", "force_config_drive"))

        def plug_bridges() -> None:
            configdrive.write_tree(instance, network_info, directory / "metadata")  # for the metadata API
            for vif in network_info:
                self.dataplane.plug_bridge(vif, instance["uuid"])

        def serve_networks() -> None:
            for vif in network_info:
                self.dataplane.serve(vif)

        disks, drive, _ = await asyncio.gather(
            self._call(self._create_disks, directory, base, flavor, boot_files, root_disk),
            self._call(configdrive.build, instance, network_info, directory / "disk.config",
                       self.conf.get("DEFAULT", "mkisofs_cmd")) if wants_drive else asyncio.sleep(0),
            self._call(plug_bridges))
        if drive is not None:
            disks.append(Disk(str(drive), f"vd{chr(ord('a') + len(disks))}", "raw", readonly=True,
                              cache=self._disk_cache))
        disks += volume_hotplug.disks_of(block_device_info or [], disks, self._disk_cache)
        prepared = time.monotonic()
        # What the domain XML needs beyond the instance and its ports, kept so that a hard reboot or a
        # start after a host restart can regenerate the XML (as Nova does from the instance's image meta).
        layout = {"image_id": image_id or "", "properties": properties,
                  "kernel": "kernel" in boot_files, "initrd": "ramdisk" in boot_files,
                  "cmdline": (meta.get("os_command_line") or "root=/dev/vda console=tty0 console=ttyS0")
                  if "kernel" in boot_files else None,
                  "disks": [asdict(disk) for disk in disks]}
        (directory / LAYOUT_FILE).write_text(json.dumps(layout))
        spec = self._spec(instance, network_info, layout)
        try:
            xml = build_xml(spec)
        except Unsupported as exc:
            raise BuildFailure(f"Host {self.host} cannot honour the flavor or image: {exc}") from exc
        # The guest needs its networks' gateway, DHCP and metadata API only once it has booted: they are set
        # up while libvirt starts it (spawn still returns only when both are done).
        serving = asyncio.ensure_future(self._call(serve_networks))
        try:
            await self._call(self._define_and_start, xml)
        except libvirt.libvirtError as exc:
            hint = ""
            if "ermission denied" in str(exc) and _closed_parent(self.instances_path) is not None:
                hint = (f" ({_closed_parent(self.instances_path)} is not searchable by the QEMU user: "
                        "move [DEFAULT] instances_path or chmod o+x it)")
            raise BuildFailure(f"libvirt could not start the guest: {exc}{hint}") from exc
        finally:
            (served,) = await asyncio.gather(serving, return_exceptions=True)
        if isinstance(served, BaseException):
            raise served
        done = time.monotonic()
        LOG.info("spawned %s in %.2fs: image %.2fs, disks/config drive/bridges %.2fs, libvirt start and the "
                 "networks' DHCP/metadata %.2fs",
                 instance["uuid"], done - started, fetched - started, prepared - fetched, done - prepared)

    def _create_disks(self, directory: Path, base: Path | None, flavor: dict, boot_files: dict[str, Path],
                      root_disk: Disk | None = None) -> list[Disk]:
        """The root disk (a copy or overlay of the cached image ``base``, or ``root_disk``: the boot volume),
        then the flavor's ephemeral and swap disks."""
        if root_disk is not None:
            disks = [root_disk]
        else:
            root_format = self.cache.create_root(base, directory / "disk", flavor.get("root_gb") or 0,
                                                 self.images_type)
            disks = [Disk(str(directory / "disk"), "vda", root_format, cache=self._disk_cache)]
        extra = []
        if flavor.get("ephemeral_gb"):
            extra.append(("disk.eph0", self.cache.blank_base("ephemeral", flavor["ephemeral_gb"] * 1024)))
        if flavor.get("swap"):
            extra.append(("disk.swap", self.cache.blank_base("swap", flavor["swap"])))
        for name, blank in extra:
            self.cache.create_root(blank, directory / name, 0, "qcow2")
            disks.append(Disk(str(directory / name), f"vd{chr(ord('a') + len(disks))}", "qcow2",
                              cache=self._disk_cache))
        for name, cached in boot_files.items():  # kernel and ramdisk: a link to the cache, else a copy
            try:
                os.link(cached, directory / name)
            except OSError:
                shutil.copyfile(cached, directory / name)
        bases = [*([] if base is None else [base]), *(b for _, b in extra), *boot_files.values()]
        (directory / "disk.info").write_text(json.dumps({"bases": [str(b) for b in bases]}))
        return disks

    def _define_and_start(self, xml: str) -> None:
        conn = self._connection()
        domain = conn.defineXML(xml)
        try:
            domain.create()
        except libvirt.libvirtError:
            domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            raise

    # ------------------------------------------------------------------ destroy

    async def update_port_filters(self, ports: list[dict], groups: dict[str, dict],
                                  members: dict[str, list[str]]) -> None:
        await self._call(self.firewall.apply_ports, ports, groups, members, self.dataplane.bridge)

    async def destroy(self, instance: dict, destroy_disks: bool = True) -> None:
        await self._call(self._destroy, instance, destroy_disks)

    def _destroy(self, instance: dict, destroy_disks: bool = True) -> None:
        domain = self._lookup(instance["uuid"])
        if domain is not None:
            if domain.isActive():
                try:
                    domain.destroy()
                except libvirt.libvirtError as exc:
                    if domain.isActive():
                        raise BuildFailure(f"Could not destroy the guest: {exc}") from exc
            flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            domain.undefineFlags(flags)
        for vif in self._network_info(instance):
            self.dataplane.unplug(vif)
        if destroy_disks:
            shutil.rmtree(self._dir(instance), ignore_errors=True)

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        return await self._call(self._cleanup_orphans, known_uuids)

    def _cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        """Destroy this driver's guests whose instance is gone (deleted while the agent was down).

        Only domains whose files live under our instances path count: other clouds (or people)
        may share this libvirt, and their guests are none of our business.
        """
        removed = []
        mine = str(self.instances_path) + "/"
        # A guest a live migration is bringing here belongs to the source until it arrives (its rollback or
        # post step removes incoming.json).
        known_uuids = known_uuids | {path.parent.name for path in self.instances_path.glob("*/incoming.json")}
        for domain in self._connection().listAllDomains():
            uuid = domain.UUIDString()
            if not domain.name().startswith("instance-") or uuid in known_uuids:
                continue
            try:
                if mine not in domain.XMLDesc(0):
                    continue
            except libvirt.libvirtError:
                continue
            LOG.warning("destroying guest %s on %s: its instance no longer exists", uuid, self.host)
            self._destroy({"uuid": uuid})
            removed.append(uuid)
        for directory in self.instances_path.iterdir():
            name = directory.name
            if name in known_uuids or name in removed or not directory.is_dir() or not _is_uuid(name):
                continue
            if self._lookup(name) is not None:
                continue
            LOG.warning("removing the files of deleted instance %s on %s", name, self.host)
            self._destroy({"uuid": name})
            removed.append(name)
        return removed

    # ------------------------------------------------------------------ ports on a running guest

    supports_attach_interface = True

    async def network_info_changed(self, instance: dict, network_info: list[dict]) -> None:
        """Keep the instance's network information on disk current (the metadata API reads its floating IPs
        there, and a restart replugs from it), and its networks' dataplane serving its addresses and subnets
        (an address added: DHCP; a SLAAC subnet added: its advertisements) -- unless it is moving."""
        directory = self._dir(instance)
        if directory.is_dir():
            partial = directory / "network_info.json.new"
            partial.write_text(json.dumps(network_info))
            partial.rename(directory / "network_info.json")
            if instance.get("host") == self.host and instance.get("task_state") is None:
                for vif in network_info:
                    await self._call(self.dataplane.plug, vif, instance["uuid"])

    async def attach_interface(self, instance, vif):
        await self._call(hotplug.attach, self, instance, vif)

    async def detach_interface(self, instance, vif):
        await self._call(hotplug.detach, self, instance, vif)

    # ------------------------------------------------------------------ volumes

    supports_volumes = True

    async def attach_volume(self, instance, connection_info, device):
        return await self._call(volume_hotplug.attach, self, instance, connection_info, device)

    async def detach_volume(self, instance, connection_info, device):
        await self._call(volume_hotplug.detach, self, instance, connection_info, device)

    async def extend_volume(self, instance, connection_info, new_size, device):
        await self._call(volume_hotplug.extend, self, instance, connection_info, new_size)

    async def volume_snapshot_create(self, instance, volume_id, create_info):
        await self._call(volume_hotplug.snapshot_create, self, instance, volume_id, create_info)

    async def volume_snapshot_delete(self, instance, volume_id, snapshot_id, delete_info):
        await self._call(volume_hotplug.snapshot_delete, self, instance, volume_id, snapshot_id, delete_info)

    async def swap_volume(self, instance, old_connection_info, new_connection_info, device):
        await self._call(volume_hotplug.swap, self, instance, old_connection_info, new_connection_info, device)

    # ------------------------------------------------------------------ power

    def _plug_all(self, instance: dict) -> None:
        for vif in self._network_info(instance):
            self.dataplane.plug(vif, instance["uuid"])

    def _shutdown(self, domain, timeout: float) -> bool:
        """ACPI shutdown; True when the guest went off within ``timeout`` seconds."""
        try:
            domain.shutdown()
        except libvirt.libvirtError:
            return not domain.isActive()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not domain.isActive():
                return True
            time.sleep(0.2)
        return False

    def _power_off(self, instance: dict, timeout: float) -> None:
        domain = self._domain(instance)
        if domain.isActive() and not self._shutdown(domain, timeout):
            LOG.info("%s did not shut down within %.0fs; destroying it", instance["uuid"], timeout)
            if domain.isActive():
                domain.destroy()

    def _start(self, instance: dict) -> None:
        """Start the domain as defined (resume from a managed save keeps its XML); rebuild it if it is gone."""
        domain = self._lookup(instance["uuid"])
        if domain is None:
            self._rebuild(instance)
            return
        self._plug_all(instance)
        if not domain.isActive():
            domain.create()

    def _rebuild(self, instance: dict) -> None:
        """Hard reboot, as Nova does it: destroy the guest, regenerate its XML, re-plug its ports, start it.

        The XML comes from the flavor, the ports and the disk/image layout saved at spawn, so a
        hand-edited or lost definition (the host restarted, libvirtd forgot it) is put right.
        """
        layout = self._layout(instance)
        domain = self._lookup(instance["uuid"])
        if layout is None:  # spawned before layouts were kept: restart what libvirt has
            if domain is None:
                raise BuildFailure(f"Instance {instance['uuid']} has neither a domain nor a saved layout on "
                                   f"{self.host}; it cannot be started.")
            if domain.isActive():
                domain.destroy()
            self._start(instance)
            return
        missing = [d["path"] for d in layout["disks"] if not os.path.exists(d["path"])]
        if missing:
            raise BuildFailure(f"Instance {instance['uuid']} cannot start: its disk {missing[0]} is missing.")
        if domain is not None:
            if domain.isActive():
                domain.destroy()
            if domain.hasManagedSaveImage():
                domain.managedSaveRemove()
        network_info = self._network_info(instance)
        try:
            self._pin(instance, layout.get("properties") or {})  # keeps the CPUs it has (or, if none, picks)
            xml = build_xml(self._spec(instance, network_info, layout))
        except Unsupported as exc:
            raise BuildFailure(f"Host {self.host} cannot honour the flavor or image: {exc}") from exc
        for vif in network_info:
            self.dataplane.plug(vif, instance["uuid"])
        self._connection().defineXML(xml).create()

    async def power_off(self, instance: dict) -> None:
        await self._call(self._power_off, instance, self.conf.getfloat("DEFAULT", "shutdown_timeout"))

    async def power_on(self, instance: dict) -> None:
        """Like Nova's libvirt driver, starting a stopped guest regenerates its domain (a hard reboot)."""
        await self._call(self._rebuild, instance)

    async def resume_state_on_host_boot(self, instance: dict) -> None:
        await self._call(self._rebuild, instance)

    async def reboot(self, instance: dict, reboot_type: str) -> None:
        await self._call(self._reboot, instance, reboot_type)

    def _reboot(self, instance: dict, reboot_type: str) -> None:
        domain = self._lookup(instance["uuid"])
        if reboot_type != "HARD" and domain is not None and domain.isActive():
            state = domain.state()[0]
            if state == libvirt.VIR_DOMAIN_RUNNING and \
                    self._shutdown(domain, self.conf.getfloat("libvirt", "wait_soft_reboot_seconds")):
                self._start(instance)
                return
            LOG.info("soft reboot of %s did not complete; rebooting hard", instance["uuid"])
        self._rebuild(instance)

    async def pause(self, instance: dict) -> None:
        await self._call(lambda: self._domain(instance).suspend())

    async def unpause(self, instance: dict) -> None:
        await self._call(lambda: self._domain(instance).resume())

    async def suspend(self, instance: dict) -> None:
        await self._call(lambda: self._domain(instance).managedSave())

    async def resume(self, instance: dict) -> None:
        await self._call(self._start, instance)

    async def get_power_state(self, instance: dict) -> int:
        return await self._call(self._state, instance["uuid"])

    def _state(self, uuid: str) -> int:
        domain = self._lookup(uuid)
        if domain is None:
            return power.NOSTATE
        return _power_state(domain.state()[0], bool(domain.hasManagedSaveImage()))

    def list_instance_uuids(self) -> list[str]:
        return [domain.UUIDString() for domain in self._connection().listAllDomains()
                if domain.name().startswith("instance-")]

    async def get_console_output(self, instance: dict) -> str:
        path = self._dir(instance) / "console.log"

        def read() -> str:
            if not path.exists():
                return ""
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - MAX_CONSOLE_BYTES))
                return fh.read().decode("utf-8", "replace")
        return await self._call(read)

    async def get_vnc_console(self, instance: dict) -> dict:
        def find() -> dict:
            domain = self._domain(instance)
            graphics = ET.fromstring(domain.XMLDesc(0)).find("devices/graphics[@type='vnc']")
            if graphics is None or not domain.isActive() or int(graphics.get("port", "-1")) < 0:
                raise BuildFailure(f"Instance {instance['uuid']} has no VNC console (is it running?).")
            return {"host": self._vnc_proxyclient_address(graphics.get("listen")), "port": int(graphics.get("port"))}
        return await self._call(find)

    def _vnc_proxyclient_address(self, listen: str | None) -> str:
        """Where the noVNC proxy connects to reach this host's VNC servers ([vnc] server_proxyclient_address).

        Unset: the address VNC listens on, or [DEFAULT] my_ip when it listens on every address.
        """
        configured = self.conf.get("vnc", "server_proxyclient_address").strip()
        if configured:
            return configured
        if not listen or listen in ("0.0.0.0", "::"):
            return self.conf.get("DEFAULT", "my_ip") or "127.0.0.1"
        return listen

    # ------------------------------------------------------------------ snapshot

    async def snapshot(self, instance: dict, image_id: str, progress=None) -> None:
        """Flatten the root disk (overlay + base) into a qcow2 and upload it as ``image_id``'s data.

        A running guest is paused while its disk is copied (crash-consistent), then resumed.
        """
        directory = self._dir(instance)
        target = directory / f"snapshot-{image_id}.qcow2"
        try:
            await self._call(self._copy_root, instance, target)
            await self._describe_snapshot(instance, image_id)
            if progress is not None:
                await progress("image_uploading")
            await self.cache.upload(image_id, target)
        finally:
            target.unlink(missing_ok=True)

    def _copy_root(self, instance: dict, target: Path) -> None:
        domain = self._lookup(instance["uuid"])
        paused = False
        if domain is not None and domain.isActive() and domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
            domain.suspend()
            paused = True
        try:
            source = self._dir(instance) / "disk"
            imagecache._run("qemu-img", "convert", "-U", "-O", "qcow2", str(source), str(target))
        finally:
            if paused:
                domain.resume()

    async def _describe_snapshot(self, instance: dict, image_id: str) -> None:
        """Formats (needed before data is accepted) and the boot properties of the source image."""
        snapshot = await self.cache.image_meta(image_id)
        operations = []
        for key, value in (("disk_format", "qcow2"), ("container_format", "bare")):
            if not snapshot.get(key):
                operations.append({"op": "replace", "path": f"/{key}", "value": value})
        try:
            source = await self.cache.image_meta(instance.get("image_ref") or "")
        except BuildFailure:
            source = {}
        for key in ("kernel_id", "ramdisk_id", "os_command_line"):
            if source.get(key) and key not in snapshot:
                operations.append({"op": "add", "path": f"/{key}", "value": source[key]})
        if operations:
            response = await self.cache.images.request(
                "PATCH", f"/v2/images/{image_id}", json=operations,
                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
            if response.status_code != 200:
                raise BuildFailure(f"Snapshot image {image_id} could not be described: {response.status_code} "
                                   f"{response.text[:200]}")

    # ------------------------------------------------------------------ image cache

    def in_use_bases(self) -> set[Path]:
        used: set[Path] = set()
        for info in self.instances_path.glob("*/disk.info"):
            try:
                used.update(Path(p) for p in json.loads(info.read_text()).get("bases", []))
            except (OSError, ValueError):
                continue
        return used

    async def age_image_cache(self) -> list[Path]:
        min_age = self.conf.getfloat("image_cache", "remove_unused_original_minimum_age_seconds")
        return await self._call(lambda: self.cache.age_out(self.in_use_bases(), min_age))
