"""Live migration of a running real guest between two libvirt daemons on this machine (libvirt refuses a
migration to the daemon the guest runs on): host A is the system libvirtd, host B a second one in its own
network and mount namespaces (``second_host``). Each host has its own instances path and image cache, so
these are block migrations (the disks are copied by NBD while the guest runs).

The guest prints ``alive <seconds since boot>`` every two seconds: on the destination its console goes on
counting from where it was, with no boot lines, which is what a user would see of a guest that kept running.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import (LiveMigrationAborted, MigrationError, MigrationPreCheckError,
                                          NoActiveMigration)
from kilonova.config import Config
from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_image_cache import FakeImages
from tests.libvirt.test_lifecycle import markers

libvirt = pytest.importorskip("libvirt")

UUID = "6f1d7c1e-2b7a-4c57-9d0e-000000000c02"
FLAVOR = {"id": "f1", "name": "real.small", "vcpus": 1, "memory_mb": 128, "root_gb": 1, "ephemeral_gb": 0,
          "swap": 0, "extra_specs": {}}
INSTANCE = {"uuid": UUID, "hostname": "migrating-vm", "display_name": "migrating-vm", "flavor": FLAVOR,
            "image_ref": "image-a", "config_drive": True, "project_id": "p", "user_id": "u", "metadata": {}}


def run(coroutine):
    return asyncio.run(coroutine)


def driver_for(name: str, root: Path, images: FakeImages, **libvirt_options):
    from kilonova.compute.virt.libvirt.driver import LibvirtDriver

    conf = Config.load(state_dir=root / name, overrides={"libvirt": {
        "instances_path": str(root / name / "instances"), "image_cache_manager_interval": "0",
        **libvirt_options}, "vnc": {"enabled": "false"}})
    made = LibvirtDriver(name, conf, images.client())
    run(made.init_host())
    return made


@pytest.fixture(scope="module")
def hosts(guest):
    from tests.libvirt.second_host import SecondHostError, SecondLibvirtd

    images = FakeImages()
    images.add("kernel", guest.kernel.read_bytes(), "aki")
    images.add("ramdisk", guest.initrd.read_bytes(), "ari")
    images.add("image-a", guest.root.read_bytes(), "qcow2", kernel_id="kernel", ramdisk_id="ramdisk",
               os_command_line=guest.cmdline)
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-live-"))
    os.chmod(workdir, 0o755)  # QEMU runs as libvirt-qemu and must reach the disks
    second = SecondLibvirtd(workdir / "libvirtd-b", f"{os.getpid() % 10000}", 200 + os.getpid() % 50)
    try:
        second.start()
    except SecondHostError as exc:
        second.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot run a second libvirtd here: {exc}")
    a = driver_for("host-a", workdir, images, live_migration_uri=second.system_uri,
                   live_migration_inbound_addr=second.host_address)
    b = driver_for("host-b", workdir, images, connection_uri=second.uri, live_migration_uri=second.uri,
                   live_migration_inbound_addr=second.address)
    yield a, b, second
    for each in (a, b):
        domain = each._lookup(UUID)
        if domain is not None:
            run(each.destroy(INSTANCE))
    second.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def console(host, timeout: float = 0) -> str:
    return run(host.get_console_output(INSTANCE))


def uptimes(log: str) -> list[float]:
    return [float(value) for value in markers(log, "alive")]


def wait_alive_after(host, seconds: float, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    log = ""
    while time.monotonic() < deadline:
        log = console(host)
        if any(value > seconds for value in uptimes(log)):
            return log
        time.sleep(0.5)
    raise AssertionError(f"no heartbeat after {seconds}s of uptime on {host.host}:\n{log[-2000:]}")


async def migrate(source, dest, block_migration=None, during=None):
    """The agents' sequence; ``during(reports)`` runs at each progress report. Returns the reports."""
    data = json.loads(json.dumps(await dest.check_can_live_migrate_destination(INSTANCE, block_migration)))
    data = json.loads(json.dumps(await source.check_can_live_migrate_source(INSTANCE, data)))
    data = json.loads(json.dumps(await dest.pre_live_migration(INSTANCE, [], data)))
    reports = []

    async def progress(report):
        reports.append(report)
        if during is not None:
            await during(reports)

    try:
        await source.live_migration(INSTANCE, dest.host, data, progress)
    except Exception:
        await dest.rollback_live_migration_at_destination(INSTANCE, [])
        raise
    await source.post_live_migration_at_source(INSTANCE, [])
    await dest.post_live_migration_at_destination(INSTANCE, [])
    return reports


