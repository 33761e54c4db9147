"""A simulated hypervisor: many of them run in one process, one per fake host.

Spawning takes ``[fake_driver] spawn_delay`` seconds (destroying ``destroy_delay``) and fails on the hosts
listed in ``[fake_driver] fail_spawn_hosts`` (failure injection for tests).
Guests keep their flavor, image, power state, admin password and a console log whose lines say what
happened to them (each boot with the vCPUs and RAM it got, a rescue, a rebuild, an NMI...).

Nothing is shared between two FakeDriver instances, as they may be in different processes: a guest that
moves to another host travels in the ``disk_info`` / ``migrate_data`` dicts the operations hand over.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kilonova.compute.virt import driver, fake_topology, fake_vnc
from kilonova.compute.virt.driver import (BuildFailure, ComputeDriver, InstanceNotRunning, InstancePasswordSetFailed,
                                          LiveMigrationAborted, MigrationError, NoActiveMigration, ResizeError)
from kilonova.image import qcow2

LOG = logging.getLogger(__name__)

# Nova's power_state.STATE_MAP: the "state" of diagnostics.
STATE_NAMES = {driver.NOSTATE: "pending", driver.RUNNING: "running", driver.PAUSED: "paused",
               driver.SHUTDOWN: "shutdown", driver.CRASHED: "crashed", driver.SUSPENDED: "suspended"}
LIVE_MIGRATION_STEPS = 10


def _flavor_of(instance: dict) -> dict:
    flavor = instance.get("flavor") or {}
    return {key: flavor.get(key) for key in ("id", "name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap",
                                             "extra_specs")}


class _Guest:
    def __init__(self, instance: dict):
        self.uuid = instance["uuid"]
        self.name = instance.get("hostname") or instance["uuid"]
        self.power_state = driver.NOSTATE
        self.console: list[str] = []
        self.flavor = _flavor_of(instance)
        self.image_id = instance.get("image_ref") or None
        self.config_drive = bool(instance.get("config_drive"))
        self.admin_password: str | None = None
        self.nics: list[dict] = []
        self.booted_at = time.time()
        self.rescue: dict | None = None  # {"image": rescue image id, "power_state": before the rescue}
        self.volumes: dict[str, dict] = {}  # device -> {"volume_id", "path"}: the volumes connected to it

    def log(self, line: str) -> None:
        stamp = datetime.utcnow().strftime("%H:%M:%S")
        self.console.append(f"[{stamp}] {line}")

    def to_dict(self) -> dict:
        """What moves with the guest to another host (JSON-able)."""
        return {"uuid": self.uuid, "name": self.name, "power_state": self.power_state,
                "console": list(self.console), "flavor": dict(self.flavor), "image_id": self.image_id,
                "config_drive": self.config_drive, "admin_password": self.admin_password,
                "nics": copy.deepcopy(self.nics), "booted_at": self.booted_at, "rescue": self.rescue,
                "volumes": copy.deepcopy(self.volumes)}

    @classmethod
    def from_dict(cls, data: dict) -> "_Guest":
        guest = cls({"uuid": data["uuid"], "hostname": data["name"]})
        guest.power_state = data["power_state"]
        guest.console = list(data["console"])
        guest.flavor = dict(data["flavor"])
        guest.image_id = data["image_id"]
        guest.config_drive = data["config_drive"]
        guest.admin_password = data["admin_password"]
        guest.nics = copy.deepcopy(data["nics"])
        guest.booted_at = data["booted_at"]
        guest.rescue = data["rescue"]
        guest.volumes = copy.deepcopy(data.get("volumes") or {})
        return guest


class _LiveMigration:
    """A live migration under way on its source host: the flags abort and force-complete set."""

    def __init__(self, dest_host: str):
        self.dest_host = dest_host
        self.abort = False
        self.force = False
        self.paused_by_force = False


class FakeDriver(ComputeDriver):
    hypervisor_type = "fake"
    syncs_power_state = False  # simulated guests only change when told to

    def __init__(self, host: str, conf, images=None):
        self.host = host
        self.images = images  # a ServiceClient on the image service, for snapshots
        self.vcpus = conf.getint("fake_driver", "vcpus")
        self.memory_mb = conf.getint("fake_driver", "memory_mb")
        self.disk_gb = conf.getint("fake_driver", "disk_gb")
        self.spawn_delay = conf.getfloat("fake_driver", "spawn_delay")
        self.destroy_delay = conf.getfloat("fake_driver", "destroy_delay")
        self.live_migration_delay = conf.getfloat("fake_driver", "live_migration_delay")
        self.failing = host in conf.getlist("fake_driver", "fail_spawn_hosts")
        # Tests only: wait for network-vif-plugged as the libvirt driver does (simulated guests need not).
        self.waits_for_vif_plugging = conf.getbool("fake_driver", "wait_for_vif_plugging")
        self.guests: dict[str, _Guest] = {}
        self.resize_sources: dict[str, _Guest] = {}  # stopped copies kept here until confirm or revert
        self.confirmed_resizes: set[str] = set()  # their copies are gone for good: nothing to revert to
        self.assisted_snapshots: list[dict] = []  # os-assisted-volume-snapshots asked of this host, in order
        self.incoming: dict[str, _Guest] = {}  # live migrations to this host, from pre_live_migration
        self.departed: dict[str, _Guest] = {}  # live-migrated away, until post_live_migration_at_source
        self.migrations: dict[str, _LiveMigration] = {}  # live migrations from this host, running
        self.conf = conf
        self.numa_cells, self.pci_pools = fake_topology.configured(conf, host, self.vcpus, self.memory_mb)
        self._inject_steps(conf)

    def _inject_steps(self, conf) -> None:
        """``[fake_driver] step_delays`` / ``fail_steps``: hold or fail the named driver calls (tests)."""
        delays = {}
        for item in conf.getlist("fake_driver", "step_delays"):
            name, _, seconds = item.partition("=")
            delays[name.strip()] = float(seconds)
        fail_hosts = conf.getlist("fake_driver", "fail_step_hosts")
        failing = set(conf.getlist("fake_driver", "fail_steps")) if not fail_hosts or self.host in fail_hosts \
            else set()
        gates = set(conf.getlist("fake_driver", "step_gates"))
        self._gate_dir = Path(conf.get("fake_driver", "step_gate_dir"))
        self._gate_timeout = conf.getfloat("fake_driver", "step_gate_timeout")
        for name in set(delays) | failing | gates:
            original = getattr(self, name)  # an unknown name is a configuration error: say so at start
            setattr(self, name, self._injected(name, original, delays.get(name, 0.0), name in failing,
                                               name in gates))

    def _injected(self, name: str, original, delay: float, fail: bool, gated: bool = False):
        async def step(*args, **kwargs):
            if gated:
                await self._pass_gate(name)
            if delay:
                await asyncio.sleep(delay)
            if fail:
                raise BuildFailure(f"Simulated failure of {name} on host {self.host}")
            return await original(*args, **kwargs)

        return step

    async def _pass_gate(self, name: str) -> None:
        """Wait for the test to open the gate of step ``name`` (a file of that name, taken: one call each)."""
        gate = self._gate_dir / name
        LOG.info("fake host %s: %s waits at its gate %s", self.host, name, gate)
        deadline = time.monotonic() + self._gate_timeout
        while time.monotonic() < deadline:
            try:
                gate.unlink()
                return
            except FileNotFoundError:
                await asyncio.sleep(0.05)
        LOG.warning("fake host %s: the gate of %s was not opened in %s s: going on", self.host, name,
                    self._gate_timeout)

    def _guest(self, instance: dict) -> _Guest:
        guest = self.guests.get(instance["uuid"])
        if guest is None:
            raise BuildFailure(f"Instance {instance['uuid']} is not running on {self.host}")
        return guest

    def _boot(self, guest: _Guest, how: str, network_info: list[dict] | None = None) -> None:
        """A boot's console lines; the second says what the guest got (tests read it after a resize)."""
        flavor = guest.flavor
        guest.log(f"Kilonova fake hypervisor {self.host}: {how}")
        guest.log(f"{flavor.get('vcpus')} vCPUs, {flavor.get('memory_mb')} MB RAM, {flavor.get('root_gb')} GB "
                  f"root disk (flavor {flavor.get('name')})")
        if network_info is not None:
            guest.nics = [{"mac_address": vif.get("mac_address"),
                           "ips": [ip["ip_address"] for ip in vif.get("fixed_ips", [])]} for vif in network_info]
        for nic in guest.nics:
            for ip in nic["ips"]:
                guest.log(f"eth0: leased {ip} (mac {nic['mac_address']})")
        guest.log(f"{guest.name} login:")
        guest.booted_at = time.time()
        guest.power_state = driver.RUNNING

    async def spawn(self, instance, image_meta, network_info, block_device_info=None):
        if self.spawn_delay:
            await asyncio.sleep(self.spawn_delay)
        if self.failing:
            raise BuildFailure(f"Simulated spawn failure on host {self.host}")
        guest = _Guest(instance)
        guest.image_id = image_meta.get("id") or guest.image_id
        guest.admin_password = instance.get("admin_password") or None
        for bdm in block_device_info or []:
            guest.volumes[bdm["device_name"]] = {"volume_id": bdm["volume_id"],
                                                 "connection_info": copy.deepcopy(bdm["connection_info"])}
        root = next((b for b in block_device_info or [] if b.get("boot_index") == 0), None)
        source = f"volume {root['volume_id']}" if root else f"image {image_meta.get('id')}"
        self._boot(guest, f"booting {guest.name} from {source}", network_info)
        for device, volume in sorted(guest.volumes.items()):
            guest.log(f"{device}: volume {volume['volume_id']} attached")
        self.guests[guest.uuid] = guest

    async def destroy(self, instance, destroy_disks=True):
        if self.destroy_delay:
            await asyncio.sleep(self.destroy_delay)
        # A resize's source copy stays: on the same host, revert destroys the new guest, then restores it.
        self.guests.pop(instance["uuid"], None)
        self.incoming.pop(instance["uuid"], None)
        self.departed.pop(instance["uuid"], None)

    async def reboot(self, instance, reboot_type):
        guest = self._guest(instance)
        guest.log(f"{'Hard' if reboot_type == 'HARD' else 'Soft'} reboot requested")
        guest.log(f"{guest.name} login:")
        guest.booted_at = time.time()
        guest.power_state = driver.RUNNING

    async def power_off(self, instance):
        guest = self._guest(instance)
        guest.log("Power down.")
        guest.power_state = driver.SHUTDOWN

    async def power_on(self, instance):
        guest = self.guests.get(instance["uuid"]) or _Guest(instance)
        self.guests[guest.uuid] = guest
        guest.log(f"{guest.name} login:")
        guest.booted_at = time.time()
        guest.power_state = driver.RUNNING

    async def pause(self, instance):
        self._guest(instance).power_state = driver.PAUSED

    async def unpause(self, instance):
        self._guest(instance).power_state = driver.RUNNING

    async def suspend(self, instance):
        self._guest(instance).power_state = driver.SUSPENDED

    async def resume(self, instance):
        self._guest(instance).power_state = driver.RUNNING

    async def snapshot(self, instance, image_id, progress=None):
        """Upload an empty qcow2 the size of the flavor's root disk: a real, bootable-shaped image."""
        guest = self._guest(instance)
        if self.images is None:
            raise BuildFailure(f"Host {self.host} has no image service to upload snapshots to")
        size_gb = max(1, int((instance.get("flavor") or {}).get("root_gb") or 0))
        formats = [{"op": "replace", "path": "/disk_format", "value": "qcow2"},
                   {"op": "replace", "path": "/container_format", "value": "bare"}]
        response = await self.images.request(
            "PATCH", f"/v2/images/{image_id}", json=formats,
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
        if response.status_code != 200:
            raise BuildFailure(f"Snapshot image {image_id} could not be described: {response.status_code}")
        if progress is not None:
            await progress("image_uploading")
        response = await self.images.put(f"/v2/images/{image_id}/file", content=qcow2.empty_image(size_gb << 30),
                                         headers={"Content-Type": "application/octet-stream"})
        if response.status_code != 204:
            raise BuildFailure(f"Upload of snapshot {image_id} failed: {response.status_code} {response.text[:200]}")
        guest.log(f"Snapshot to image {image_id}")

    async def get_console_output(self, instance):
        return "\n".join(self._guest(instance).console) + "\n"

    async def get_vnc_console(self, instance):
        self._guest(instance)  # only a running guest has a console
        host, port = await fake_vnc.address()
        return {"host": host, "port": port}

    async def get_power_state(self, instance):
        guest = self.guests.get(instance["uuid"])
        return guest.power_state if guest else driver.NOSTATE

    def list_instance_uuids(self):
        return list(self.guests)

    # ------------------------------------------------------------ resize and cold migration

    async def migrate_disk_and_power_off(self, instance, dest_host, flavor):
        guest = self._guest(instance)
        if (flavor.get("root_gb") or 0) < (guest.flavor.get("root_gb") or 0):
            raise ResizeError("Unable to resize disk down.")
        if guest.power_state != driver.SHUTDOWN:
            guest.log("Power down.")
            guest.power_state = driver.SHUTDOWN
        # The domain goes; its disks stay here (as <uuid>_resize on libvirt) until confirm or revert.
        self.resize_sources[guest.uuid] = self.guests.pop(guest.uuid)
        disks = [{"name": "disk", "format": "qcow2", "virtual_size": (guest.flavor.get("root_gb") or 0) << 30}]
        return {"source_host": self.host, "disks": disks, "guest": guest.to_dict()}

    def _reconnect(self, guest: _Guest, block_device_info: list[dict] | None) -> None:
        """A moved guest's volumes, as this host is connected to them now (recorded on the volume's device)."""
        for bdm in block_device_info or []:
            for device, volume in guest.volumes.items():
                if volume["volume_id"] == bdm["volume_id"]:
                    volume["connection_info"] = copy.deepcopy(bdm["connection_info"])
                    guest.log(f"{device}: volume {bdm['volume_id']} connected on {self.host} "
                              f"({(bdm['connection_info'] or {}).get('driver_volume_type')})")

    async def finish_migration(self, instance, disk_info, network_info, image_meta, resize_instance, power_on,
                               block_device_info=None):
        if "guest" not in disk_info:
            raise MigrationError(f"The disks of instance {instance['uuid']} did not come with disk_info")
        guest = _Guest.from_dict(disk_info["guest"])
        guest.flavor = _flavor_of(instance)
        self._reconnect(guest, block_device_info)
        if resize_instance:
            guest.log(f"Root disk grown to {guest.flavor.get('root_gb')} GB on {self.host}")
        self.guests[guest.uuid] = guest
        if power_on:
            self._boot(guest, f"booting {guest.name} from image {guest.image_id} after a move from "
                              f"{disk_info.get('source_host')}", network_info)
        else:
            guest.power_state = driver.SHUTDOWN

    async def confirm_migration(self, instance):
        self.resize_sources.pop(instance["uuid"], None)
        self.confirmed_resizes.add(instance["uuid"])

    async def finish_revert_migration(self, instance, network_info, power_on, block_device_info=None):
        guest = self.resize_sources.pop(instance["uuid"], None)
        if guest is None and instance["uuid"] in self.guests:  # the move failed before the guest left: it is here
            guest = self.guests[instance["uuid"]]
            if power_on and guest.power_state != driver.RUNNING:
                self._boot(guest, f"booting {guest.name} from image {guest.image_id} (move failed)", network_info)
            return
        if guest is None and instance["uuid"] in self.confirmed_resizes:
            raise MigrationError(f"Host {self.host} kept no copy of instance {instance['uuid']} to revert to")
        if guest is None:
            # Kept in memory only, the copy went with a restart of this agent (a hypervisor's disks would
            # still be there): made again, as the agent's start-up does for its other simulated guests.
            guest = _Guest(instance)
        guest.flavor = _flavor_of(instance)
        self._reconnect(guest, block_device_info)
        self.guests[guest.uuid] = guest
        if power_on:
            self._boot(guest, f"booting {guest.name} from image {guest.image_id} (resize reverted)", network_info)

    # ------------------------------------------------------------ rebuild, rescue and the guest's agent

    async def rebuild(self, instance, image_meta, network_info, admin_password=None):
        guest = self._guest(instance)
        if guest.power_state != driver.SHUTDOWN:
            guest.log("Power down.")
        guest.image_id = image_meta.get("id")
        guest.name = instance.get("hostname") or guest.name
        guest.flavor = _flavor_of(instance)
        if admin_password:
            guest.admin_password = admin_password
        self._boot(guest, f"rebuilding {guest.name} from image {guest.image_id}", network_info)

    async def rescue(self, instance, rescue_image_meta, network_info, admin_password):
        guest = self._guest(instance)
        if guest.rescue is not None:
            raise BuildFailure(f"Instance {guest.uuid} is already in rescue mode")
        guest.rescue = {"image": rescue_image_meta.get("id"), "power_state": guest.power_state}
        if admin_password:
            guest.admin_password = admin_password
        if guest.power_state != driver.SHUTDOWN:
            guest.log("Power down.")
        self._boot(guest, f"booting {guest.name} in rescue mode from image {rescue_image_meta.get('id')}, "
                          f"its own disk (image {guest.image_id}) attached second", network_info)

    async def unrescue(self, instance):
        guest = self._guest(instance)
        if guest.rescue is None:
            raise BuildFailure(f"Instance {guest.uuid} is not in rescue mode")
        guest.rescue = None
        guest.log("Power down.")
        self._boot(guest, f"booting {guest.name} from image {guest.image_id} (rescue ended)")

    async def set_admin_password(self, instance, new_pass):
        guest = self._guest(instance)
        if guest.power_state != driver.RUNNING:
            raise InstancePasswordSetFailed(guest.uuid, "the instance is not running")
        guest.admin_password = new_pass
        guest.log("guest agent: password of the administrator account changed")

    async def trigger_crash_dump(self, instance):
        guest = self._guest(instance)
        if guest.power_state not in (driver.RUNNING, driver.PAUSED):
            raise InstanceNotRunning(f"Instance {guest.uuid} is not running.")
        guest.log("NMI received for unknown reason 3c on CPU 0 (kernel: crash dump requested)")

    async def inject_network_info(self, instance, network_info):
        guest = self._guest(instance)
        guest.nics = [{"mac_address": vif.get("mac_address"),
                       "ips": [ip["ip_address"] for ip in vif.get("fixed_ips", [])]} for vif in network_info]
        guest.log(f"network configuration injected: {sum(len(n['ips']) for n in guest.nics)} address(es)")

    supports_attach_interface = True

    async def attach_interface(self, instance, vif):
        guest = self._guest(instance)
        ips = [ip["ip_address"] for ip in vif.get("fixed_ips", [])]
        guest.nics.append({"mac_address": vif.get("mac_address"), "ips": ips})
        name = f"eth{len(guest.nics) - 1}"
        guest.log(f"{name}: port {vif['port_id']} hot-plugged (mac {vif.get('mac_address')})")
        for ip in ips:
            guest.log(f"{name}: leased {ip} (mac {vif.get('mac_address')})")

    async def detach_interface(self, instance, vif):
        guest = self._guest(instance)
        guest.nics = [nic for nic in guest.nics if nic["mac_address"] != vif.get("mac_address")]
        guest.log(f"port {vif['port_id']} unplugged (mac {vif.get('mac_address')})")

    supports_volumes = True

    async def attach_volume(self, instance, connection_info, device):
        guest = self._guest(instance)
        if device in guest.volumes:
            device = next(f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{c}" not in guest.volumes)
        volume_id = connection_info.get("serial")
        guest.volumes[device] = {"volume_id": volume_id, "connection_info": copy.deepcopy(connection_info)}
        guest.log(f"{device}: volume {volume_id} attached")
        return device

    async def detach_volume(self, instance, connection_info, device):
        guest = self._guest(instance)
        gone = guest.volumes.pop(device, None)
        if gone is not None:
            guest.log(f"{device}: volume {gone['volume_id']} detached")

    async def extend_volume(self, instance, connection_info, new_size, device):
        guest = self._guest(instance)
        data = connection_info.get("data") or {}
        if connection_info.get("driver_volume_type") == "local" and data.get("format") == "qcow2":
            # An attached qcow2 file is the hypervisor's to grow (qemu-img here: no QEMU holds it).
            result = await asyncio.to_thread(subprocess.run, ["qemu-img", "resize", "-q", "-f", "qcow2",
                                                              data["device_path"], str(new_size)],
                                             capture_output=True, text=True)
            if result.returncode != 0:
                raise BuildFailure(f"qemu-img resize failed: {result.stderr.strip()}")
        guest.log(f"{device}: volume {connection_info.get('serial')} extended to {new_size // 1024 ** 3} GiB")

    async def volume_snapshot_create(self, instance, volume_id, create_info):
        guest = self._guest(instance)
        device = next((d for d, v in guest.volumes.items() if v["volume_id"] == volume_id), None)
        if device is None:
            raise BuildFailure(f"Volume {volume_id} is not a disk of {instance['uuid']}")
        self.assisted_snapshots.append({"op": "create", "instance": instance["uuid"], "volume_id": volume_id,
                                        **create_info})
        active = _qcow2_file(guest.volumes[device])
        if active is not None:   # the disk is the new overlay from now on, as a hypervisor's would be
            guest.volumes[device]["connection_info"]["data"]["device_path"] = str(active.parent /
                                                                               create_info["new_file"])
        guest.log(f"{device}: volume {volume_id} snapshot {create_info['snapshot_id']}: disk switched to "
                  f"{create_info['new_file']}")

    async def volume_snapshot_delete(self, instance, volume_id, snapshot_id, delete_info):
        guest = self._guest(instance)
        device = next((d for d, v in guest.volumes.items() if v["volume_id"] == volume_id), None)
        if device is None:
            raise BuildFailure(f"Volume {volume_id} is not a disk of {instance['uuid']}")
        self.assisted_snapshots.append({"op": "delete", "instance": instance["uuid"], "volume_id": volume_id,
                                        "snapshot_id": snapshot_id, **delete_info})
        active = _qcow2_file(guest.volumes[device])
        if active is not None:
            await asyncio.to_thread(_merge, active, delete_info.get("file_to_merge"),
                                    delete_info.get("merge_target_file"))
        guest.log(f"{device}: volume {volume_id} snapshot {snapshot_id}: {delete_info.get('file_to_merge')} "
                  f"merged into {delete_info.get('merge_target_file') or 'the active file'}")

    async def swap_volume(self, instance, old_connection_info, new_connection_info, device):
        guest = self._guest(instance)
        volume_id = new_connection_info.get("serial")
        guest.volumes[device] = {"volume_id": volume_id, "connection_info": copy.deepcopy(new_connection_info)}
        guest.log(f"{device}: swapped to volume {volume_id}")

    async def get_diagnostics(self, instance):
        """Upstream's 2.48 shape; the counters grow with the guest's uptime (``driver`` is one of upstream's
        HypervisorDriver values, none of which is "fake": upstream's fake driver says libvirt too)."""
        guest = self._guest(instance)
        running = guest.power_state in (driver.RUNNING, driver.PAUSED)
        uptime = int(time.time() - guest.booted_at) if running else 0
        vcpus = guest.flavor.get("vcpus") or 1
        memory = guest.flavor.get("memory_mb") or 0
        disks = [guest.flavor.get("root_gb")] + [guest.flavor.get(k) for k in ("ephemeral_gb", "swap") if
                                                 guest.flavor.get(k)] + ([1] if guest.config_drive else [])
        return {
            "state": STATE_NAMES.get(guest.power_state, "pending"), "driver": "libvirt", "hypervisor": "fake",
            "hypervisor_os": "kilonova-fake", "uptime": uptime, "config_drive": guest.config_drive,
            "num_cpus": vcpus, "num_nics": len(guest.nics), "num_disks": len(disks),
            "memory_details": {"maximum": memory, "used": min(memory, 32 + memory // 4) if running else 0},
            "cpu_details": [{"id": i, "time": uptime * 10_000_000 * (i + 1), "utilisation": 1 if running else 0}
                            for i in range(vcpus)],
            "nic_details": [{"mac_address": nic["mac_address"], "rx_octets": 1500 * uptime, "rx_errors": 0,
                             "rx_drop": 0, "rx_packets": 10 * uptime, "rx_rate": None,
                             "tx_octets": 700 * uptime, "tx_errors": 0, "tx_drop": 0, "tx_packets": 5 * uptime,
                             "tx_rate": None} for nic in guest.nics],
            "disk_details": [{"read_bytes": 4096 * uptime, "read_requests": uptime, "write_bytes": 512 * uptime,
                              "write_requests": uptime // 2, "errors_count": 0} for _ in disks],
        }

    # ------------------------------------------------------------ live migration

    async def check_can_live_migrate_destination(self, instance, block_migration):
        if instance["uuid"] in self.guests:
            raise driver.MigrationPreCheckError(f"Instance {instance['uuid']} already runs on {self.host}")
        # Fake hosts share no storage: "auto" means a block migration.
        return {"block_migration": True if block_migration is None else bool(block_migration),
                "dest_host": self.host}

    async def check_can_live_migrate_source(self, instance, migrate_data):
        guest = self._guest(instance)
        if guest.power_state not in (driver.RUNNING, driver.PAUSED):
            raise driver.MigrationPreCheckError(f"Instance {guest.uuid} is not running on {self.host}")
        return {**migrate_data, "source_host": self.host, "guest": guest.to_dict()}

    async def pre_live_migration(self, instance, network_info, migrate_data):
        uuid = instance["uuid"]
        if uuid in self.guests:
            raise MigrationError(f"Instance {uuid} already runs on {self.host}")
        # The guest's state comes with migrate_data when the source's check added it; else from the database.
        if migrate_data.get("guest"):
            guest = _Guest.from_dict(migrate_data["guest"])
        else:
            guest = _Guest(instance)
            guest.power_state = driver.PAUSED if instance.get("vm_state") == "paused" else driver.RUNNING
        guest.flavor = _flavor_of(instance)
        guest.nics = [{"mac_address": vif.get("mac_address"),
                       "ips": [ip["ip_address"] for ip in vif.get("fixed_ips", [])]} for vif in network_info]
        guest.log(f"incoming live migration from {migrate_data.get('source_host') or 'another host'} on {self.host}")
        self.incoming[uuid] = guest
        return {**migrate_data, "dest_host": self.host, "block_migration": bool(migrate_data.get("block_migration"))}

    async def live_migration(self, instance, dest_host, migrate_data, progress=None):
        guest = self._guest(instance)
        if dest_host == self.host:
            raise MigrationError(f"Instance {guest.uuid} cannot be live-migrated to its own host {self.host}")
        if guest.uuid in self.migrations:
            raise MigrationError(f"Instance {guest.uuid} is already being live-migrated")
        job = self.migrations[guest.uuid] = _LiveMigration(dest_host)
        memory_total = (guest.flavor.get("memory_mb") or 0) << 20
        disk_total = ((guest.flavor.get("root_gb") or 0) + (guest.flavor.get("ephemeral_gb") or 0)) << 30 \
            if migrate_data.get("block_migration") else 0
        previous_state = guest.power_state
        guest.log(f"live migration to {dest_host} started")
        try:
            for step in range(1, LIVE_MIGRATION_STEPS + 1):
                if not job.force:
                    await asyncio.sleep(self.live_migration_delay / LIVE_MIGRATION_STEPS)
                if job.abort:
                    raise LiveMigrationAborted(f"Live migration of instance {guest.uuid} to {dest_host} was "
                                               f"aborted")
                done = 1.0 if job.force else step / LIVE_MIGRATION_STEPS
                await self._report(progress, memory_total, int(memory_total * done), disk_total,
                                   int(disk_total * done))
                if job.force:
                    break
        except BaseException:
            if job.paused_by_force:
                guest.power_state = previous_state
            guest.log(f"live migration to {dest_host} cancelled: still running on {self.host}")
            raise
        finally:
            self.migrations.pop(guest.uuid, None)
        # The guest now runs on the destination; this host keeps its leftovers until post_live_migration.
        guest.log(f"live migration to {dest_host} completed")
        guest.power_state = previous_state
        self.departed[guest.uuid] = self.guests.pop(guest.uuid)

    @staticmethod
    async def _report(progress, memory_total, memory_done, disk_total, disk_done) -> None:
        if progress is None:
            return
        try:
            await progress({"memory_total_bytes": memory_total, "memory_processed_bytes": memory_done,
                            "memory_remaining_bytes": memory_total - memory_done,
                            "disk_total_bytes": disk_total, "disk_processed_bytes": disk_done,
                            "disk_remaining_bytes": disk_total - disk_done})
        except Exception:  # noqa: BLE001 - a lost progress report must not fail the migration
            LOG.warning("live migration progress could not be reported", exc_info=True)

    def _running_migration(self, instance: dict) -> _LiveMigration:
        job = self.migrations.get(instance["uuid"])
        if job is None:
            raise NoActiveMigration(f"No live migration of instance {instance['uuid']} is running on {self.host}")
        return job

    async def live_migration_force_complete(self, instance):
        job = self._running_migration(instance)
        guest = self._guest(instance)
        if guest.power_state == driver.RUNNING:  # as upstream: pause so the last dirty pages get copied
            guest.power_state = driver.PAUSED
            job.paused_by_force = True
            guest.log("paused to complete the live migration")
        job.force = True

    async def live_migration_abort(self, instance):
        self._running_migration(instance).abort = True

    async def post_live_migration_at_source(self, instance, network_info):
        self.departed.pop(instance["uuid"], None)

    async def post_live_migration_at_destination(self, instance, network_info):
        uuid = instance["uuid"]
        guest = self.incoming.pop(uuid, None)
        if guest is None:
            raise MigrationError(f"No live migration of instance {uuid} to {self.host} was prepared")
        # It runs on as it ran on the source before the migration (a force-complete's pause ends here).
        guest.flavor = _flavor_of(instance)
        guest.log(f"live migration completed: running on {self.host}")
        self.guests[uuid] = guest

    async def rollback_live_migration_at_destination(self, instance, network_info):
        self.incoming.pop(instance["uuid"], None)

    def get_available_resource(self) -> dict[str, Any]:
        return {
            "vcpus": self.vcpus, "memory_mb": self.memory_mb, "local_gb": self.disk_gb,
            "hypervisor_type": "fake", "hypervisor_version": 1000, "host_ip": "127.0.0.1",
            "cpu_info": json.dumps({"arch": "x86_64", "model": "fake", "vendor": "kilonova",
                                    "topology": {"sockets": 1, "cores": self.vcpus, "threads": 1},
                                    "features": [],
                                    "supported_instances": [["x86_64", "fake", "hvm"], ["i686", "fake", "hvm"]]}),
            **self.topology_report(),
        }

    def topology_report(self) -> dict[str, Any]:
        """This host's NUMA cells and free PCI devices with its guests placed (none configured: nothing)."""
        if not self.numa_cells and not self.pci_pools:
            return {}
        return fake_topology.report(self.conf, self.numa_cells, self.pci_pools,
                                    [g.flavor for g in self.guests.values()])

    def get_traits(self) -> list[str]:
        # The image types a fake host "runs" (for [scheduler] query_placement_for_image_type_support).
        return ["COMPUTE_NODE", "COMPUTE_NET_ATTACH_INTERFACE", "HW_CPU_X86_SSE2", "COMPUTE_IMAGE_TYPE_RAW",
                "COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_IMAGE_TYPE_ISO", "COMPUTE_IMAGE_TYPE_AMI",
                "COMPUTE_IMAGE_TYPE_AKI", "COMPUTE_IMAGE_TYPE_ARI"]

    # The host calls answer as upstream's fake driver does; its uptime (which upstream's fake leaves out, a 501)
    # is the machine's its fake hosts run on, as a libvirt host answers its own.
    async def get_host_uptime(self) -> str:
        return await driver.uptime_line()

    async def set_host_enabled(self, enabled: bool) -> str:
        return "enabled" if enabled else "disabled"

    async def host_maintenance_mode(self, host: str, mode: bool) -> str:
        return "on_maintenance" if mode else "off_maintenance"

    async def host_power_action(self, action: str) -> str:
        return action


def _qcow2_file(volume: dict) -> Path | None:
    """The qcow2 file a guest's volume disk is, when it is one on this machine (its chain the host's to change)."""
    info = volume.get("connection_info") or {}
    data = info.get("data") or {}
    if info.get("driver_volume_type") == "local" and data.get("format") == "qcow2" and data.get("device_path"):
        return Path(data["device_path"])
    return None


def _merge(active: Path, file_to_merge: str | None, merge_target: str | None) -> None:
    """What libvirt's block rebase or commit does to the files of a qcow2 chain (no QEMU holds them here): with
    no target the active file pulls in what lies above ``file_to_merge`` (its new backing file, or none); else
    ``file_to_merge`` is committed into ``merge_target`` and the file above it is rebased onto that."""
    def qemu_img(*args: str) -> None:
        result = subprocess.run(["qemu-img", *args], capture_output=True, text=True, cwd=active.parent)
        if result.returncode != 0:
            raise BuildFailure(f"qemu-img {args[0]} failed: {result.stderr.strip()[-300:]}")

    if merge_target is None:
        qemu_img("rebase", "-q", "-f", "qcow2", "-b", file_to_merge or "", *(["-F", "qcow2"] if file_to_merge
                                                                                else []), active.name)
        return
    above, current = None, active.name
    while current and current != file_to_merge:   # the file whose backing file is the one merged away
        shown = subprocess.run(["qemu-img", "info", "-f", "qcow2", "--output", "json", current], capture_output=True,
                               text=True, cwd=active.parent)
        below = json.loads(shown.stdout).get("backing-filename") if shown.returncode == 0 else None
        above, current = current, below
    qemu_img("commit", "-q", "-f", "qcow2", "-d", file_to_merge)
    if above is not None and current == file_to_merge:
        qemu_img("rebase", "-u", "-f", "qcow2", "-b", merge_target, "-F", "qcow2", above)
