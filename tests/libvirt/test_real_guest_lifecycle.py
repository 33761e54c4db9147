"""The server lifecycle on a real guest through `kilonova up` with the libvirt driver and the `openstack` CLI.

One compute host (``allow_resize_to_same_host``), one guest taken through resize and confirm,
rescue and unrescue, an NMI, diagnostics, shelve and unshelve, then rebuild to a second image; after each,
the guest's own console says what a user would check: its CPUs and memory, its root disk's size, the kernel
command line of the image it booted, the note its disk keeps of how its previous boot ended.
Moves between two hosts are in test_lifecycle.py and test_live_migration.py (driver level).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import console_lines, guest_disks, libvirt_cloud, upload_guest, wait_status

HOST = "kilonova-lifecycle-test"
SERVER: dict = {}  # the lifecycle test's server, which the rebuild test takes on


@pytest.fixture(scope="module")
def cloud(guest):
    with libvirt_cloud({
        "DEFAULT": {"host": HOST, "allow_resize_to_same_host": "true"},
        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
        "libvirt": {"shutdown_timeout": "20"},
    }) as instance:
        yield instance


def fresh_console(cloud, server: str, after: float, timeout: float = 150) -> str:
    """The console once the guest booted again after the monotonic time ``after`` and is ready."""
    deadline = time.monotonic() + timeout
    output = ""
    with cloud.http("compute") as api:
        while time.monotonic() < deadline:
            output = api.post(f"/servers/{server}/action", json={"os-getConsoleOutput": {}}).json().get("output", "")
            if f"{MARKER} ready" in output:
                return output
            time.sleep(0.5)
    raise AssertionError(f"the guest of {server} did not come up again:\n{output[-3000:]}")


def hardware(log: str) -> dict[str, int]:
    [line] = console_lines(log, "hardware")
    return {key: int(value) for key, value in (field.split("=") for field in line.split())}


def test_lifecycle_of_a_real_guest(cloud, guest):
    os_ = cloud.openstack
    image_a = upload_guest(cloud, guest, "lifecycle-a")
    boot = {key: image_a["properties"][key] for key in ("kernel_id", "ramdisk_id")} \
        if isinstance(image_a.get("properties"), dict) else None
    if boot is None:  # older CLIs print properties as text
        boot = dict(re.findall(r"(kernel_id|ramdisk_id)='([^']+)'", str(image_a.get("properties"))))
    extra = []
    for key, value in boot.items():
        extra += ["--property", f"{key}={value}"]
    image_b = os_("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--public",
                  "--file", str(guest.root), *extra, "--property", f"os_command_line={guest.cmdline} kilonova-image=b",
                  "lifecycle-b", fmt_json=True)
    rescue = os_("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--public",
                 "--file", str(guest.root), *extra, "--property", f"os_command_line={guest.cmdline} kilonova-rescue",
                 "lifecycle-rescue", fmt_json=True)
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "life.small")
    os_("flavor", "create", "--ram", "192", "--disk", "2", "--vcpus", "2", "life.large")
    server = os_("server", "create", "--flavor", "life.small", "--image", image_a["id"], "--network", "private",
                 "--wait", "lifecycle-vm", fmt_json=True, timeout=180)
    uuid = server["id"]
    instances = Path(cloud.state_dir, "instances")
    log = fresh_console(cloud, uuid, 0)
    assert hardware(log)["cpus"] == 1
    address = re.search(r"10\.0\.0\.\d+", json.dumps(server["addresses"])).group(0)

    # Resize on this host: the guest boots with 2 vCPUs, more memory and a 2 GB root disk; confirm drops the copy.
    os_("server", "resize", "--flavor", "life.large", "--wait", uuid, timeout=240)
    wait_status(cloud, uuid, "VERIFY_RESIZE", 120)
    log = fresh_console(cloud, uuid, 0)
    assert hardware(log)["cpus"] == 2 and hardware(log)["memtotal-kb"] > 128 * 1024
    assert guest_disks(log)["vda"]["sectors"] == str((2 << 30) // 512)
    assert console_lines(log, "disk-note")[0].startswith("acpi")  # its own disk, shut down cleanly for the move
    assert f"{MARKER} dhcp eth0 {address}/24" in log  # its port and address came along
    assert (instances / f"{uuid}_resize").is_dir()
    os_("server", "resize", "confirm", uuid)
    wait_status(cloud, uuid, "ACTIVE", 120)
    assert not (instances / f"{uuid}_resize").exists()

    # Rescue: the rescue image boots, with the guest's own 2 GB disk second; unrescue boots that disk again.
    os_("server", "rescue", "--image", rescue["id"], uuid, timeout=180)
    wait_status(cloud, uuid, "RESCUE", 150)
    log = fresh_console(cloud, uuid, 0)
    assert "kilonova-rescue" in console_lines(log, "cmdline")[0]
    assert guest_disks(log)["vdb"]["sectors"] == str((2 << 30) // 512)
    os_("server", "unrescue", uuid, timeout=180)
    wait_status(cloud, uuid, "ACTIVE", 150)
    log = fresh_console(cloud, uuid, 0)
    assert "kilonova-rescue" not in console_lines(log, "cmdline")[0]
    assert guest_disks(log)["vda"]["sectors"] == str((2 << 30) // 512)

    # An NMI (2.17) and the diagnostics (2.48).
    with cloud.http("compute") as api:
        response = api.post(f"/servers/{uuid}/action", json={"trigger_crash_dump": None},
                            headers={"X-OpenStack-Nova-API-Version": "2.17"})
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 30
        while "NMI received" not in api.post(f"/servers/{uuid}/action", json={"os-getConsoleOutput": {}}).json()[
                "output"]:
            assert time.monotonic() < deadline, "the guest never saw the NMI"
            time.sleep(0.5)
        diagnostics = api.get(f"/servers/{uuid}/diagnostics", headers={"X-OpenStack-Nova-API-Version": "2.48"})
        assert diagnostics.status_code == 200, diagnostics.text
        body = diagnostics.json()
        assert body["driver"] == "libvirt" and body["state"] == "running" and body["num_cpus"] == 2
        assert body["memory_details"]["maximum"] == 192 and body["num_nics"] == 1
        assert body["nic_details"][0]["rx_octets"] > 0  # it took its DHCP lease through that NIC

    # Shelve (a snapshot, then the guest leaves the host) and unshelve: it boots from its snapshot.
    os_("server", "shelve", uuid, timeout=180)
    wait_status(cloud, uuid, "SHELVED_OFFLOADED", 180)
    assert not (instances / uuid).exists()
    os_("server", "unshelve", uuid, timeout=180)
    wait_status(cloud, uuid, "ACTIVE", 180)
    log = fresh_console(cloud, uuid, 0)
    assert console_lines(log, "disk-note")[0].startswith("acpi")  # the disk it had, shut down for the snapshot
    assert hardware(log)["cpus"] == 2
    SERVER.update(uuid=uuid, address=address, image_b=image_b["id"])


def test_rebuild_of_a_real_guest(cloud):
    """Rebuild to the second image: a new root disk from it, the same flavor and address."""
    if "uuid" not in SERVER:
        pytest.skip("the server of the lifecycle test is not there")
    os_, uuid, address = cloud.openstack, SERVER["uuid"], SERVER["address"]
    os_("server", "rebuild", "--image", SERVER["image_b"], "--wait", uuid, timeout=240)
    log = fresh_console(cloud, uuid, 0)
    assert "kilonova-image=b" in console_lines(log, "cmdline")[0]
    assert console_lines(log, "disk-note") == ["empty"] and hardware(log)["cpus"] == 2
    assert f"{MARKER} dhcp eth0 {address}/24" in log
    os_("server", "delete", "--wait", uuid, timeout=120)