def test_a_running_guest_moves_to_the_other_libvirtd_without_rebooting(hosts):
    a, b, _ = hosts
    run(a.spawn(INSTANCE, {"id": "image-a"}, []))
    before = uptimes(wait_alive_after(a, 1))[-1]
    with pytest.raises(MigrationPreCheckError, match="not on shared storage"):
        run(migrate(a, b, block_migration=False))
    reports = run(migrate(a, b))
    assert a._lookup(UUID) is None and not (a.instances_path / UUID).exists()  # nothing left on the source
    assert run(b.get_power_state(INSTANCE)) == power.RUNNING
    domain = b._domain(INSTANCE)
    assert domain.isPersistent() and str(b.instances_path) in domain.XMLDesc(0)
    log = wait_alive_after(b, before + 2)
    assert f"{MARKER} booted kernel" not in log  # the console here never saw a boot: the guest kept running
    assert uptimes(log)[0] >= before
    assert reports and reports[-1]["memory_remaining_bytes"] == 0
    # The guest's memory, and the root overlay's own data (the base is the same image on both hosts).
    assert reports[-1]["memory_total_bytes"] >= 128 << 20 and reports[-1]["disk_total_bytes"] > 0


def test_abort_leaves_the_guest_running_on_the_source(hosts):
    a, b, _ = hosts
    b.conf.set("libvirt", "live_migration_bandwidth", "2")  # slow enough to abort mid-way

    async def abort_once(reports):
        if len(reports) == 1:
            await b.live_migration_abort(INSTANCE)

    with pytest.raises(LiveMigrationAborted, match="aborted"):
        run(migrate(b, a, during=abort_once))
    assert run(b.get_power_state(INSTANCE)) == power.RUNNING
    assert a._lookup(UUID) is None and not (a.instances_path / UUID).exists()  # rolled back
    with pytest.raises(NoActiveMigration):
        run(b.live_migration_abort(INSTANCE))
    before = uptimes(console(b))[-1]
    assert uptimes(wait_alive_after(b, before + 2))[-1] > before

    async def abort_at_once():  # before libvirt's job exists: it is cancelled once it does
        data = json.loads(json.dumps(await a.check_can_live_migrate_destination(INSTANCE, None)))
        data = await a.pre_live_migration(INSTANCE, [], await b.check_can_live_migrate_source(INSTANCE, data))
        migration = asyncio.ensure_future(b.live_migration(INSTANCE, "host-a", data))
        await asyncio.sleep(0)
        await b.live_migration_abort(INSTANCE)
        try:
            await migration
        finally:
            await a.rollback_live_migration_at_destination(INSTANCE, [])

    with pytest.raises(LiveMigrationAborted):
        run(abort_at_once())
    assert run(b.get_power_state(INSTANCE)) == power.RUNNING and a._lookup(UUID) is None

    b.conf.set("libvirt", "live_migration_completion_timeout", "0.5")  # half a second per GiB: too short
    try:
        with pytest.raises(MigrationError, match="did not complete within 1s .* and was aborted"):
            run(migrate(b, a))
    finally:
        b.conf.set("libvirt", "live_migration_completion_timeout", "800")
    assert run(b.get_power_state(INSTANCE)) == power.RUNNING and a._lookup(UUID) is None


def test_force_complete_finishes_at_once_and_the_guest_runs_on(hosts):
    a, b, _ = hosts
    b.conf.set("libvirt", "live_migration_bandwidth", "1")  # would take a minute or more
    started = []

    async def force_once(reports):
        if len(reports) == 1:
            started.append(time.monotonic())
            await b.live_migration_force_complete(INSTANCE)

    before = uptimes(console(b))[-1]
    run(migrate(b, a, during=force_once))
    assert time.monotonic() - started[0] < 20
    assert run(a.get_power_state(INSTANCE)) == power.RUNNING  # paused to finish, resumed here
    log = wait_alive_after(a, before + 2)
    assert f"{MARKER} booted kernel" not in log
    run(a.destroy(INSTANCE))


UUID2 = "6f1d7c1e-2b7a-4c57-9d0e-000000000c03"
NETWORK = "5e0c2a51-7d1e-4f0b-9a55-00000000c0de"
PORT = {"port_id": "c0ffee00-1111-4222-8333-000000000c03", "network_id": NETWORK, "mac_address": "fa:16:3e:0c:03:01",
        "fixed_ips": [{"ip_address": "10.252.7.10", "version": 4}],
        "subnets": [{"id": "s", "cidr": "10.252.7.0/24", "gateway_ip": "10.252.7.1", "ip_version": 4,
                     "enable_dhcp": True}]}


