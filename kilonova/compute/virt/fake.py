"""A simulated hypervisor: many of them run in one process, one per fake host.

Spawning takes ``[fake_driver] spawn_delay`` seconds (destroying ``destroy_delay``) and fails on the hosts
listed in ``[fake_driver] fail_spawn_hosts`` (failure injection for tests).
Guests keep a power state and a console log, nothing else.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from kilonova.compute.virt import driver, fake_vnc
from kilonova.compute.virt.driver import BuildFailure, ComputeDriver
from kilonova.image import qcow2


class _Guest:
    def __init__(self, instance: dict):
        self.uuid = instance["uuid"]
        self.name = instance.get("hostname") or instance["uuid"]
        self.power_state = driver.NOSTATE
        self.console: list[str] = []

    def log(self, line: str) -> None:
        stamp = datetime.utcnow().strftime("%H:%M:%S")
        self.console.append(f"[{stamp}] {line}")


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
        self.failing = host in conf.getlist("fake_driver", "fail_spawn_hosts")
        self.guests: dict[str, _Guest] = {}

    def _guest(self, instance: dict) -> _Guest:
        guest = self.guests.get(instance["uuid"])
        if guest is None:
            raise BuildFailure(f"Instance {instance['uuid']} is not running on {self.host}")
        return guest

    async def spawn(self, instance, image_meta, network_info):
        if self.spawn_delay:
            await asyncio.sleep(self.spawn_delay)
        if self.failing:
            raise BuildFailure(f"Simulated spawn failure on host {self.host}")
        guest = _Guest(instance)
        guest.log(f"Kilonova fake hypervisor {self.host}: booting {guest.name} from image {image_meta.get('id')}")
        for vif in network_info:
            for ip in vif.get("fixed_ips", []):
                guest.log(f"eth0: leased {ip['ip_address']} (mac {vif.get('mac_address')})")
        guest.log(f"{guest.name} login:")
        guest.power_state = driver.RUNNING
        self.guests[guest.uuid] = guest

    async def destroy(self, instance):
        if self.destroy_delay:
            await asyncio.sleep(self.destroy_delay)
        self.guests.pop(instance["uuid"], None)

    async def reboot(self, instance, reboot_type):
        guest = self._guest(instance)
        guest.log(f"{'Hard' if reboot_type == 'HARD' else 'Soft'} reboot requested")
        guest.log(f"{guest.name} login:")
        guest.power_state = driver.RUNNING

    async def power_off(self, instance):
        guest = self._guest(instance)
        guest.log("Power down.")
        guest.power_state = driver.SHUTDOWN

    async def power_on(self, instance):
        guest = self.guests.get(instance["uuid"]) or _Guest(instance)
        self.guests[guest.uuid] = guest
        guest.log(f"{guest.name} login:")
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

    def get_available_resource(self) -> dict[str, Any]:
        return {
            "vcpus": self.vcpus, "memory_mb": self.memory_mb, "local_gb": self.disk_gb,
            "hypervisor_type": "fake", "hypervisor_version": 1000, "host_ip": "127.0.0.1",
            "cpu_info": json.dumps({"arch": "x86_64", "model": "fake", "vendor": "kilonova",
                                    "topology": {"sockets": 1, "cores": self.vcpus, "threads": 1},
                                    "features": [],
                                    "supported_instances": [["x86_64", "fake", "hvm"], ["i686", "fake", "hvm"]]}),
        }

    def get_traits(self) -> list[str]:
        return ["COMPUTE_NODE", "COMPUTE_NET_ATTACH_INTERFACE", "HW_CPU_X86_SSE2"]
