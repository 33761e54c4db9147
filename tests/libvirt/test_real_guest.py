"""A real guest under QEMU through `kilonova up` with the libvirt driver, driven by the `openstack` CLI.

The guest is the tiny one ``hostsetup`` builds from Debian's cloud kernel and busybox: it prints
``KILONOVA-GUEST-MARKER`` lines on its serial console, takes its address by DHCP, prints what it
read from its config drive and what disks it sees, and keeps a note on its root disk of how its
previous boot ended (the ACPI power button, or not cleanly).

The cloud's host splits its CPUs as an operator of pinned guests would: the last one in
``[compute] cpu_dedicated_set`` (PCPU in Placement), the others in ``cpu_shared_set`` (VCPU).
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

from kilonova.compute.virt.libvirt import cpus, host
from kilonova.compute.virt.libvirt.dataplane import Dataplane
from kilonova.compute.virt.libvirt.nft_rules import table_name
from kilonova.compute.virt.libvirt.routers import RouterDataplane
from kilonova.image.bootstrap import DEFAULT_IMAGE_ID
from tests.cloud import new_cloud
from tests.libvirt.hostsetup import MARKER

HOST = "kilonova-libvirt-test"
HOST_CPUS = sorted(cpus.online())
PINNED_CPU = HOST_CPUS[-1] if len(HOST_CPUS) > 1 else None   # the dedicated set; None: a 1-CPU host, no pinning
SHARED_CPUS = cpus.format_set(HOST_CPUS[:-1]) if PINNED_CPU is not None else ""
# Reserved amounts and allocation ratios unlike the defaults, to see them arrive in Placement.
CAPACITY = {"reserved_host_memory_mb": "96", "reserved_host_disk_mb": "2048", "cpu_allocation_ratio": "3.0",
            "ram_allocation_ratio": "1.5"}


@pytest.fixture(scope="module")
def cloud(guest):
    pinning = {"cpu_dedicated_set": str(PINNED_CPU), "cpu_shared_set": SHARED_CPUS} if PINNED_CPU is not None else {}
    with libvirt_cloud({
        "DEFAULT": {"host": HOST, **CAPACITY},
        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120", **pinning},
        "libvirt": {"shutdown_timeout": "20", "wait_soft_reboot_seconds": "20"},
    }) as instance:
        yield instance


@contextlib.contextmanager
def libvirt_cloud(config: dict):
    """A started one-host cloud on the libvirt driver; afterwards stopped and gone, with what a failed test
    left of it (``config``: its configuration, sections of options)."""
    instance = new_cloud(hosts=1, config=config)
    os.chmod(instance.workdir, 0o755)  # qemu runs as libvirt-qemu and must reach the instance files
    instance.start(timeout=120)
    try:
        yield instance
    finally:
        instance.stop()
        remove_leftovers(instance.state_dir)
        shutil.rmtree(instance.workdir, ignore_errors=True)


def remove_leftovers(state_dir: Path) -> None:
    """What a failed test may leave behind of this cloud: domains, dnsmasq, namespaces, routers, bridges, nft
    tables."""
    virsh = ["virsh", "-c", "qemu:///system"]
    names = subprocess.run([*virsh, "list", "--all", "--name"], capture_output=True, text=True).stdout.split()
    for name in names:
        xml = subprocess.run([*virsh, "dumpxml", name], capture_output=True, text=True).stdout
        if str(state_dir) in xml:
            subprocess.run([*virsh, "destroy", name], capture_output=True)
            subprocess.run([*virsh, "undefine", "--managed-save", name], capture_output=True)
    networks = Path(state_dir, "instances", "_networks")
    routers = RouterDataplane(networks)  # the L3 agent's namespaces (and the bridges only they used)
    for router_id in routers.routers():
        routers.remove(router_id)
    dataplane = Dataplane(networks)
    for directory in networks.glob("*") if networks.exists() else []:
        for pid_file in (directory / "dnsmasq.pid", directory / "metadata.pid"):
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
        subprocess.run(["ip", "netns", "del", dataplane.namespace(directory.name)], capture_output=True)
        subprocess.run(["ip", "link", "del", dataplane.bridge(directory.name)], capture_output=True)
        subprocess.run(["ip", "link", "del", dataplane.veth(directory.name)[0]], capture_output=True)
    for family in ("bridge", "inet") if shutil.which("nft") else ():  # the ports' security-group rules
        subprocess.run(["nft", "delete", "table", family, table_name(dataplane.scope)], capture_output=True)


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


def upload_guest(cloud, guest, name: str) -> dict:
    """The guest's kernel, ramdisk and root disk as images; the root disk's image boots with the other two."""
    os_ = cloud.openstack
    kernel = os_("image", "create", "--disk-format", "aki", "--container-format", "aki", "--public",
                 "--file", str(guest.kernel), f"{name}-kernel", fmt_json=True)
    ramdisk = os_("image", "create", "--disk-format", "ari", "--container-format", "ari", "--public",
                  "--file", str(guest.initrd), f"{name}-ramdisk", fmt_json=True)
    return os_("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--public",
               "--file", str(guest.root), "--property", f"kernel_id={kernel['id']}",
               "--property", f"ramdisk_id={ramdisk['id']}", "--property", f"os_command_line={guest.cmdline}",
               name, fmt_json=True)


def console_lines(log: str, label: str) -> list[str]:
    """What the guest printed after ``MARKER label`` on each such line."""
    prefix = f"{MARKER} {label} "
    return [line.split(prefix, 1)[1].strip() for line in log.splitlines() if prefix in line]


def guest_disks(log: str) -> dict[str, dict[str, str]]:
    """The guest's "disk vdX sectors=N signature=S" lines: {vdX: {sectors, signature}}."""
    disks = {}
    for line in console_lines(log, "disk"):
        name, *fields = line.split(" ")
        disks[name] = dict(field.split("=", 1) for field in fields)
    return disks


