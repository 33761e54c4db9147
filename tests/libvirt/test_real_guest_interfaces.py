"""Ports hot-plugged into a real guest (os-interface on the libvirt driver) through `kilonova up` and the
`openstack` CLI: attached to the running guest and its definition (LIVE|CONFIG), its tap on the network's
bridge; detached again; attached to a stopped guest's definition only (CONFIG), which it boots with."""
from __future__ import annotations

import subprocess

import pytest

from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import libvirt_cloud, upload_guest, wait_console, wait_status

HOST = "kilonova-hotplug-test"
VIRSH = ["virsh", "-c", "qemu:///system"]


@pytest.fixture(scope="module")
def cloud(guest):
    with libvirt_cloud({
        "DEFAULT": {"host": HOST},
        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
        "libvirt": {"shutdown_timeout": "20"},
    }) as instance:
        yield instance


def _xml(uuid: str, inactive: bool = False) -> str:
    return subprocess.run([*VIRSH, "dumpxml", *(["--inactive"] if inactive else []), f"instance-{uuid}"],
                          capture_output=True, text=True, check=True).stdout


def _master(tap: str) -> str | None:
    shown = subprocess.run(["ip", "-o", "link", "show", tap], capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    words = shown.stdout.split()
    return words[words.index("master") + 1] if "master" in words else ""


def test_hot_plug_into_a_real_guest(cloud, guest):
    os_ = cloud.openstack
    image = upload_guest(cloud, guest, "hotplug")
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.hotplug")
    os_("network", "create", "second")
    os_("subnet", "create", "--network", "second", "--subnet-range", "10.88.0.0/24", "second-subnet")
    server = os_("server", "create", "--flavor", "real.hotplug", "--image", image["id"], "--network", "private",
                 "--wait", "hot-vm", fmt_json=True, timeout=180)
    uuid = server["id"]
    wait_console(cloud, uuid, f"{MARKER} ready")

    # Running guest: attached live and to its definition, its tap on a bridge.
    port = os_("port", "create", "--network", "second", "hot-port", fmt_json=True)
    os_("server", "add", "port", uuid, port["id"])
    mac = port["mac_address"]
    assert mac in _xml(uuid) and mac in _xml(uuid, inactive=True)
    tap = f"tap{port['id'][:11]}"
    assert _master(tap), f"{tap} is not on a bridge"
    bound = os_("port", "show", port["id"], fmt_json=True)
    assert (bound["device_id"], bound["binding_host_id"], bound["status"]) == (uuid, HOST, "ACTIVE")
    assert "10.88.0." in str(os_("server", "show", uuid, fmt_json=True)["addresses"])

    # Detached: gone from the guest and its definition, the tap gone, the user's port kept and unbound.
    os_("server", "remove", "port", uuid, port["id"])
    assert mac not in _xml(uuid) and mac not in _xml(uuid, inactive=True)
    assert _master(tap) is None
    assert os_("port", "show", port["id"], fmt_json=True)["device_id"] == ""

    # Stopped guest: its definition takes the port (CONFIG only), and it boots with it.
    os_("server", "stop", uuid)
    wait_status(cloud, uuid, "SHUTOFF")
    os_("server", "add", "port", uuid, port["id"])
    assert mac in _xml(uuid, inactive=True)
    os_("server", "start", uuid)
    wait_status(cloud, uuid, "ACTIVE")
    assert mac in _xml(uuid) and _master(tap)
    os_("server", "delete", "--wait", uuid, timeout=120)
    assert os_("port", "show", port["id"], fmt_json=True)["device_id"] == ""
