"""The compute agent's power-state sync: the database follows what the hypervisor says."""
from __future__ import annotations

import asyncio

from kilonova.compute.agent.manager import ComputeManager
from kilonova.compute.virt import driver as power
from kilonova.compute.virt.fake import FakeDriver
from kilonova.config import Config


class StubConductor:
    def __init__(self, instances: list[dict]):
        self.instances = {i["uuid"]: i for i in instances}
        self.updates: list[tuple[str, dict]] = []

    async def call(self, method: str, **kwargs):
        if method == "instances_on_host":
            return [dict(i) for i in self.instances.values()]
        if method == "instance_update":
            self.updates.append((kwargs["instance_uuid"], kwargs["values"]))
            self.instances[kwargs["instance_uuid"]].update(kwargs["values"])
            return self.instances[kwargs["instance_uuid"]]
        raise AssertionError(method)


def instance(uuid: str, vm_state: str, power_state: int, task_state: str | None = None) -> dict:
    return {"uuid": uuid, "vm_state": vm_state, "power_state": power_state, "task_state": task_state,
            "hostname": uuid, "flavor": {}}


def test_guests_that_stopped_by_themselves_are_stopped(tmp_path):
    conf = Config.load(state_dir=tmp_path)
    fake = FakeDriver("h1", conf)
    rows = [instance("crashed", "active", power.RUNNING), instance("running", "active", power.RUNNING),
            instance("busy", "active", power.RUNNING, task_state="rebooting"),
            instance("paused", "active", power.RUNNING)]
    conductor = StubConductor(rows)
    manager = ComputeManager("h1", fake, conductor, placement=None, network=None, conf=conf)

    async def run() -> int:
        for row in rows:
            await fake.spawn(row, {}, [])
        await fake.power_off(rows[0])          # shut down inside the guest
        await fake.power_off(rows[2])          # an operation under way owns this one
        await fake.pause(rows[3])
        return await manager.sync_power_states()

    assert asyncio.run(run()) == 2
    assert conductor.instances["crashed"]["vm_state"] == "stopped"
    assert conductor.instances["crashed"]["power_state"] == power.SHUTDOWN
    assert conductor.instances["paused"]["power_state"] == power.PAUSED
    assert conductor.instances["paused"]["vm_state"] == "active"
    assert conductor.instances["busy"]["vm_state"] == "active"
    assert {uuid for uuid, _ in conductor.updates} == {"crashed", "paused"}


class RestartedHost(FakeDriver):
    """A hypervisor after a host reboot: guests it still has keep their state, the others are gone."""

    syncs_power_state = True

    def __init__(self, conf, fail_resume: bool = False):
        super().__init__("h1", conf)
        self.resumed: list[str] = []
        self.known_at_cleanup: set[str] | None = None
        self.fail_resume = fail_resume

    async def resume_state_on_host_boot(self, instance):
        if self.fail_resume:
            raise RuntimeError("disk is missing")
        self.resumed.append(instance["uuid"])
        await self.power_on(instance)

    async def cleanup_orphans(self, known_uuids):
        self.known_at_cleanup = set(known_uuids)
        return []


def _restart(tmp_path, resume: bool, fail_resume: bool = False):
    conf = Config.load(state_dir=tmp_path)
    conf.set("DEFAULT", "resume_guests_state_on_host_boot", "true" if resume else "false")
    driver = RestartedHost(conf, fail_resume)
    rows = [instance("lost", "active", power.RUNNING), instance("kept", "active", power.RUNNING),
            instance("off", "stopped", power.SHUTDOWN),
            instance("snap", "active", power.RUNNING, task_state="image_uploading")]
    conductor = StubConductor(rows)
    faults: list[str] = []
    original = conductor.call

    async def call(method, **kwargs):
        # The fault comes with the state change (conductor RPC 1.4), or before it for an older conductor.
        if method == "add_fault":
            faults.append(kwargs["message"])
            return None
        if method == "instance_update" and kwargs.get("fault"):
            faults.append(kwargs["fault"]["message"])
        return await original(method, **kwargs)

    conductor.call = call
    manager = ComputeManager("h1", driver, conductor, placement=None, network=None, conf=conf)

    async def run():
        await driver.spawn(rows[1], {}, [])
        await driver.spawn(rows[3], {}, [])
        for row in conductor.instances.values():
            await manager._recover_guest(dict(row))
        await manager._remove_orphans()

    asyncio.run(run())
    return conductor.instances, driver, faults


def test_after_a_host_restart_lost_guests_are_stopped_by_default(tmp_path):
    rows, driver, faults = _restart(tmp_path, resume=False)
    assert rows["lost"]["vm_state"] == "stopped" and rows["lost"]["power_state"] == power.SHUTDOWN
    assert rows["kept"]["vm_state"] == "active" and rows["off"]["vm_state"] == "stopped"
    assert rows["snap"]["task_state"] is None  # the interrupted snapshot no longer blocks the server
    assert driver.resumed == [] and not faults
    assert driver.known_at_cleanup == {"lost", "kept", "off", "snap"}


def test_after_a_host_restart_lost_guests_start_again_when_configured(tmp_path):
    rows, driver, faults = _restart(tmp_path, resume=True)
    assert driver.resumed == ["lost"]
    assert rows["lost"]["vm_state"] == "active" and rows["lost"]["power_state"] == power.RUNNING
    assert rows["off"]["vm_state"] == "stopped" and not faults


def test_a_guest_that_cannot_come_back_is_error_with_a_fault(tmp_path):
    rows, _, faults = _restart(tmp_path, resume=True, fail_resume=True)
    assert rows["lost"]["vm_state"] == "error"
    assert faults and "disk is missing" in faults[0]
