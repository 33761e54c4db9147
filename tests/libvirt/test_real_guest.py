"""A real guest under QEMU through `kilonova up` with the libvirt driver, driven by the `openstack` CLI.

The guest is the tiny one ``hostsetup`` builds from Debian's cloud kernel and busybox: it prints
``KILONOVA-GUEST-MARKER`` lines on its serial console, takes its address by DHCP and prints what it
read from its config drive.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid as uuid_mod
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kilonova.compute.virt.libvirt.dataplane import Dataplane
from tests.cloud import new_cloud
from tests.libvirt import hostsetup
from tests.libvirt.hostsetup import MARKER

HOST = "kilonova-libvirt-test"


@pytest.fixture(scope="module")
def guest():
    try:
        return hostsetup.prepare()
    except hostsetup.HostSetupError as exc:
        pytest.skip(f"cannot run real guests here: {exc}")


@pytest.fixture(scope="module")
def cloud(guest):
    instance = new_cloud(hosts=1, config={
        "DEFAULT": {"host": HOST},
        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
        "libvirt": {"shutdown_timeout": "20", "wait_soft_reboot_seconds": "20"},
    })
    os.chmod(instance.workdir, 0o755)  # qemu runs as libvirt-qemu and must reach the instance files
    instance.start(timeout=120)
    yield instance
    instance.stop()
    remove_leftovers(instance.state_dir)
    shutil.rmtree(instance.workdir, ignore_errors=True)


def remove_leftovers(state_dir: Path) -> None:
    """What a failed test may leave behind of this cloud: domains, dnsmasq, namespaces, bridges."""
    virsh = ["virsh", "-c", "qemu:///system"]
    names = subprocess.run([*virsh, "list", "--all", "--name"], capture_output=True, text=True).stdout.split()
    for name in names:
        xml = subprocess.run([*virsh, "dumpxml", name], capture_output=True, text=True).stdout
        if str(state_dir) in xml:
            subprocess.run([*virsh, "destroy", name], capture_output=True)
            subprocess.run([*virsh, "undefine", "--managed-save", name], capture_output=True)
    networks = Path(state_dir, "instances", "_networks")
    dataplane = Dataplane(networks)
    for directory in networks.glob("*") if networks.exists() else []:
        for pid_file in (directory / "dnsmasq.pid", directory / "metadata.pid"):
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
        subprocess.run(["ip", "netns", "del", dataplane.namespace(directory.name)], capture_output=True)
        subprocess.run(["ip", "link", "del", dataplane.bridge(directory.name)], capture_output=True)
        subprocess.run(["ip", "link", "del", dataplane.veth(directory.name)[0]], capture_output=True)


def wait_status(cloud, server: str, status: str, timeout: float = 60) -> dict:
    """Poll the compute API directly (a CLI call per poll would cost a second each)."""
    deadline = time.monotonic() + timeout
    shown = None
    with cloud.http("compute") as api:
        while time.monotonic() < deadline:
            shown = api.get(f"/servers/{server}").json()["server"]
            if shown["status"] == status and shown.get("OS-EXT-STS:task_state") is None:
                return shown
            if shown["status"] == "ERROR":
                break
            time.sleep(0.25)
    raise AssertionError(f"{server} did not reach {status}: {shown}\n{''.join(cloud.output[-30:])}")


def wait_console(cloud, server: str, text: str, timeout: float = 90) -> str:
    """Wait on the API for ``text`` on the console, then read the log with `openstack console log show`."""
    deadline = time.monotonic() + timeout
    output = ""
    with cloud.http("compute") as api:
        while time.monotonic() < deadline:
            output = api.post(f"/servers/{server}/action", json={"os-getConsoleOutput": {}}).json()["output"]
            if text in output:
                return cloud.openstack("console", "log", "show", server).stdout
            time.sleep(0.25)
    raise AssertionError(f"{text!r} never appeared on the console of {server}:\n{output}")


def ping(namespace: str, address: str, attempts: int = 10) -> None:
    for _ in range(attempts):
        result = subprocess.run(["ip", "netns", "exec", namespace, "ping", "-c", "1", "-W", "1", address],
                                capture_output=True, text=True, timeout=10)
        if result.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{address} does not answer ping from {namespace}: {result.stdout}{result.stderr}")


def no_qemu_left(uuid: str, timeout: float = 10) -> bool:
    """True once no process mentions ``uuid`` (QEMU may take a moment to exit after libvirt says so)."""
    deadline = time.monotonic() + timeout
    while qemu_processes(uuid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def qemu_processes(uuid: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if uuid.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_real_guest_lifecycle(cloud, guest, tmp_path):
    os_ = cloud.openstack
    kernel = os_("image", "create", "--disk-format", "aki", "--container-format", "aki", "--public",
                 "--file", str(guest.kernel), "guest-kernel", fmt_json=True)
    ramdisk = os_("image", "create", "--disk-format", "ari", "--container-format", "ari", "--public",
                  "--file", str(guest.initrd), "guest-ramdisk", fmt_json=True)
    image = os_("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--public",
                "--file", str(guest.root), "--property", f"kernel_id={kernel['id']}",
                "--property", f"ramdisk_id={ramdisk['id']}", "--property", f"os_command_line={guest.cmdline}",
                "guest", fmt_json=True)
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "--ephemeral", "1", "--swap", "16",
        "real.tiny")
    os_("keypair", "create", "--public-key", str(_public_key(tmp_path)), "real-key")
    user_data = tmp_path / "user-data"
    user_data.write_text("hello-from-user-data\n")

    started = time.monotonic()
    last = [started]

    def lap(label: str) -> None:
        now = time.monotonic()
        print(f"{label}: {now - last[0]:.1f}s")
        last[0] = now

    server = os_("server", "create", "--flavor", "real.tiny", "--image", image["id"], "--network", "private",
                 "--key-name", "real-key", "--user-data", str(user_data), "--config-drive", "True",
                 "--wait", "real-vm", fmt_json=True, timeout=180)
    uuid = server["id"]
    assert server["status"] == "ACTIVE", server
    assert server["OS-EXT-SRV-ATTR:host"] == HOST
    address = re.search(r"10\.0\.0\.\d+", json.dumps(server["addresses"])).group(0)
    log = wait_console(cloud, uuid, f"{MARKER} ready")
    print(f"ACTIVE and marker after {time.monotonic() - started:.1f}s")
    assert f"{MARKER} booted" in log
    assert f"{MARKER} dhcp eth0 {address}/24 router 10.0.0.1" in log
    meta_line = next(line for line in log.splitlines() if f"{MARKER} meta_data" in line)
    meta = json.loads(meta_line.split("meta_data ", 1)[1])
    assert meta["uuid"] == uuid and meta["name"] == "real-vm"
    assert meta["public_keys"]["real-key"].startswith("ssh-ed25519 ")
    assert f"{MARKER} user_data hello-from-user-data" in log
    api_line = next(line for line in log.splitlines() if f"{MARKER} metadata-api" in line)
    assert json.loads(api_line.split("metadata-api ", 1)[1])["uuid"] == uuid  # the metadata API, by address

    network_id = os_("network", "show", "private", fmt_json=True)["id"]
    dataplane = Dataplane(Path(cloud.state_dir, "instances", "_networks"))
    namespace = dataplane.namespace(network_id)
    ping(namespace, address)
    port = os_("port", "list", "--device-id", uuid, fmt_json=True)[0]
    tap = f"tap{port['ID'][:11]}"
    assert subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode == 0

    # VNC graphics on the management address: the guest's VNC server greets with its RFB version.
    xml = subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml", uuid], capture_output=True, text=True).stdout
    vnc_port = int(re.search(r"<graphics type='vnc' port='(\d+)'[^>]*listen='127.0.0.1'", xml).group(1))
    with socket.create_connection(("127.0.0.1", vnc_port), timeout=5) as vnc:
        assert vnc.recv(12).startswith(b"RFB 003.")

    hosts_file = Path(cloud.state_dir, "instances", "_networks", network_id, "hosts").read_text()
    assert f"{port['MAC Address']},{address}" in hosts_file

    lap("boot+checks")
    # Soft reboot: ACPI shutdown, start again; the console log starts over.
    os_("server", "reboot", "--wait", uuid, timeout=120)
    wait_console(cloud, uuid, f"{MARKER} ready")
    lap("soft reboot")
    # Hard reboot regenerates the domain: spoil its definition (less memory, no NIC) and remove the
    # network's bridge, as a careless operator or a host restart might; the reboot puts all of it right.
    spoil_definition(uuid)
    subprocess.run(["ip", "link", "del", dataplane.bridge(network_id)], check=True, capture_output=True)
    os_("server", "reboot", "--hard", "--wait", uuid, timeout=120)
    log = wait_console(cloud, uuid, f"{MARKER} ready")
    assert f"{MARKER} dhcp eth0 {address}/24" in log
    restored = ET.fromstring(virsh("dumpxml", "--inactive", uuid))
    assert int(restored.findtext("memory")) == 128 * 1024
    assert restored.find("devices/interface/target").get("dev") == tap
    ping(namespace, address)

    lap("hard reboot")
    os_("server", "stop", uuid)
    stopped = wait_status(cloud, uuid, "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    assert no_qemu_left(uuid)
    os_("server", "start", uuid)
    wait_status(cloud, uuid, "ACTIVE")
    wait_console(cloud, uuid, f"{MARKER} ready")

    lap("stop/start")
    snapshot_vm = snapshot_and_boot(cloud, uuid, guest, tmp_path)
    lap("snapshot + boot from it")
    os_("server", "pause", uuid)
    assert wait_status(cloud, uuid, "PAUSED")["OS-EXT-STS:power_state"] in ("Paused", 3)
    os_("server", "unpause", uuid)
    wait_status(cloud, uuid, "ACTIVE")

    lap("pause/unpause")
    os_("server", "suspend", uuid)
    wait_status(cloud, uuid, "SUSPENDED")
    assert no_qemu_left(uuid)
    os_("server", "resume", uuid)
    wait_status(cloud, uuid, "ACTIVE")
    ping(namespace, address)

    lap("suspend/resume")
    # The guest powers itself off (ACPI from outside the API): libvirt's lifecycle event makes the agent
    # sync at once, long before its 120 s periodic check.
    subprocess.run(["virsh", "-c", "qemu:///system", "shutdown", uuid], check=True, capture_output=True)
    wait_status(cloud, uuid, "SHUTOFF", timeout=30)
    os_("server", "start", uuid)
    wait_status(cloud, uuid, "ACTIVE")

    lap("guest shutdown sync + start")
    host_restart(cloud, uuid, snapshot_vm)
    lap("host restart (stopped, then resumed)")
    os_("server", "delete", "--wait", snapshot_vm, timeout=120)
    os_("image", "delete", "real-snap")
    os_("server", "delete", "--wait", uuid, timeout=120)
    assert no_qemu_left(uuid)
    assert not Path(cloud.state_dir, "instances", uuid).exists()
    assert subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode != 0
    assert not Path("/run/netns", namespace).exists()
    assert not Path(cloud.state_dir, "instances", "_networks", network_id).exists()
    assert not any((b"dnsmasq" in p.read_bytes() or b"libvirt.metadata" in p.read_bytes())
                   and network_id.encode() in p.read_bytes()
                   for p in Path("/proc").glob("[0-9]*/cmdline") if _readable(p))
    allocations = os_("resource", "provider", "allocation", "show", uuid, fmt_json=True)
    assert allocations == []
    listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--uuid"], capture_output=True,
                            text=True).stdout
    assert uuid not in listed


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True,
                          text=True).stdout


def spoil_definition(uuid: str) -> None:
    """Redefine the domain by hand with 96 MiB and without its NIC (applies at its next start)."""
    root = ET.fromstring(virsh("dumpxml", "--inactive", uuid))
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        element.text, element.attrib = str(96 * 1024), {"unit": "KiB"}
    devices = root.find("devices")
    for nic in devices.findall("interface"):
        devices.remove(nic)
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as fh:
        fh.write(ET.tostring(root, encoding="unicode"))
        fh.flush()
        virsh("define", fh.name)
    spoiled = ET.fromstring(virsh("dumpxml", "--inactive", uuid))
    assert int(spoiled.findtext("memory")) == 96 * 1024 and spoiled.find("devices/interface") is None


def snapshot_and_boot(cloud, uuid: str, guest, tmp_path: Path) -> str:
    """createImage of the running guest: an active qcow2 holding its disk, which boots a new server."""
    os_ = cloud.openstack
    os_("server", "image", "create", "--name", "real-snap", "--wait", uuid, timeout=300)
    image = os_("image", "show", "real-snap", fmt_json=True)
    assert image["status"] == "active" and image["disk_format"] == "qcow2"
    assert image["properties"]["image_type"] == "snapshot" and image["properties"]["instance_uuid"] == uuid
    saved = tmp_path / "snap.qcow2"
    os_("image", "save", "--file", str(saved), image["id"])
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", str(saved)], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    assert info["virtual-size"] == 1 << 30            # the flavor's 1 GB root disk, flattened
    assert 64 * 1024 <= image["size"] <= 64 * 1024 * 1024
    # Its data is the guest's disk: the same content as the image the guest booted from.
    compared = subprocess.run(["qemu-img", "compare", str(saved), str(guest.root)], capture_output=True, text=True)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert wait_status(cloud, uuid, "ACTIVE")["OS-EXT-STS:task_state"] is None
    booted = os_("server", "create", "--flavor", "real.tiny", "--image", image["id"], "--network", "private",
                 "--wait", "real-from-snap", fmt_json=True, timeout=180)
    assert booted["status"] == "ACTIVE"
    wait_console(cloud, booted["id"], f"{MARKER} ready")
    return booted["id"]


def restart_cloud(cloud, resume: bool) -> None:
    cloud.stop()
    text = re.sub(r"\nresume_guests_state_on_host_boot = \w+", "", cloud.config_file.read_text())
    text = text.replace("[DEFAULT]\n", f"[DEFAULT]\nresume_guests_state_on_host_boot = {str(resume).lower()}\n")
    cloud.config_file.write_text(text)
    cloud.start(timeout=180)


def host_restart(cloud, uuid: str, survivor: str) -> None:
    """The host "reboots" under the agent: the guest's domain is gone when the agent starts again.

    While the agent is down the domain of ``uuid`` is destroyed and undefined, a domain of an
    instance that no longer exists is left in our instances path, and a domain of someone else
    (outside our instances path) is defined too. ``survivor`` keeps running throughout.
    """
    instances = Path(cloud.state_dir, "instances")
    orphan_uuid, foreign_uuid = str(uuid_mod.uuid4()), str(uuid_mod.uuid4())
    orphan = ET.fromstring(virsh("dumpxml", "--inactive", survivor))
    orphan.find("uuid").text, orphan.find("name").text = orphan_uuid, f"instance-{orphan_uuid}"
    devices = orphan.find("devices")
    for nic in devices.findall("interface"):
        devices.remove(nic)
    (instances / orphan_uuid).mkdir()
    (instances / orphan_uuid / "console.log").write_text("left behind\n")
    foreign = (f"<domain type='qemu'><name>instance-{foreign_uuid}</name><uuid>{foreign_uuid}</uuid>"
               "<memory unit='MiB'>16</memory><os><type arch='x86_64'>hvm</type></os></domain>")

    cloud.stop()
    virsh("destroy", uuid)
    virsh("undefine", "--managed-save", uuid)
    for xml in (ET.tostring(orphan, encoding="unicode"), foreign):
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as fh:
            fh.write(xml)
            fh.flush()
            virsh("define", fh.name)
    try:
        restart_cloud(cloud, resume=False)
        # Nova's default: a guest that is not running after the restart is recorded as stopped...
        stopped = wait_status(cloud, uuid, "SHUTOFF", timeout=60)
        assert stopped["OS-EXT-STS:power_state"] in ("Shutdown", 4)
        # ...the deleted instance's guest and files are gone, someone else's domain is untouched...
        listed = virsh("list", "--all", "--uuid")
        assert orphan_uuid not in listed and not (instances / orphan_uuid).exists()
        assert foreign_uuid in listed
        assert wait_status(cloud, survivor, "ACTIVE")["OS-EXT-STS:power_state"] in ("Running", 1)
        # ...and starting it rebuilds the domain from the flavor, image and ports.
        cloud.openstack("server", "start", uuid)
        wait_status(cloud, uuid, "ACTIVE", timeout=60)
        log = wait_console(cloud, uuid, f"{MARKER} ready")
        assert f"{MARKER} dhcp eth0" in log, network_state(cloud, log)

        cloud.stop()
        virsh("destroy", uuid)
        virsh("undefine", "--managed-save", uuid)
        restart_cloud(cloud, resume=True)
        # With resume_guests_state_on_host_boot the agent starts the guest by itself.
        assert wait_status(cloud, uuid, "ACTIVE", timeout=60)["OS-EXT-STS:power_state"] in ("Running", 1)
        assert uuid in virsh("list", "--uuid")
        log = wait_console(cloud, uuid, f"{MARKER} ready")
        assert f"{MARKER} dhcp eth0" in log, network_state(cloud, log)
    finally:
        subprocess.run(["virsh", "-c", "qemu:///system", "undefine", foreign_uuid], capture_output=True)


def network_state(cloud, log: str) -> str:
    """What to look at when a guest got no DHCP answer."""
    shell = ("bridge link; ip -br link; ip netns; ps -eo pid,args | grep -E 'dnsmasq|metadata' | grep -v grep; "
             f"cat {cloud.state_dir}/instances/_networks/*/hosts")
    state = subprocess.run(shell, shell=True, capture_output=True, text=True).stdout
    return f"{log}\n{state}\n{''.join(cloud.output[-40:])}"


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
        return True
    except OSError:
        return False


def _public_key(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519.pub"
    body = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
    key.write_text(f"ssh-ed25519 {body} test@kilonova\n")
    return key
