"""The compute agent's createImage step as an instance action: compute_snapshot_instance recorded (Success, or
Error with what failed) and the action finished, through a conductor stub that keeps what it is told."""
from __future__ import annotations

import asyncio

from kilonova.compute.agent.manager import ComputeManager
from kilonova.compute.virt.fake import FakeDriver
from kilonova.config import Config
from tests.unit.test_create_image import SERVER, StubConductor, StubImages


class RecordingConductor(StubConductor):
    def __init__(self, instance: dict):
        super().__init__(instance)
        self.events: list[tuple] = []
        self.finished: list[tuple] = []

    async def call(self, method: str, **kwargs):
        if method == "action_event":
            self.events.append((kwargs["phase"], kwargs["event"], kwargs["request_id"], kwargs.get("result"),
                                kwargs.get("details")))
            return True
        if method == "action_finish":
            self.finished.append((kwargs["action"], kwargs["request_id"], kwargs["message"]))
            return None
        return await super().call(method, **kwargs)


def _agent(tmp_path, images, task_state="image_snapshot_pending"):
    conf = Config.load(state_dir=tmp_path)
    driver = FakeDriver("h1", conf, images)
    conductor = RecordingConductor({**SERVER, "task_state": task_state})
    manager = ComputeManager("h1", driver, conductor, placement=None, network=None, conf=conf, images=images)
    asyncio.run(driver.spawn(SERVER, {}, []))
    return manager, conductor


def test_a_snapshot_records_its_step_and_finishes_its_action(tmp_path):
    manager, conductor = _agent(tmp_path, StubImages())
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1", request_id="req-snap"))
    assert conductor.events == [("start", "compute_snapshot_instance", "req-snap", None, None),
                                ("finish", "compute_snapshot_instance", "req-snap", "Success", None)]
    assert conductor.finished == [("createImage", "req-snap", None)]


def test_a_failed_upload_is_an_error_step_and_a_failed_action(tmp_path):
    manager, conductor = _agent(tmp_path, StubImages(fail_upload=True))
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1", request_id="req-snap"))
    finish = conductor.events[-1]
    assert finish[:4] == ("finish", "compute_snapshot_instance", "req-snap", "Error") and "store is full" in finish[4]
    assert conductor.finished == [("createImage", "req-snap", "Error")]
    assert conductor.instance["task_state"] is None


def test_a_server_no_longer_waiting_fails_the_step(tmp_path):
    manager, conductor = _agent(tmp_path, StubImages(), task_state="deleting")
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1", request_id="req-snap"))
    assert conductor.events[-1][3] == "Error" and conductor.finished == [("createImage", "req-snap", "Error")]


def test_without_a_request_id_nothing_is_recorded(tmp_path):
    manager, conductor = _agent(tmp_path, StubImages())
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1"))
    assert conductor.events == [] and conductor.finished == []
