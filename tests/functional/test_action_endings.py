"""The instance action of a one-step operation ends with its host's step: message Error when that failed.

Through the real `openstack` CLI against `kilonova up`, on a fake host whose crash dumps fail
(``[fake_driver] fail_steps``): the action's last event and the action itself say Error, while a rescue
and an unrescue on the same server end without one.
"""
from __future__ import annotations

import shutil
import time

import pytest

from tests.cloud import new_cloud


@pytest.fixture(scope="module")
def failing_dumps():
    cloud = new_cloud(hosts=1, config={"fake_driver": {"fail_steps": "trigger_crash_dump"}})
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def action_of(cloud, server: str, name: str, timeout: float = 30) -> dict:
    """The server's newest ``name`` action once its events have all finished, as the API shows it (2.84)."""
    deadline = time.monotonic() + timeout
    with cloud.http("compute") as compute:
        headers = {"OpenStack-API-Version": "compute 2.84"}
        while True:
            listed = compute.get(f"/servers/{server}/os-instance-actions", headers=headers).json()["instanceActions"]
            mine = [a for a in listed if a["action"] == name]
            if mine:
                shown = compute.get(f"/servers/{server}/os-instance-actions/{mine[0]['request_id']}",
                                    headers=headers).json()["instanceAction"]
                if shown["events"] and all(e["finish_time"] for e in shown["events"]):
                    return shown
            assert time.monotonic() < deadline, f"no finished {name} action: {listed}"
            time.sleep(0.3)


def test_a_failed_step_ends_its_action_in_error_and_good_ones_do_not(failing_dumps):
    cloud = failing_dumps
    server = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                             "private", "--wait", "vm-endings", fmt_json=True)["id"]
    cloud.openstack("--os-compute-api-version", "2.17", "server", "dump", "create", server)
    dump = action_of(cloud, server, "trigger_crash_dump")
    assert [(e["event"], e["result"]) for e in dump["events"]] == [("compute_trigger_crash_dump", "Error")]
    assert dump["message"] == "Error"
    assert "Simulated failure of trigger_crash_dump" in dump["events"][0]["details"]

    cloud.openstack("server", "rescue", server)
    rescue = action_of(cloud, server, "rescue")
    assert [(e["event"], e["result"]) for e in rescue["events"]] == [("compute_rescue_instance", "Success")]
    assert rescue["message"] is None
    cloud.openstack("server", "unrescue", server)
    unrescue = action_of(cloud, server, "unrescue")
    assert unrescue["message"] is None and unrescue["events"][0]["result"] == "Success"
    cloud.openstack("server", "delete", "--wait", server)
