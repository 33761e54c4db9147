"""The fake driver's lifecycle operations, driven as the agents drive them, one FakeDriver per host.

Everything that moves between two hosts goes through the dicts the methods return (the drivers may live in
different processes), so each test hands them over by JSON, as RPC would.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import (InstancePasswordSetFailed, LiveMigrationAborted, MigrationPreCheckError,
                                          NoActiveMigration, ResizeError)
from kilonova.compute.virt.fake import FakeDriver
from kilonova.config import Config

SMALL = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0, "swap": 0}
LARGE = {"id": "2", "name": "m1.small", "vcpus": 2, "memory_mb": 2048, "root_gb": 20, "ephemeral_gb": 0, "swap": 0}
NETWORK = [{"mac_address": "fa:16:3e:00:00:01", "fixed_ips": [{"ip_address": "10.0.0.5"}]}]


def wire(data: dict) -> dict:
    """What the other side of an RPC call receives."""
    return json.loads(json.dumps(data))


@pytest.fixture
def hosts(tmp_path):
    conf = Config.load(state_dir=tmp_path, overrides={"fake_driver": {"live_migration_delay": "0.5"}})
    return FakeDriver("h1", conf), FakeDriver("h2", conf)


def server(flavor=SMALL, **extra) -> dict:
    return {"uuid": "aaaaaaaa-0000-0000-0000-000000000001", "hostname": "vm1", "image_ref": "img-a",
            "flavor": dict(flavor), "config_drive": True, **extra}


async def console(drv: FakeDriver, instance: dict) -> list[str]:
    return (await drv.get_console_output(instance)).splitlines()


async def booted(drv, instance=None):
    instance = instance or server()
    await drv.spawn(instance, {"id": "img-a"}, NETWORK)
    return instance


async def test_resize_to_another_host_boots_with_the_new_flavor_and_confirm_drops_the_source(hosts):
    h1, h2 = hosts
    instance = await booted(h1)
    disk_info = wire(await h1.migrate_disk_and_power_off(instance, "h2", LARGE))
    assert await h1.get_power_state(instance) == power.NOSTATE and h1.list_instance_uuids() == []
    assert disk_info["source_host"] == "h1" and disk_info["disks"][0]["virtual_size"] == 1 << 30
    resized = {**instance, "flavor": dict(LARGE)}
    await h2.finish_migration(resized, disk_info, NETWORK, {"id": "img-a"}, resize_instance=True, power_on=True)
    assert await h2.get_power_state(resized) == power.RUNNING
    lines = await console(h2, resized)
    assert any("Kilonova fake hypervisor h1: booting vm1" in line for line in lines)  # its history came along
    assert "2 vCPUs, 2048 MB RAM, 20 GB root disk (flavor m1.small)" in lines[-3]
    assert "Root disk grown to 20 GB on h2" in "\n".join(lines)
    assert lines[-1].endswith("vm1 login:")
    diagnostics = await h2.get_diagnostics(resized)
    assert diagnostics["num_cpus"] == 2 and diagnostics["memory_details"]["maximum"] == 2048
    await h1.confirm_migration(instance)
    assert h1.resize_sources == {}
    with pytest.raises(Exception, match="kept no copy"):
        await h1.finish_revert_migration(instance, NETWORK, True)


async def test_revert_on_the_same_host_brings_the_old_flavor_back(hosts):
    h1, _ = hosts
    instance = await booted(h1)
    disk_info = wire(await h1.migrate_disk_and_power_off(instance, "h1", LARGE))
    resized = {**instance, "flavor": dict(LARGE)}
    await h1.finish_migration(resized, disk_info, NETWORK, {"id": "img-a"}, True, True)
    await h1.destroy(resized)  # the agent removes the resized guest first, as upstream's revert_resize
    await h1.finish_revert_migration(instance, NETWORK, power_on=True)
    lines = await console(h1, instance)
    assert "(resize reverted)" in lines[-4] and "1 vCPUs, 512 MB RAM" in lines[-3]
    assert await h1.get_power_state(instance) == power.RUNNING
    assert (await h1.get_diagnostics(instance))["num_cpus"] == 1


async def test_a_stopped_server_is_moved_without_being_started(hosts):
    h1, h2 = hosts
    instance = await booted(h1)
    await h1.power_off(instance)
    disk_info = wire(await h1.migrate_disk_and_power_off(instance, "h2", SMALL))
    await h2.finish_migration(instance, disk_info, NETWORK, {"id": "img-a"}, False, power_on=False)
    assert await h2.get_power_state(instance) == power.SHUTDOWN
    assert (await console(h2, instance))[-1].endswith("Power down.")


async def test_a_smaller_root_disk_is_refused_before_anything_changes(hosts):
    h1, _ = hosts
    instance = await booted(h1, server(LARGE))
    with pytest.raises(ResizeError, match="Unable to resize disk down."):
        await h1.migrate_disk_and_power_off(instance, "h2", SMALL)
    assert await h1.get_power_state(instance) == power.RUNNING


async def test_rebuild_boots_the_new_image_and_keeps_the_flavor(hosts):
    h1, _ = hosts
    instance = await booted(h1)
    await h1.rebuild({**instance, "image_ref": "img-b"}, {"id": "img-b"}, NETWORK, admin_password="s3cret")
    lines = await console(h1, instance)
    assert "rebuilding vm1 from image img-b" in lines[-4] and "1 vCPUs, 512 MB RAM" in lines[-3]
    assert h1.guests[instance["uuid"]].admin_password == "s3cret"
    assert h1.guests[instance["uuid"]].image_id == "img-b"


async def test_rescue_boots_the_rescue_image_and_unrescue_the_own_disk(hosts):
    h1, _ = hosts
    instance = await booted(h1)
    await h1.rescue(instance, {"id": "img-rescue"}, NETWORK, "rescue-pass")
    text = "\n".join(await console(h1, instance))
    assert "booting vm1 in rescue mode from image img-rescue, its own disk (image img-a) attached second" in text
    with pytest.raises(Exception, match="already in rescue mode"):
        await h1.rescue(instance, {"id": "img-rescue"}, NETWORK, None)
    await h1.unrescue(instance)
    lines = await console(h1, instance)
    assert "booting vm1 from image img-a (rescue ended)" in lines[-4]
    assert await h1.get_power_state(instance) == power.RUNNING
    with pytest.raises(Exception, match="not in rescue mode"):
        await h1.unrescue(instance)


async def test_admin_password_crash_dump_and_network_info(hosts):
    h1, _ = hosts
    instance = await booted(h1)
    await h1.set_admin_password(instance, "n3w")
    assert h1.guests[instance["uuid"]].admin_password == "n3w"
    await h1.trigger_crash_dump(instance)
    assert "NMI received" in (await console(h1, instance))[-1]
    await h1.inject_network_info(instance, NETWORK + [{"mac_address": "fa:16:3e:00:00:02",
                                                       "fixed_ips": [{"ip_address": "10.0.1.7"}]}])
    assert (await h1.get_diagnostics(instance))["num_nics"] == 2
    await h1.power_off(instance)
    with pytest.raises(InstancePasswordSetFailed, match="not running"):
        await h1.set_admin_password(instance, "again")
    with pytest.raises(Exception, match="not running"):
        await h1.trigger_crash_dump(instance)


async def test_diagnostics_have_the_2_48_shape(hosts):
    h1, _ = hosts
    instance = await booted(h1)
    h1.guests[instance["uuid"]].booted_at = time.time() - 100
    diagnostics = await h1.get_diagnostics(instance)
    assert set(diagnostics) == {"state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive",
                                "num_cpus", "num_nics", "num_disks", "memory_details", "cpu_details",
                                "nic_details", "disk_details"}
    assert diagnostics["state"] == "running" and diagnostics["uptime"] >= 100 and diagnostics["config_drive"]
    assert diagnostics["num_disks"] == 2 == len(diagnostics["disk_details"])  # root + config drive
    assert set(diagnostics["memory_details"]) == {"maximum", "used"}
    assert [cpu["id"] for cpu in diagnostics["cpu_details"]] == [0]
    assert set(diagnostics["cpu_details"][0]) == {"id", "time", "utilisation"}
    assert diagnostics["nic_details"][0]["mac_address"] == "fa:16:3e:00:00:01"
    assert set(diagnostics["nic_details"][0]) == {
        "mac_address", "rx_octets", "rx_errors", "rx_drop", "rx_packets", "rx_rate", "tx_octets", "tx_errors",
        "tx_drop", "tx_packets", "tx_rate"}
    assert set(diagnostics["disk_details"][0]) == {"read_bytes", "read_requests", "write_bytes",
                                                    "write_requests", "errors_count"}
    await h1.pause(instance)
    assert (await h1.get_diagnostics(instance))["state"] == "paused"


async def _prepare_live_migration(h1, h2, instance, block_migration=None):
    data = wire(await h2.check_can_live_migrate_destination(instance, block_migration))
    data = wire(await h1.check_can_live_migrate_source(instance, data))
    return wire(await h2.pre_live_migration(instance, NETWORK, data))


async def test_live_migration_reports_progress_and_the_guest_moves_without_a_reboot(hosts):
    h1, h2 = hosts
    instance = await booted(h1)
    data = await _prepare_live_migration(h1, h2, instance)
    assert data["block_migration"] is True  # "auto" without shared storage
    reports = []

    async def progress(report):
        reports.append(report)

    started = time.monotonic()
    await h1.live_migration(instance, "h2", data, progress)
    assert 0.4 < time.monotonic() - started < 2
    assert len(reports) >= 5
    assert reports[-1]["memory_total_bytes"] == 512 << 20 and reports[-1]["memory_remaining_bytes"] == 0
    assert reports[-1]["disk_total_bytes"] == 1 << 30
    processed = [r["memory_processed_bytes"] for r in reports]
    assert processed == sorted(processed) and processed[0] < 512 << 20
    assert await h1.get_power_state(instance) == power.NOSTATE
    await h1.post_live_migration_at_source(instance, NETWORK)
    await h2.post_live_migration_at_destination(instance, NETWORK)
    assert await h2.get_power_state(instance) == power.RUNNING and h2.list_instance_uuids() == [instance["uuid"]]
    lines = await console(h2, instance)
    assert sum(line.endswith("vm1 login:") for line in lines) == 1  # booted once, on h1
    assert "running on h2" in lines[-1]
    assert h1.departed == {} and h1.guests == {}


async def test_live_migration_abort_leaves_the_guest_running_on_the_source(hosts):
    h1, h2 = hosts
    instance = await booted(h1)
    data = await _prepare_live_migration(h1, h2, instance, block_migration=False)
    assert data["block_migration"] is False
    migration = asyncio.ensure_future(h1.live_migration(instance, "h2", data))
    await asyncio.sleep(0.15)
    await h1.live_migration_abort(instance)
    with pytest.raises(LiveMigrationAborted, match="aborted"):
        await migration
    assert await h1.get_power_state(instance) == power.RUNNING
    await h2.rollback_live_migration_at_destination(instance, NETWORK)
    assert h2.incoming == {} and h2.list_instance_uuids() == []
    with pytest.raises(NoActiveMigration):
        await h1.live_migration_abort(instance)


async def test_live_migration_force_complete_finishes_at_once(hosts):
    h1, h2 = hosts
    h1.live_migration_delay = 30  # would take half a minute
    instance = await booted(h1)
    data = await _prepare_live_migration(h1, h2, instance)
    reports = []

    async def progress(report):
        reports.append(report)

    migration = asyncio.ensure_future(h1.live_migration(instance, "h2", data, progress))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await h1.live_migration_force_complete(instance)
    assert h1.guests[instance["uuid"]].power_state == power.PAUSED  # paused to copy the last pages
    await asyncio.wait_for(migration, 5)
    assert time.monotonic() - started < 5
    assert reports[-1]["memory_remaining_bytes"] == 0
    await h2.post_live_migration_at_destination(instance, NETWORK)
    assert await h2.get_power_state(instance) == power.RUNNING


async def test_live_migration_prechecks(hosts):
    h1, h2 = hosts
    instance = await booted(h1)
    with pytest.raises(MigrationPreCheckError):
        await h1.check_can_live_migrate_destination(instance, None)  # it is already there
    await h1.power_off(instance)
    with pytest.raises(MigrationPreCheckError, match="not running"):
        await h1.check_can_live_migrate_source(instance, {"block_migration": True})
    with pytest.raises(Exception, match="own host"):
        await h1.live_migration(instance, "h1", {})


async def test_post_live_migration_at_destination_needs_pre_live_migration(hosts):
    _, h2 = hosts
    with pytest.raises(Exception, match="was prepared"):
        await h2.post_live_migration_at_destination(server(), NETWORK)


async def test_step_delays_and_failures_are_injected_by_configuration(tmp_path):
    conf = Config.load(state_dir=tmp_path, overrides={"fake_driver": {
        "step_delays": "get_diagnostics=0.2", "fail_steps": "trigger_crash_dump", "fail_step_hosts": "h1"}})
    failing, healthy = FakeDriver("h1", conf), FakeDriver("h2", conf)
    for drv in (failing, healthy):
        await booted(drv)
    started = time.monotonic()
    await failing.get_diagnostics(server())
    assert time.monotonic() - started >= 0.2
    with pytest.raises(Exception, match="Simulated failure of trigger_crash_dump on host h1"):
        await failing.trigger_crash_dump(server())
    await healthy.trigger_crash_dump(server())  # another host is not affected


async def test_revert_of_a_move_that_failed_before_the_guest_left(tmp_path):
    conf = Config.load(state_dir=tmp_path, overrides={"fake_driver": {"fail_steps": "migrate_disk_and_power_off"}})
    h1 = FakeDriver("h1", conf)
    instance = await booted(h1)
    with pytest.raises(Exception, match="Simulated failure"):
        await h1.migrate_disk_and_power_off(instance, "h2", LARGE)
    await h1.finish_revert_migration(instance, NETWORK, power_on=True)
    assert await h1.get_power_state(instance) == power.RUNNING
    await h1.power_off(instance)
    await h1.finish_revert_migration(instance, NETWORK, power_on=True)
    assert await h1.get_power_state(instance) == power.RUNNING
    assert "(move failed)" in (await console(h1, instance))[-4]


async def test_a_gated_step_waits_for_its_gate_file_and_takes_it(tmp_path):
    conf = Config.load(state_dir=tmp_path, overrides={"fake_driver": {"step_gates": "get_diagnostics"}})
    drv = FakeDriver("h1", conf)
    await booted(drv)
    held = asyncio.ensure_future(drv.get_diagnostics(server()))
    await asyncio.sleep(0.3)
    assert not held.done()
    gate = tmp_path / "step-gates" / "get_diagnostics"
    gate.parent.mkdir()
    gate.touch()
    await asyncio.wait_for(held, 5)
    assert not gate.exists()  # taken: the next call waits again
    again = asyncio.ensure_future(drv.get_diagnostics(server()))
    await asyncio.sleep(0.3)
    assert not again.done()
    again.cancel()
