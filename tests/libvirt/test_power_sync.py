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
