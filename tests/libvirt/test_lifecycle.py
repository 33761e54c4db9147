"""The libvirt driver's lifecycle operations on a real guest, driven as the compute agents drive them.

Two compute hosts on this machine, each a LibvirtDriver with its own ``[libvirt] instances_path`` (and
image cache), on the system libvirtd; the guest is hostsetup's tiny one, without a network port (it boots
in seconds). One guest goes through every operation in turn, each test starting where the previous one
left it: resize A -> B and revert, cold migration A -> B and confirm, rebuild, rescue and unrescue, NMI,
diagnostics, admin password. What is checked is what a user would see: the guest's own console lines (its
CPUs and memory, its disks' sizes, the note its disk keeps across boots, the kernel command line of the
image it booted), the domain XML, and the files left on each host.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import (InstanceAgentNotEnabled, MigrationError, MigrationPreCheckError,
                                          ResizeError)
from kilonova.config import Config
from tests.libvirt import hostsetup
from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_image_cache import FakeImages

libvirt = pytest.importorskip("libvirt")

UUID = "6f1d7c1e-2b7a-4c57-9d0e-000000000c01"
SMALL = {"id": "f1", "name": "real.small", "vcpus": 1, "memory_mb": 128, "root_gb": 1, "ephemeral_gb": 0,
         "swap": 0, "extra_specs": {}}
LARGE = {"id": "f2", "name": "real.large", "vcpus": 2, "memory_mb": 192, "root_gb": 2, "ephemeral_gb": 0,
         "swap": 0, "extra_specs": {}}
SECTORS_PER_GB = 2 * 1024 * 1024


def run(coroutine):
    return asyncio.run(coroutine)


class Host:
    """One compute host: a driver with its own instances path and image cache."""

    def __init__(self, name: str, root: Path, images: FakeImages):
        from kilonova.compute.virt.libvirt.driver import LibvirtDriver

        conf = Config.load(state_dir=root / name, overrides={"libvirt": {
            "instances_path": str(root / name / "instances"), "shutdown_timeout": "15",
            "image_cache_manager_interval": "0"}, "vnc": {"enabled": "false"}})
        self.name = name
        self.images = images
        self.driver = LibvirtDriver(name, conf, images.client())
        run(self.driver.init_host())
        self.path = self.driver.instances_path

    def console(self, instance: dict) -> str:
        return run(self.driver.get_console_output(instance))

    def wait_ready(self, instance: dict, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        log = ""
        while time.monotonic() < deadline:
            log = self.console(instance)
            if f"{MARKER} ready" in log:
                return log
            time.sleep(0.3)
        raise AssertionError(f"the guest never became ready on {self.name}:\n{log}")

    def xml(self, instance: dict) -> ET.Element:
        return ET.fromstring(self.driver._domain(instance).XMLDesc(0))


def markers(log: str, label: str) -> list[str]:
    prefix = f"{MARKER} {label} "
    return [line.split(prefix, 1)[1].strip() for line in log.splitlines() if prefix in line]


def hardware(log: str) -> dict[str, int]:
    [line] = markers(log, "hardware")
    return {key: int(value) for key, value in (field.split("=") for field in line.split())}


def disks(log: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1].split("=")[1]) for line in markers(log, "disk")}


def add_image(images: FakeImages, image_id: str, data: bytes, disk_format: str, **extra) -> None:
    images.add(image_id, data, disk_format, **extra)
    images.images[image_id].setdefault("container_format", "bare")


@pytest.fixture(scope="module")
def hosts():
    try:
        guest = hostsetup.prepare()
    except hostsetup.HostSetupError as exc:
        pytest.skip(f"cannot run real guests here: {exc}")
    images = FakeImages()
    add_image(images, "kernel", guest.kernel.read_bytes(), "aki")
    add_image(images, "ramdisk", guest.initrd.read_bytes(), "ari")
    boot = {"kernel_id": "kernel", "ramdisk_id": "ramdisk"}
    root = guest.root.read_bytes()
    add_image(images, "image-a", root, "qcow2", os_command_line=f"{guest.cmdline} kilonova-image=a", **boot)
    add_image(images, "image-b", root, "qcow2", os_command_line=f"{guest.cmdline} kilonova-image=b",
              hw_qemu_guest_agent="yes", **boot)
    add_image(images, "rescue", root, "qcow2", os_command_line=f"{guest.cmdline} kilonova-rescue", **boot)
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-lifecycle-"))
    os.chmod(workdir, 0o755)  # QEMU runs as libvirt-qemu and must reach the disks
    made = [Host("host-a", workdir, images), Host("host-b", workdir, images)]
    yield made
    for host in made:
        with_domain = host.driver._lookup(UUID)
        if with_domain is not None and host.path.as_posix() in with_domain.XMLDesc(0):
            run(host.driver.destroy({"uuid": UUID}))
    shutil.rmtree(workdir, ignore_errors=True)


def instance(flavor: dict, image: str = "image-a", **extra) -> dict:
    return {"uuid": UUID, "hostname": "lifecycle-vm", "display_name": "lifecycle-vm", "flavor": dict(flavor),
            "image_ref": image, "config_drive": True, "project_id": "p", "user_id": "u", "metadata": {},
            "launched_at": "2026-01-01T00:00:00Z", **extra}


def test_boot_on_host_a(hosts):
    a, _ = hosts
    run(a.driver.spawn(instance(SMALL), {"id": "image-a"}, []))
    log = a.wait_ready(instance(SMALL))
    assert hardware(log)["cpus"] == 1 and 90_000 < hardware(log)["memtotal-kb"] < 128 * 1024
    assert disks(log)["vda"] == SECTORS_PER_GB


def test_resize_to_host_b_and_revert(hosts):
    a, b = hosts
    with pytest.raises(ResizeError, match="Unable to resize disk down."):
        run(a.driver.migrate_disk_and_power_off(instance(LARGE), "host-b", SMALL))
    disk_info = json.loads(json.dumps(run(a.driver.migrate_disk_and_power_off(instance(SMALL), "host-b", LARGE))))
    assert a.driver._lookup(UUID) is None  # the source's domain is gone, its disks kept aside
    assert not (a.path / UUID).exists() and (a.path / f"{UUID}_resize" / "disk").exists()

    resized = instance(LARGE, old_flavor=SMALL, new_flavor=LARGE)
    run(b.driver.finish_migration(resized, disk_info, [], {"id": "image-a"}, resize_instance=True, power_on=True))
    xml = b.xml(resized)
    assert xml.findtext("vcpu") == "2" and int(xml.findtext("memory")) == 192 * 1024  # KiB in libvirt's XML
    assert all(str(b.path) in d.find("source").get("file") for d in xml.findall("devices/disk"))
    log = b.wait_ready(resized)
    assert hardware(log)["cpus"] == 2 and 150_000 < hardware(log)["memtotal-kb"] < 192 * 1024
    assert disks(log)["vda"] == 2 * SECTORS_PER_GB  # the root disk grew with the flavor
    assert markers(log, "disk-note") == ["acpi"]  # the same disk: its note says it was shut down cleanly
    assert markers(log, "config-drive")  # the config drive was made again here

    run(b.driver.destroy(resized))  # the agent's revert: the destination's guest goes first
    assert not (b.path / UUID).exists()
    run(a.driver.finish_revert_migration(instance(SMALL), [], power_on=True))
    log = a.wait_ready(instance(SMALL))
    assert hardware(log)["cpus"] == 1 and disks(log)["vda"] == SECTORS_PER_GB
    assert a.xml(instance(SMALL)).findtext("vcpu") == "1"
    assert not (a.path / f"{UUID}_resize").exists()


def test_cold_migration_to_host_b_and_confirm(hosts):
    a, b = hosts
    disk_info = run(a.driver.migrate_disk_and_power_off(instance(SMALL), "host-b", SMALL))
    unreachable = {**disk_info, "source_dir": "/nonexistent/host-a/instances/x_resize"}
    with pytest.raises(MigrationError, match="cannot read the disks .* shared storage"):
        run(b.driver.finish_migration(instance(SMALL), unreachable, [], {}, False, True))
    run(b.driver.finish_migration(instance(SMALL), disk_info, [], {"id": "image-a"}, False, power_on=True))
    log = b.wait_ready(instance(SMALL))
    assert hardware(log)["cpus"] == 1 and disks(log)["vda"] == SECTORS_PER_GB
    base = b.path / "_base" / hashlib.sha1(b"image-a").hexdigest()
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output", "json", str(b.path / UUID / "disk")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == str(base)  # on host B's own copy of the image, not host A's
    run(a.driver.confirm_migration(instance(SMALL)))
    assert not (a.path / f"{UUID}_resize").exists() and not (a.path / UUID).exists()
    with pytest.raises(InstanceAgentNotEnabled, match="QEMU guest agent is not enabled"):  # image-a has none
        run(b.driver.set_admin_password(instance(SMALL), "new-pass"))


def test_rebuild_from_another_image(hosts):
    _, b = hosts
    rebuilt = instance(SMALL, image="image-b")
    run(b.driver.rebuild(rebuilt, {"id": "image-b"}, [], admin_password="rebuilt-pass"))
    log = b.wait_ready(rebuilt)
    assert "kilonova-image=b" in markers(log, "cmdline")[0]
    assert markers(log, "disk-note") == ["empty"]  # a new root disk
    assert '"admin_pass": "rebuilt-pass"' in markers(log, "meta_data")[0]  # the config drive was remade


def test_rescue_and_unrescue(hosts):
    _, b = hosts
    guest = instance(SMALL, image="image-b")
    run(b.driver.rescue(guest, {"id": "rescue"}, [], "rescue-pass"))
    log = b.wait_ready(guest)
    assert "kilonova-rescue" in markers(log, "cmdline")[0]
    sizes = disks(log)
    assert sizes["vda"] == 64 * 2048 and sizes["vdb"] == SECTORS_PER_GB  # rescue disk, then the own root
    assert [d.find("target").get("dev") for d in b.xml(guest).findall("devices/disk")] == ["vda", "vdb", "vdc"]
    run(b.driver.unrescue(guest))
    log = b.wait_ready(guest)
    assert "kilonova-image=b" in markers(log, "cmdline")[0] and disks(log)["vda"] == SECTORS_PER_GB
    assert not list((b.path / UUID).glob("*rescue*"))


def test_crash_dump_diagnostics_and_admin_password(hosts):
    _, b = hosts
    guest = instance(SMALL, image="image-b")
    run(b.driver.trigger_crash_dump(guest))
    deadline = time.monotonic() + 30
    while "NMI received" not in b.console(guest) and time.monotonic() < deadline:
        time.sleep(0.3)  # (the kernel's line may be read half-written: wait for the whole words)
    assert "NMI received" in b.console(guest)
    diagnostics = run(b.driver.get_diagnostics(guest))
    assert diagnostics["state"] == "running" and diagnostics["driver"] == "libvirt"
    assert diagnostics["num_cpus"] == 1 and diagnostics["memory_details"]["maximum"] == 128
    assert diagnostics["num_disks"] == 2 and diagnostics["config_drive"] is True  # root + config drive
    assert diagnostics["disk_details"][0]["read_bytes"] > 0 and diagnostics["cpu_details"][0]["time"] > 0
    assert diagnostics["uptime"] > 0
    # Both hosts here share the system libvirtd: a live migration between them is refused up front.
    a = hosts[0]
    data = run(a.driver.check_can_live_migrate_destination(guest, None))
    with pytest.raises(MigrationPreCheckError, match="share one libvirt daemon"):
        run(b.driver.check_can_live_migrate_source(guest, data))
    # image-b says it has a guest agent: the domain gets its channel, but nothing answers in this guest
    # (upstream answers 501 for that, through NotImplementedError).
    channel = b.xml(guest).find("devices/channel/target[@name='org.qemu.guest_agent.0']")
    assert channel is not None
    with pytest.raises(NotImplementedError, match="QEMU guest agent does not answer"):
        run(b.driver.set_admin_password(guest, "new-pass"))


def test_resize_on_the_same_host_revert_then_confirm(hosts):
    """allow_resize_to_same_host: source and destination are one driver, the kept copy sits beside the new."""
    _, b = hosts
    guest = instance(SMALL, image="image-b")
    resized = instance(LARGE, image="image-b")
    # The image is gone from the image service (as an unshelved server's snapshot is): the resized root disk
    # is a flattened copy instead of an overlay on the cached base.
    b.images.images.pop("image-b")
    # A move that failed once the guest was stopped, before its disks were set aside: revert starts it here.
    run(b.driver.power_off(guest))
    run(b.driver.finish_revert_migration(guest, [], power_on=True))
    assert run(b.driver.get_power_state(guest)) == power.RUNNING
    b.wait_ready(guest)
    disk_info = run(b.driver.migrate_disk_and_power_off(guest, "host-b", LARGE))
    run(b.driver.finish_migration(resized, disk_info, [], {"id": "image-b"}, True, True))
    log = b.wait_ready(resized)
    assert hardware(log)["cpus"] == 2 and disks(log)["vda"] == 2 * SECTORS_PER_GB
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output", "json", str(b.path / UUID / "disk")],
                                     capture_output=True, text=True, check=True).stdout)
    assert "backing-filename" not in info
    run(b.driver.destroy(resized))
    run(b.driver.finish_revert_migration(guest, [], power_on=True))
    log = b.wait_ready(guest)
    assert hardware(log)["cpus"] == 1 and disks(log)["vda"] == SECTORS_PER_GB
    disk_info = run(b.driver.migrate_disk_and_power_off(guest, "host-b", LARGE))
    run(b.driver.finish_migration(resized, disk_info, [], {"id": "image-b"}, True, power_on=False))
    assert run(b.driver.get_power_state(resized)) == power.SHUTDOWN  # a stopped server stays stopped
    run(b.driver.confirm_migration(guest))
    assert not (b.path / f"{UUID}_resize").exists()
    run(b.driver.power_on(resized))
    log = b.wait_ready(resized)
    assert hardware(log)["cpus"] == 2
    run(b.driver.destroy(resized))
    assert not (b.path / UUID).exists() and b.driver._lookup(UUID) is None