def test_real_guest_lifecycle(cloud, guest, tmp_path):
    os_ = cloud.openstack
    image = upload_guest(cloud, guest, "guest")
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
    # The default group lets in only its own members (the network's namespace is none) until ICMP is opened.
    assert subprocess.run(["ip", "netns", "exec", namespace, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True).returncode != 0
    # (by id: the admin sees every project's `default`, and the CLI refuses a name that is not unique)
    default = next(g for g in os_("security", "group", "list", "--project", "admin", fmt_json=True)
                   if g["Name"] == "default")
    os_("security", "group", "rule", "create", "--proto", "icmp", default["ID"])
    ping(namespace, address)
    port = os_("port", "list", "--device-id", uuid, fmt_json=True)[0]
    tap, mac = f"tap{port['ID'][:11]}", port["MAC Address"]
    assert subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode == 0
    assert console_lines(log, "disk-note") == ["empty"]            # a fresh root disk
    network_data = json.loads(console_lines(log, "network_data")[0])
    assert network_data["links"][0]["ethernet_mac_address"] == mac
    assert network_data["networks"][0]["ip_address"] == address

    # The flavor's ephemeral (1 GB, ext4 labelled ephemeral0) and swap (16 MB) disks, after the root disk.
    directory = Path(cloud.state_dir, "instances", uuid)
    domain = ET.fromstring(virsh("dumpxml", uuid))
    sources = {disk.find("target").get("dev"): disk.find("source").get("file")
               for disk in domain.findall("devices/disk")}
    assert sources == {"vda": str(directory / "disk"), "vdb": str(directory / "disk.eph0"),
                       "vdc": str(directory / "disk.swap"), "vdd": str(directory / "disk.config")}
    assert all(Path(path).exists() for path in sources.values())
    disks = guest_disks(log)
    assert disks["vda"]["sectors"] == str((1 << 30) // 512)
    assert disks["vdb"]["sectors"] == str((1 << 30) // 512)
    assert console_lines(log, "label ephemeral0") == ["/dev/vdb"]   # the ext4 file system made for it
    assert disks["vdc"]["sectors"] == str(16 * 1024 * 1024 // 512) and disks["vdc"]["signature"] == "SWAPSPACE2"
    if PINNED_CPU is not None:  # an unpinned guest floats over cpu_shared_set only
        assert domain.find("vcpu").get("cpuset") == SHARED_CPUS and domain.find("cputune/vcpupin") is None

    # VNC graphics on the management address: the guest's VNC server greets with its RFB version.
    graphics = domain.find("devices/graphics[@type='vnc']")
    assert graphics.get("listen") == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", int(graphics.get("port"))), timeout=5) as vnc:
        assert vnc.recv(12).startswith(b"RFB 003.")

    hosts_file = Path(cloud.state_dir, "instances", "_networks", network_id, "hosts").read_text()
    assert f"{port['MAC Address']},{address}" in hosts_file

    lap("boot+checks")
    # Soft reboot: ACPI shutdown (the guest's power button handler notes it on its disk), start again;
    # the console log starts over.
    os_("server", "reboot", "--wait", uuid, timeout=120)
    log = wait_console(cloud, uuid, f"{MARKER} ready")
    assert console_lines(log, "disk-note") == [f"acpi {mac}"], log
    lap("soft reboot")
    # Hard reboot regenerates the domain: spoil its definition (less memory, no NIC) and remove the
    # network's bridge, as a careless operator or a host restart might; the reboot puts all of it right.
    spoil_definition(uuid)
    subprocess.run(["ip", "link", "del", dataplane.bridge(network_id)], check=True, capture_output=True)
    os_("server", "reboot", "--hard", "--wait", uuid, timeout=120)
    log = wait_console(cloud, uuid, f"{MARKER} ready")
    assert f"{MARKER} dhcp eth0 {address}/24" in log
    assert console_lines(log, "disk-note") == [f"unclean {mac}"]   # hard: destroyed, no ACPI
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
    log = wait_console(cloud, uuid, f"{MARKER} ready")
    assert console_lines(log, "disk-note") == [f"acpi {mac}"]      # stop shut the guest down gracefully

    lap("stop/start")
    snapshot_vm = snapshot_and_boot(cloud, uuid, mac, tmp_path)
    lap("snapshot + boot from it")
    os_("server", "pause", uuid)
    assert wait_status(cloud, uuid, "PAUSED")["OS-EXT-STS:power_state"] in ("Paused", 3)
    assert virsh("domstate", uuid).strip() == "paused"              # libvirt agrees, not only the database
    os_("server", "unpause", uuid)
    wait_status(cloud, uuid, "ACTIVE")
    assert virsh("domstate", uuid).strip() == "running"

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
    for link in (tap, dataplane.veth(network_id)[0]):
        assert subprocess.run(["ip", "link", "show", link], capture_output=True).returncode != 0, link
    # The bridge stays for router1's leg on private-subnet (the L3 agent's, krq-*), and holds nothing else.
    members = Path("/sys/class/net", dataplane.bridge(network_id), "brif")
    assert [m.name[:4] for m in members.iterdir()] == ["krq-"], list(members.iterdir())
    assert not Path("/run/netns", namespace).exists()
    assert not Path(cloud.state_dir, "instances", "_networks", network_id).exists()
    assert not any((b"dnsmasq" in p.read_bytes() or b"libvirt.metadata" in p.read_bytes())
                   and network_id.encode() in p.read_bytes() and str(cloud.state_dir).encode() in p.read_bytes()
                   for p in Path("/proc").glob("[0-9]*/cmdline") if _readable(p))  # other clouds' have this id too
    allocations = os_("resource", "provider", "allocation", "show", uuid, fmt_json=True)
    assert allocations == []
    listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--uuid"], capture_output=True,
                            text=True).stdout
    assert uuid not in listed


def test_host_inventory_and_traits_land_in_placement(cloud):
    """What the libvirt host reports: its real capacity with the configured reserved amounts and ratios."""
    with cloud.http("placement") as placement:  # one CLI call below; the rest over the API (cheaper)
        placement.headers["OpenStack-API-Version"] = "placement 1.39"
        provider = placement.get("/resource_providers", params={"name": HOST}).json()["resource_providers"][0]
        traits = set(placement.get(f"/resource_providers/{provider['uuid']}/traits").json()["traits"])
    inventory = {row["resource_class"]: row for row in cloud.openstack(
        "--os-placement-api-version", "1.39", "resource", "provider", "inventory", "list", provider["uuid"],
        fmt_json=True)}
    assert inventory["MEMORY_MB"]["total"] == host.memory_mb()
    assert inventory["MEMORY_MB"]["reserved"] == 96 and inventory["MEMORY_MB"]["allocation_ratio"] == 1.5
    assert inventory["DISK_GB"]["reserved"] == 2 and inventory["DISK_GB"]["allocation_ratio"] == 1.0
    assert inventory["DISK_GB"]["total"] == host.disk_gb(Path(cloud.state_dir, "instances"))
    assert inventory["VCPU"]["allocation_ratio"] == 3.0
    if PINNED_CPU is not None:  # the dedicated CPU is PCPU, never overcommitted; the rest is VCPU
        assert inventory["VCPU"]["total"] == len(HOST_CPUS) - 1
        assert (inventory["PCPU"]["total"], inventory["PCPU"]["allocation_ratio"]) == (1, 1.0)
    else:
        assert inventory["VCPU"]["total"] == len(HOST_CPUS) and "PCPU" not in inventory
    assert {"COMPUTE_NODE", "COMPUTE_STORAGE_BUS_VIRTIO", "COMPUTE_IMAGE_TYPE_QCOW2", "HW_CPU_X86_SSE2"} <= traits
    assert not traits & {"COMPUTE_NET_ATTACH_INTERFACE", "COMPUTE_CONFIG_DRIVE_REGENERATION",
                         "COMPUTE_IMAGE_TYPE_ISO"}  # not implemented, so not claimed


def test_what_the_host_cannot_honour_ends_in_error_saying_why(cloud):
    """Flavors asking for what this host lacks: ERROR, with a fault that says what (no guest is started).

    The servers are made and read over the compute API (a CLI call costs a second or two each); one
    fault is read with `openstack server show` as a user would.
    """
    asks = {  # flavor -> (vCPUs, extra specs, what the fault must say)
        # More pinned vCPUs than the host's one dedicated CPU: no host has that much PCPU (scheduling).
        "real.dedicated-big": (2, {"hw:cpu_policy": "dedicated"}, "PCPU:2"),
        "real.bad-quota": (1, {"quota:cpu_shares": "lots"}, "quota:cpu_shares='lots' is not a whole number"),
        "real.unknown-quota": (1, {"quota:vif_inbound_bogus": "1"},
                               "quota:vif_inbound_bogus: not a quota this host can apply"),
        "real.peak-only": (1, {"quota:vif_outbound_peak": "100"},
                           "quota:vif_outbound_peak needs quota:vif_outbound_average"),
    }
    if not host.free_hugepages().get(1048576):
        asks["real.huge-pages"] = (1, {"hw:mem_page_size": "1GB"},
                                   "hw:mem_page_size=1GB needs 128 MB of free huge pages")
    servers = {}
    with cloud.http("compute") as api:
        network = cloud.openstack("network", "show", "private", fmt_json=True)["id"]
        try:
            for flavor, (vcpus, extra_specs, reason) in asks.items():  # one by one: the host has few VCPUs
                api.post("/flavors", json={"flavor": {"name": flavor, "id": flavor, "ram": 128, "vcpus": vcpus,
                                                      "disk": 1}}).raise_for_status()
                api.post(f"/flavors/{flavor}/os-extra_specs", json={"extra_specs": extra_specs}).raise_for_status()
                created = api.post("/servers", json={"server": {
                    "name": flavor.replace(".", "-"), "flavorRef": flavor, "imageRef": DEFAULT_IMAGE_ID,
                    "networks": [{"uuid": network}]}})
                servers[flavor] = created.json()["server"]["id"]
                fault = wait_error(api, servers[flavor])
                assert reason in f"{fault['message']} {fault.get('details', '')}", (flavor, fault)
                assert not Path(cloud.state_dir, "instances", servers[flavor]).exists()
            shown = cloud.openstack("server", "show", servers["real.bad-quota"], fmt_json=True)
            assert shown["status"] == "ERROR" and "quota:cpu_shares='lots'" in shown["fault"]["details"]
        finally:
            for server in servers.values():
                api.delete(f"/servers/{server}")
    with cloud.http("placement") as placement:  # nothing is left held in Placement
        for server in servers.values():
            assert placement.get(f"/allocations/{server}").json()["allocations"] == {}


def wait_error(api, server: str, timeout: float = 60) -> dict:
    """The fault of ``server`` once it is in ERROR."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = api.get(f"/servers/{server}").json()["server"]
        if shown["status"] == "ERROR":
            return shown["fault"]
        assert shown["status"] == "BUILD", shown
        time.sleep(0.2)
    raise AssertionError(f"{server} did not go to ERROR: {shown}")


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


def snapshot_and_boot(cloud, uuid: str, mac: str, tmp_path: Path) -> str:
    """createImage of the running guest: an active qcow2 holding its disk, which boots a new server.

    The guest's root disk holds its note ("unclean <its MAC>", written at its last boot); the server
    booted from the snapshot prints that note, not an empty one. On a host with a dedicated CPU that
    server is a pinned one (hw:cpu_policy=dedicated): PCPU in Placement, its vCPU on that host CPU.
    """
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
    # Its data is the guest's disk, with what the guest wrote on it.
    raw = tmp_path / "snap.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(saved), str(raw)], check=True)
    with open(raw, "rb") as fh:
        fh.seek(1 << 20)
        assert fh.read(64).split(b"\n")[0] == f"unclean {mac}".encode()
    raw.unlink()
    assert wait_status(cloud, uuid, "ACTIVE")["OS-EXT-STS:task_state"] is None
    flavor = "real.tiny"
    if PINNED_CPU is not None:
        flavor = "real.pinned"
        os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "--property",
            "hw:cpu_policy=dedicated", flavor)
    booted = os_("server", "create", "--flavor", flavor, "--image", image["id"], "--network", "private",
                 "--wait", "real-from-snap", fmt_json=True, timeout=180)
    assert booted["status"] == "ACTIVE"
    log = wait_console(cloud, booted["id"], f"{MARKER} ready")
    assert console_lines(log, "disk-note") == [f"unclean {mac}"]   # the snapshot's note, from the first guest
    if PINNED_CPU is not None:
        pinned = ET.fromstring(virsh("dumpxml", booted["id"]))
        assert [pin.get("cpuset") for pin in pinned.findall("cputune/vcpupin")] == [str(PINNED_CPU)]
        assert pinned.find("cputune/emulatorpin").get("cpuset") == str(PINNED_CPU)
        claimed = os_("resource", "provider", "allocation", "show", booted["id"], fmt_json=True)
        assert claimed[0]["resources"].get("PCPU") == 1 and "VCPU" not in claimed[0]["resources"], claimed
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
