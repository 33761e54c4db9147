"""Live migration between two libvirt daemons (two compute hosts), as upstream's libvirt driver does it.

The steps and what each hands over in ``migrate_data`` (JSON-able):

1. destination ``check_can_live_migrate_destination``: leaves a probe file in its instances path (does the
   source see it? then the two share storage) and says how to reach its libvirtd;
2. source ``check_can_live_migrate_source``: refuses what cannot move, decides block migration ("auto" =
   when the storage is not shared), adds the guest's disks and layout;
3. destination ``pre_live_migration``: the empty disks to copy into (root overlays on its own cached base of
   the image), kernel, config drive and ports; returns where it put them;
4. source ``live_migration``: ``virDomainMigrateToURI3`` peer to peer to the destination's libvirtd, with the
   domain XML rewritten for the destination's paths and bridges, while a monitor reports the job's progress;
   ``live_migration_abort`` cancels the job, ``live_migration_force_complete`` pauses the guest so that its
   last pages get copied (upstream's behaviour without post-copy);
5. ``post_live_migration_at_source`` removes what is left on the source, ``post_live_migration_at_destination``
   records the guest's layout there (the domain arrived persistent) and resumes a guest force-complete paused;
   ``rollback_live_migration_at_destination`` removes what step 3 made.

libvirt refuses to migrate a guest to the daemon it runs on (it compares the daemons' host UUIDs), so each
compute host needs a libvirtd of its own; the destination's ``[libvirt] live_migration_uri`` says how the
source's libvirtd reaches it, and ``live_migration_inbound_addr`` where QEMU's migration stream and the
disks' NBD copy connect to.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
import uuid as uuid_mod
import xml.etree.ElementTree as ET
from pathlib import Path

from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import (LiveMigrationAborted, MigrationError, MigrationPreCheckError,
                                          NoActiveMigration)
from kilonova.compute.virt.libvirt import configdrive, cpus, imagecache
from kilonova.compute.virt.libvirt import volumes as volume_hotplug
from kilonova.compute.virt.libvirt.lifecycle import RESCUE_FILE

try:
    import libvirt
except ImportError:  # pragma: no cover - the driver itself refuses to start without it
    libvirt = None

LOG = logging.getLogger(__name__)
INCOMING_FILE = "incoming.json"   # on the destination between pre_live_migration and post/rollback
OUTGOING_FILE = "outgoing.json"   # on the source from live_migration to post_live_migration_at_source
PROBE_PREFIX = ".shared-storage-probe-"
MONITOR_INTERVAL = 0.5
STALE_PROBE_SECONDS = 3600
UNLIMITED_MIB_S = 8 * 1024 * 1024  # libvirt's largest accepted speed: as good as no cap


def host_uuid(conn) -> str:
    """The libvirt daemon's host UUID (what libvirt compares to refuse a migration to itself)."""
    return ET.fromstring(conn.getCapabilities()).findtext("host/uuid") or ""


def rewrite_xml(xml: str, source_dir: str, dest_dir: str, bridges: dict[str, str], graphics_listen: str | None,
                shared_cpus: str) -> str:
    """The source's live domain XML with the destination's instance directory, bridges, VNC address and
    CPU set (everything else must stay as it is: libvirt checks the guest's ABI is unchanged)."""
    root = ET.fromstring(xml.replace(source_dir.rstrip("/") + "/", dest_dir.rstrip("/") + "/"))
    for source in root.findall("devices/interface/source"):
        if source.get("bridge") in bridges:
            source.set("bridge", bridges[source.get("bridge")])
    for graphics in root.findall("devices/graphics"):
        if graphics_listen:
            graphics.set("listen", graphics_listen)
            for listen in graphics.findall("listen"):
                listen.set("address", graphics_listen)
    vcpu = root.find("vcpu")
    if vcpu is not None:
        if shared_cpus:
            vcpu.set("cpuset", shared_cpus)
        else:
            vcpu.attrib.pop("cpuset", None)
    return ET.tostring(root, encoding="unicode")


