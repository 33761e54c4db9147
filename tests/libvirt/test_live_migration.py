"""Live migration of a running real guest between two libvirt daemons on this machine (libvirt refuses a
migration to the daemon the guest runs on): host A is the system libvirtd, host B a second one in its own
network and mount namespaces (``second_host``). Each host has its own instances path and image cache, so
these are block migrations (the disks are copied by NBD while the guest runs).

The guest prints ``alive <seconds since boot>`` every two seconds: on the destination its console goes on
counting from where it was, with no boot lines, which is what a user would see of a guest that kept running.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import (LiveMigrationAborted, MigrationError, MigrationPreCheckError,
                                          NoActiveMigration)
from kilonova.config import Config
from tests.libvirt import hostsetup
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
def hosts():
    try:
        guest = hostsetup.prepare()
    except hostsetup.HostSetupError as exc:
        pytest.skip(f"cannot run real guests here: {exc}")
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
    yield a, b
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
    a, b = hosts
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
    a, b = hosts
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
    a, b = hosts
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