def _network_state(*namespaces: str) -> str:
    """What the namespaces' links, addresses and neighbours are (for a failure's message)."""
    out = []
    for namespace in namespaces:
        for args in (["-d", "link"], ["addr"], ["neigh"]):
            out.append(subprocess.run(["ip", "-n", namespace, *args], capture_output=True, text=True).stdout)
    return "\n".join(out)


def answers_ping(namespace: str, address: str, attempts: int = 20) -> bool:
    """Ping from a named network namespace, or from the one at a /proc/<pid>/ns/net path."""
    enter = ["nsenter", f"--net={namespace}"] if namespace.startswith("/") else ["ip", "netns", "exec", namespace]
    for _ in range(attempts):
        if subprocess.run([*enter, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True, timeout=10).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def test_a_guest_with_a_port_moves_into_the_other_hosts_network_namespace(hosts, guest):
    """Host B's driver runs in B's network namespace (its own process, as a compute agent would): B's bridge,
    DHCP and gateway live there, and the guest answers from there once it moved, still without a reboot.
    Then it goes back by cold migration and takes its address on host A's network again."""
    from kilonova.compute.virt.libvirt.dataplane import Dataplane
    from tests.libvirt.driver_host import RemoteDriver

    a, _, second = hosts
    root = second.root.parent
    b = RemoteDriver(second.namespace, {
        "name": "host-b-ns", "state_dir": str(root / "host-b-ns"),
        "overrides": {"libvirt": {"instances_path": str(root / "host-b-ns" / "instances"), "connection_uri": second.uri,
                                  "live_migration_uri": second.uri, "live_migration_inbound_addr": second.address,
                                  "image_cache_manager_interval": "0"}, "vnc": {"enabled": "false"}},
        "images": {"kernel": {"path": str(guest.kernel), "disk_format": "aki"},
                   "ramdisk": {"path": str(guest.initrd), "disk_format": "ari"},
                   "image-a": {"path": str(guest.root), "disk_format": "qcow2", "kernel_id": "kernel",
                               "ramdisk_id": "ramdisk", "os_command_line": guest.cmdline}}}, root / "host-b-ns.log")
    server = {**INSTANCE, "uuid": UUID2, "hostname": "networked-vm"}
    b_namespace = Dataplane(root / "host-b-ns" / "instances" / "_networks").namespace(NETWORK)
    try:
        run(a.spawn(server, {"id": "image-a"}, [PORT]))
        deadline = time.monotonic() + 120
        while f"{MARKER} ready" not in (log := run(a.get_console_output(server))) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert markers(log, "dhcp") == ["eth0 10.252.7.10/24 router 10.252.7.1"]
        assert answers_ping(a.dataplane.namespace(NETWORK), "10.252.7.10")
        before = uptimes(log)[-1] if uptimes(log) else 0.0

        data = b.call("check_can_live_migrate_destination", server, None)
        data = run(a.check_can_live_migrate_source(server, data))
        data = b.call("pre_live_migration", server, [PORT], data)
        run(a.live_migration(server, "host-b-ns", data))
        run(a.post_live_migration_at_source(server, [PORT]))
        b.call("post_live_migration_at_destination", server, [PORT])

        assert b.call("get_power_state", server) == power.RUNNING and a._lookup(UUID2) is None
        assert not Path("/sys/class/net", a.dataplane.bridge(NETWORK)).exists()  # host A's network is gone
        assert answers_ping(b_namespace, "10.252.7.10"), _network_state(second.namespace, b_namespace)
        deadline = time.monotonic() + 60
        log = b.call("get_console_output", server)
        while not any(value > before + 2 for value in uptimes(log)):
            assert time.monotonic() < deadline, log
            time.sleep(0.5)
            log = b.call("get_console_output", server)
        assert f"{MARKER} booted kernel" not in log

        # And back, cold: B sets the disks aside, A copies them (one machine) and boots the guest on its network.
        disk_info = b.call("migrate_disk_and_power_off", server, "host-a", FLAVOR)
        assert not Path("/run/netns", b_namespace).exists()  # the guest's port left B's network
        run(a.finish_migration(server, disk_info, [PORT], {"id": "image-a"}, False, True))
        deadline = time.monotonic() + 120
        while f"{MARKER} ready" not in (log := run(a.get_console_output(server))) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert markers(log, "dhcp") == ["eth0 10.252.7.10/24 router 10.252.7.1"]
        assert answers_ping(a.dataplane.namespace(NETWORK), "10.252.7.10")
        b.call("confirm_migration", server)
        assert not (root / "host-b-ns" / "instances" / f"{UUID2}_resize").exists()
    finally:
        with contextlib.suppress(Exception):
            b.call("destroy", server)
        b.close()
        if a._lookup(UUID2) is not None:
            run(a.destroy(server))
    assert not Path("/run/netns", b_namespace).exists()