def _volume_connections(migrate_data: dict) -> list[dict]:
    """The destination's connections to the guest's volumes (its pre_live_migration made them), as mappings."""
    return [{"volume_id": volume_id, "connection_info": entry["connection_info"]}
            for volume_id, entry in (migrate_data.get("volumes") or {}).items() if entry.get("connection_info")]


class _Job:
    def __init__(self):
        self.aborted = False
        self.forced = False
        self.paused = False
        self.timed_out = False


class LiveMigrationMixin:
    """Methods of LibvirtDriver (they use its connection, paths, image cache and dataplane)."""

    def _migration_uris(self) -> tuple[str, str]:
        """(how another host's libvirtd reaches ours, where QEMU's incoming stream connects) of this host."""
        address = self.conf.get("libvirt", "live_migration_inbound_addr") or self.conf.get("DEFAULT", "my_ip") \
            or "127.0.0.1"
        uri = self.conf.get("libvirt", "live_migration_uri")
        if not uri:
            uri = f"qemu+{self.conf.get('libvirt', 'live_migration_scheme')}://{address}/system"
        elif "%s" in uri:
            uri = uri.replace("%s", address)
        return uri, address

    # ------------------------------------------------------------------ prechecks

    async def check_can_live_migrate_destination(self, instance: dict, block_migration: bool | None) -> dict:
        return await self._call(self._check_destination, instance, block_migration)

    def _check_destination(self, instance: dict, block_migration: bool | None) -> dict:
        for stale in self.instances_path.glob(f"{PROBE_PREFIX}*"):  # of checks whose migration never came
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > STALE_PROBE_SECONDS:
                    stale.unlink()
        probe = f"{PROBE_PREFIX}{uuid_mod.uuid4().hex}"
        (self.instances_path / probe).write_text(self.host)
        uri, address = self._migration_uris()
        return {"dest_host": self.host, "block_migration": block_migration, "shared_probe": probe,
                "dest_libvirt_uri": uri, "dest_inbound_addr": address,
                "dest_host_uuid": host_uuid(self._connection())}

    async def check_can_live_migrate_source(self, instance: dict, migrate_data: dict) -> dict:
        return await self._call(self._check_source, instance, migrate_data)

    def _check_source(self, instance: dict, migrate_data: dict) -> dict:
        uuid = instance["uuid"]
        domain = self._domain(instance)
        state = self._state(uuid)
        if state not in (power.RUNNING, power.PAUSED):
            raise MigrationPreCheckError(f"Instance {uuid} is not running on {self.host}; only a running or "
                                         "paused guest can be live-migrated")
        if (self._dir(instance) / RESCUE_FILE).exists():
            raise MigrationPreCheckError(f"Instance {uuid} is in rescue mode and cannot be live-migrated")
        if self._pinned(instance):
            raise MigrationPreCheckError(f"Instance {uuid} has dedicated host CPUs; this driver does not "
                                         "live-migrate pinned guests")
        if migrate_data.get("dest_host_uuid") == host_uuid(self._connection()):
            raise MigrationPreCheckError(
                f"Hosts {self.host} and {migrate_data.get('dest_host')} share one libvirt daemon; libvirt cannot "
                "live-migrate a guest to the daemon it runs on (give each compute host a libvirtd of its own)")
        probe = migrate_data.get("shared_probe")
        shared = bool(probe) and (self.instances_path / probe).exists()
        block = migrate_data.get("block_migration")
        if block is None:  # "auto" (2.25): copy the disks unless both hosts see them
            block = not shared
        if block and shared:
            raise MigrationPreCheckError("Block migration can not be used with shared storage.")
        if not block and not shared:
            raise MigrationPreCheckError(
                f"{migrate_data.get('dest_host')} is not on shared storage: Shared storage live-migration "
                "requires either shared storage or boot-from-volume with no local disks.")
        layout = self._layout(instance)
        if layout is None:
            raise MigrationPreCheckError(f"Instance {uuid} has no saved layout on {self.host}; it cannot move")
        disks = []
        for disk in layout["disks"]:
            path = Path(disk["path"])
            if disk.get("readonly") or volume_hotplug.is_volume(disk, self.instances_path):
                continue  # the config drive is made again; a volume is not copied (the guest keeps its file)
            info = json.loads(imagecache._run("qemu-img", "info", "-U", "--output", "json", "-f", disk["format"],
                                              str(path))) if block else {}  # -U: the guest runs on it
            disks.append({"name": path.name, "target": disk["target"], "format": disk["format"],
                          "virtual_size": info.get("virtual-size"), "backing": info.get("backing-filename")})
        return {**migrate_data, "block_migration": block, "is_shared_instance_path": shared,
                "source_host": self.host, "source_dir": str(self._dir(instance)), "disks": disks,
                "layout": {**layout, "disks": volume_hotplug.portable(layout["disks"], self.instances_path)},
                "source_paused": domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED}

    # ------------------------------------------------------------------ destination

    async def pre_live_migration(self, instance: dict, network_info: list[dict], migrate_data: dict) -> dict:
        if "layout" not in migrate_data:
            raise MigrationError("migrate_data lacks the guest's disks: the source's check_can_live_migrate_source "
                                 "must run before pre_live_migration")
        layout = migrate_data["layout"]
        bases: dict[str, Path] = {}
        if migrate_data["block_migration"]:
            if layout.get("image_id"):
                with contextlib.suppress(Exception):  # an image deleted since: the disk is copied whole
                    meta = await self.cache.image_meta(layout["image_id"])
                    bases["disk"] = (await self.cache.fetch(layout["image_id"], meta))[0]
                    for key, name in (("kernel_id", "kernel"), ("ramdisk_id", "ramdisk")):
                        if layout.get("kernel") and meta.get(key):
                            bases[name] = (await self.cache.fetch(meta[key]))[0]
        return await self._call(self._pre_live_migration, instance, network_info, migrate_data, bases)

    def _pre_live_migration(self, instance: dict, network_info: list[dict], migrate_data: dict,
                            bases: dict[str, Path]) -> dict:
        directory = self._dir(instance)
        shared = migrate_data["is_shared_instance_path"]
        with contextlib.suppress(OSError):
            (self.instances_path / migrate_data.get("shared_probe", "-")).unlink()
        layout = migrate_data["layout"]
        incremental = True
        if not shared:
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            os.chmod(directory, 0o755)
            for disk in migrate_data["disks"]:
                target = directory / disk["name"]
                base = bases.get("disk") if disk["name"] == "disk" else None
                if disk["backing"] and base is not None:
                    fmt = imagecache.base_info(base)["format"]
                    imagecache._run("qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(base),
                                    str(target), str(disk["virtual_size"]))
                else:
                    # Copied whole: its backing (a blank base made on the source) is not the same file here.
                    incremental = incremental and not disk["backing"]
                    imagecache._run("qemu-img", "create", "-q", "-f", disk["format"], str(target),
                                    str(disk["virtual_size"]))
            source = Path(migrate_data["source_dir"])
            for name in ("kernel", "ramdisk"):
                if name in bases:
                    shutil.copyfile(bases[name], directory / name)
                elif (source / name).is_file() and os.access(source / name, os.R_OK):
                    shutil.copyfile(source / name, directory / name)  # its image is gone; the source's copy
                elif layout.get("kernel" if name == "kernel" else "initrd"):
                    raise MigrationError(f"Host {self.host} could not get the {name} of instance "
                                         f"{instance['uuid']}'s image {layout.get('image_id')}")
            if any(d.get("readonly") for d in layout["disks"]):
                configdrive.build(instance, network_info, directory / "disk.config",
                                  self.conf.get("DEFAULT", "mkisofs_cmd"))
            (directory / "disk.info").write_text(json.dumps({"bases": [str(b) for b in bases.values()]}))
        (directory / "network_info.json").write_text(json.dumps(network_info))
        configdrive.write_tree(instance, network_info, directory / "metadata")
        for vif in network_info:
            self.dataplane.plug(vif, instance["uuid"])
        # The instance's own disks in its directory here; its volumes as this host was connected to them.
        dest_layout = {**layout, "disks": volume_hotplug.reconnected(
            [d if d.get("protocol") or Path(d["path"]).is_absolute() else
             {**d, "path": str(directory / d["path"]), "cache": self._disk_cache} for d in layout["disks"]],
            _volume_connections(migrate_data), self._disk_cache)}
        (directory / INCOMING_FILE).write_text(json.dumps({
            "shared": shared, "resume": not migrate_data.get("source_paused"), "layout": dest_layout}))
        uri, address = self._migration_uris()
        vnc = self.conf.get("vnc", "server_listen") if self.conf.getbool("vnc", "enabled") else None
        return {**migrate_data, "dest_host": self.host, "dest_dir": str(directory),
                "dest_libvirt_uri": uri, "dest_inbound_addr": address, "graphics_listen": vnc,
                "dest_bridges": {vif["network_id"]: self.dataplane.bridge(vif["network_id"]) for vif in network_info},
                "dest_shared_cpus": cpus.format_set(self.shared_cpus),
                "incremental": incremental}

    async def post_live_migration_at_destination(self, instance: dict, network_info: list[dict]) -> None:
        await self._call(self._post_at_destination, instance, network_info)

    def _post_at_destination(self, instance: dict, network_info: list[dict]) -> None:
        directory = self._dir(instance)
        try:
            incoming = json.loads((directory / INCOMING_FILE).read_text())
        except (OSError, ValueError) as exc:
            if (directory / "domain.json").exists() and self._lookup(instance["uuid"]) is not None:
                return  # done already (the agent repeats a step after a restart)
            raise MigrationError(f"No live migration of instance {instance['uuid']} to {self.host} was "
                                 "prepared") from exc
        domain = self._domain(instance)
        (directory / "domain.json").write_text(json.dumps(incoming["layout"]))
        (directory / "network_info.json").write_text(json.dumps(network_info))
        if not domain.isPersistent():
            self._connection().defineXML(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        if incoming["resume"] and domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            domain.resume()  # paused by force-complete on the source: it runs on here
        (directory / INCOMING_FILE).unlink()

    async def rollback_live_migration_at_destination(self, instance: dict, network_info: list[dict]) -> None:
        await self._call(self._rollback_at_destination, instance, network_info)

    def _rollback_at_destination(self, instance: dict, network_info: list[dict]) -> None:
        directory = self._dir(instance)
        try:
            incoming = json.loads((directory / INCOMING_FILE).read_text())
        except (OSError, ValueError):
            return  # nothing was prepared here (or it is already rolled back)
        domain = self._lookup(instance["uuid"])
        if domain is not None and not incoming["shared"] and str(directory) in domain.XMLDesc(0):
            with contextlib.suppress(libvirt.libvirtError):
                self._undefine(domain)
        for vif in network_info:
            self.dataplane.unplug(vif)
        if incoming["shared"]:
            (directory / INCOMING_FILE).unlink(missing_ok=True)
        else:
            shutil.rmtree(directory, ignore_errors=True)

    # ------------------------------------------------------------------ source

    async def live_migration(self, instance: dict, dest_host: str, migrate_data: dict, progress=None) -> None:
        if dest_host == self.host:
            raise MigrationError(f"Instance {instance['uuid']} cannot be live-migrated to its own host {self.host}")
        if "dest_dir" not in migrate_data:
            raise MigrationError("migrate_data lacks the destination's answer: pre_live_migration must run on "
                                 f"{dest_host} before live_migration")
        uuid = instance["uuid"]
        jobs = self._live_jobs
        if uuid in jobs:
            raise MigrationError(f"Instance {uuid} is already being live-migrated")
        job = jobs[uuid] = _Job()
        outgoing = self._dir(instance) / OUTGOING_FILE
        succeeded = False
        try:
            domain = await self._call(self._domain, instance)
            memory = (await self._call(domain.info))[1] * 1024
            disk = sum(d["virtual_size"] or 0 for d in migrate_data["disks"]) if migrate_data["block_migration"] else 0
            last = {"memory_total_bytes": memory, "disk_total_bytes": disk}
            outgoing.write_text(json.dumps({"dest_host": dest_host, "shared": migrate_data["is_shared_instance_path"]}))
            migration = asyncio.ensure_future(self._call(self._migrate, instance, domain, migrate_data))
            # As upstream: [libvirt] live_migration_completion_timeout seconds per GiB of memory and copied disk.
            gib = max(1.0, (memory + disk) / 2**30)
            limit = self.conf.getfloat("libvirt", "live_migration_completion_timeout") * gib
            deadline = asyncio.get_running_loop().time() + limit
            while not migration.done():
                await asyncio.wait([migration], timeout=MONITOR_INTERVAL)
                if migration.done():
                    break
                stats = await self._call(self._job_stats, domain)
                if stats is not None:  # totals stay the largest seen (memory is 0 while disks are copied)
                    last = {**stats, **{key: max(stats[key], last.get(key, 0))
                                        for key in ("memory_total_bytes", "disk_total_bytes")}}
                    if progress is not None:
                        with contextlib.suppress(Exception):
                            await progress(stats)
                if job.forced:  # again: libvirt sets the configured bandwidth anew when the memory copy starts
                    with contextlib.suppress(libvirt.libvirtError):
                        await self._call(domain.migrateSetMaxSpeed, UNLIMITED_MIB_S, 0)
                if job.aborted:  # again: an abort that came before libvirt's job started found nothing to cancel
                    with contextlib.suppress(libvirt.libvirtError):
                        await self._call(domain.abortJob)
                if limit > 0 and not job.timed_out and asyncio.get_running_loop().time() > deadline:
                    job.timed_out = True
                    await self._on_timeout(instance, job, limit)
            try:
                migration.result()
            except libvirt.libvirtError as exc:
                if job.timed_out:
                    raise MigrationError(f"Live migration of instance {uuid} to {dest_host} did not complete within "
                                         f"{limit:.0f}s ([libvirt] live_migration_completion_timeout) and was "
                                         "aborted") from exc
                if job.aborted:
                    raise LiveMigrationAborted(f"Live migration of instance {uuid} to {dest_host} was aborted") \
                        from exc
                raise MigrationError(f"Live migration of instance {uuid} to {dest_host} failed: {exc}") from exc
            succeeded = True
            if progress is not None:
                with contextlib.suppress(Exception):
                    await progress(_finished(last))
        finally:
            jobs.pop(uuid, None)
            if not succeeded:
                outgoing.unlink(missing_ok=True)
            if job.paused and not succeeded:  # paused by force-complete, still here: it runs on
                with contextlib.suppress(Exception):
                    await self._call(lambda: self._domain(instance).resume())

    def _migrate(self, instance: dict, domain, migrate_data: dict) -> None:
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        params = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{migrate_data['dest_inbound_addr']}",
                  libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: migrate_data["dest_inbound_addr"]}
        bandwidth = self.conf.getint("libvirt", "live_migration_bandwidth")
        if bandwidth > 0:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = bandwidth
        bridges = {self.dataplane.bridge(net): bridge for net, bridge in migrate_data.get("dest_bridges", {}).items()}
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = volume_hotplug.retarget_xml(rewrite_xml(
            domain.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE), str(self._dir(instance)), migrate_data["dest_dir"],
            bridges, migrate_data.get("graphics_listen"), migrate_data.get("dest_shared_cpus") or ""),
            _volume_connections(migrate_data), self._disk_cache)
        if migrate_data["block_migration"]:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC if migrate_data.get("incremental") \
                else libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = [d["target"] for d in migrate_data["disks"]]
        LOG.info("live-migrating %s to %s (%s, data to %s)", instance["uuid"], migrate_data.get("dest_host"),
                 migrate_data["dest_libvirt_uri"], migrate_data["dest_inbound_addr"])
        if self._live_jobs.get(instance["uuid"], _Job()).aborted:
            raise libvirt.libvirtError("migration aborted before it started")
        domain.migrateToURI3(migrate_data["dest_libvirt_uri"], params, flags)

    @staticmethod
    def _job_stats(domain) -> dict | None:
        try:
            stats = domain.jobStats()
        except libvirt.libvirtError:
            return None
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return _progress(stats)

    async def _on_timeout(self, instance: dict, job: _Job, limit: float) -> None:
        action = self.conf.get("libvirt", "live_migration_timeout_action")
        LOG.warning("live migration of %s has not completed within %.0fs: %s", instance["uuid"], limit, action)
        if action == "force_complete":
            job.timed_out = False  # it goes on, and should end soon
            await self.live_migration_force_complete(instance)
        else:
            await self.live_migration_abort(instance)

    def _migrating_domain(self, instance: dict, job: _Job | None):
        """The domain, when a live migration of it is running here (also one an earlier agent started)."""
        domain = self._lookup(instance["uuid"])
        if domain is None or (job is None and self._job_stats(domain) is None):
            raise NoActiveMigration(f"No live migration of instance {instance['uuid']} is running on {self.host}")
        return domain

    async def live_migration_abort(self, instance: dict) -> None:
        job = self._live_jobs.get(instance["uuid"])
        if job is not None:
            job.aborted = True

        def abort() -> None:
            try:
                self._migrating_domain(instance, job).abortJob()
            except libvirt.libvirtError as exc:
                if job is not None:
                    return  # libvirt's job has not started yet: the monitor cancels it once it has
                raise NoActiveMigration(f"The live migration of instance {instance['uuid']} could not be "
                                        f"aborted: {exc}") from exc
        await self._call(abort)

    async def live_migration_force_complete(self, instance: dict) -> None:
        job = self._live_jobs.get(instance["uuid"])

        def pause() -> None:
            domain = self._migrating_domain(instance, job)
            if domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                domain.suspend()  # no page gets dirty any more: the copy converges at once
                if job is not None:
                    job.paused = True
            if job is not None:
                job.forced = True
            with contextlib.suppress(libvirt.libvirtError):  # and no [libvirt] live_migration_bandwidth cap
                domain.migrateSetMaxSpeed(UNLIMITED_MIB_S)
        await self._call(pause)

    async def post_live_migration_at_source(self, instance: dict, network_info: list[dict]) -> None:
        await self._call(self._post_at_source, instance, network_info)

    def _post_at_source(self, instance: dict, network_info: list[dict]) -> None:
        directory = self._dir(instance)
        try:
            shared = json.loads((directory / OUTGOING_FILE).read_text())["shared"]
        except (OSError, ValueError, KeyError):
            return  # no migration left anything here (or this already ran): files may be the destination's
        domain = self._lookup(instance["uuid"])
        if domain is not None and not domain.isActive():  # kept defined by a migration without UNDEFINE_SOURCE
            domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        for vif in network_info or self._network_info(instance):
            self.dataplane.unplug(vif)
        if shared:  # the destination uses these very files now
            (directory / OUTGOING_FILE).unlink(missing_ok=True)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _finished(last: dict) -> dict:
    """The last report of a completed migration: everything copied (the source's job is gone with the guest)."""
    memory, disk = last.get("memory_total_bytes", 0), last.get("disk_total_bytes", 0)
    return {"memory_total_bytes": memory, "memory_processed_bytes": max(memory, last.get("memory_processed_bytes", 0)),
            "memory_remaining_bytes": 0, "disk_total_bytes": disk,
            "disk_processed_bytes": max(disk, last.get("disk_processed_bytes", 0)), "disk_remaining_bytes": 0}


def _progress(stats: dict) -> dict:
    """libvirt's job statistics as the agent's progress report."""
    memory_total, disk_total = stats.get("memory_total", 0), stats.get("disk_total", 0)
    return {"memory_total_bytes": memory_total, "memory_processed_bytes": stats.get("memory_processed", 0),
            "memory_remaining_bytes": stats.get("memory_remaining", 0), "disk_total_bytes": disk_total,
            "disk_processed_bytes": stats.get("disk_processed", 0),
            "disk_remaining_bytes": stats.get("disk_remaining", 0)}
