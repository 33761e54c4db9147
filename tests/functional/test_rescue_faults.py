"""Failures of rescue and friends on the host, and operations whose host never reports (their deadline)."""
from __future__ import annotations

import shutil
import time

import pytest

from tests.cloud import new_cloud, wait_for


@pytest.fixture(scope="module")
def faulty():
    """compute1 holds every unrescue 8 s (past [compute] action_timeout); compute2's driver fails rescue,
    set_admin_password and trigger_crash_dump."""
    cloud = new_cloud(hosts=2, config={
        "fake_driver": {"fail_spawn_hosts": "", "step_delays": "unrescue=8",
                        "fail_steps": "rescue,set_admin_password,trigger_crash_dump", "fail_step_hosts": "compute2"},
        "compute": {"action_timeout": "3"}, "conductor": {"reconcile_interval": "1"}})
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def boot_on(cloud, host: str, name: str) -> str:
    with cloud.http("compute") as compute:
        image = cloud.openstack("image", "show", "kilonova-tiny", fmt_json=True)["id"]
        net = cloud.openstack("network", "show", "private", fmt_json=True)["id"]
        created = compute.post("/servers", headers={"OpenStack-API-Version": "compute 2.74"}, json={"server": {
            "name": name, "flavorRef": "1", "imageRef": image, "networks": [{"uuid": net}], "host": host}})
        assert created.status_code == 202, created.text
    uuid = created.json()["server"]["id"]
    cloud.wait_status(uuid, "ACTIVE")
    return uuid


def action(cloud, uuid: str, body: dict, version: str = "2.1"):
    with cloud.http("compute") as compute:
        return compute.post(f"/servers/{uuid}/action", json=body,
                            headers={"OpenStack-API-Version": f"compute {version}"})


def unrescue_event_finished(cloud, uuid: str) -> bool:
    """Whether the host's compute_unrescue_instance event of the server's unrescue has ended."""
    with cloud.http("compute") as compute:
        headers = {"OpenStack-API-Version": "compute 2.51"}
        actions = compute.get(f"/servers/{uuid}/os-instance-actions", headers=headers).json()["instanceActions"]
        request = next(a["request_id"] for a in actions if a["action"] == "unrescue")
        events = compute.get(f"/servers/{uuid}/os-instance-actions/{request}", headers=headers).json()[
            "instanceAction"]["events"]
    return any(e["event"] == "compute_unrescue_instance" and e["finish_time"] for e in events)


def test_a_failed_rescue_leaves_the_server_in_error_with_a_fault(faulty):
    uuid = boot_on(faulty, "compute2", "rescue-fails")
    assert action(faulty, uuid, {"rescue": None}).status_code == 200
    failed = faulty.wait_status(uuid, "ERROR")
    assert f"Instance {uuid} cannot be rescued: Driver Error: Simulated failure of rescue" in \
        failed["fault"]["message"]
    assert failed["OS-EXT-STS:task_state"] is None
    listed = faulty.openstack("server", "event", "list", uuid, fmt_json=True)
    rescue = next(row for row in listed if row["Action"] == "rescue")
    shown = faulty.openstack("server", "event", "show", uuid, rescue["Request ID"], fmt_json=True)
    assert shown["message"] == "Error" and shown["events"][0]["result"] == "Error"
    faulty.openstack("server", "delete", "--wait", uuid)


def test_a_guest_agent_failure_is_a_409_that_hides_its_details(faulty):
    uuid = boot_on(faulty, "compute2", "password-fails")
    reply = action(faulty, uuid, {"changePassword": {"adminPass": "secret-1"}})
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == \
        f"Failed to set admin password on {uuid} because error setting admin password"
    shown = faulty.wait_status(uuid, "ACTIVE")
    assert shown["OS-EXT-STS:task_state"] is None
    # a failed crash dump: accepted (a cast, as upstream), recorded as an Error event, the server unchanged
    assert action(faulty, uuid, {"trigger_crash_dump": None}, "2.17").status_code == 202
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = faulty.openstack("server", "event", "list", uuid, fmt_json=True)
        dump = next((row for row in listed if row["Action"] == "trigger_crash_dump"), None)
        detail = dump and faulty.openstack("server", "event", "show", uuid, dump["Request ID"], fmt_json=True)
        if detail and detail["events"] and detail["events"][0].get("result") == "Error":
            break
        time.sleep(0.5)
    assert detail["events"][0]["result"] == "Error"
    assert faulty.wait_status(uuid, "ACTIVE")["OS-EXT-STS:task_state"] is None
    faulty.openstack("server", "delete", "--wait", uuid)


def test_an_unrescue_its_host_never_reports_ends_in_error_at_its_deadline(faulty):
    uuid = boot_on(faulty, "compute1", "unrescue-hangs")
    assert action(faulty, uuid, {"rescue": None}).status_code == 200
    faulty.wait_status(uuid, "RESCUE")
    assert action(faulty, uuid, {"unrescue": None}).status_code == 202
    ended = faulty.wait_status(uuid, "ERROR", timeout=20)
    assert ended["OS-EXT-STS:task_state"] is None
    assert ended["fault"]["message"].startswith("The unrescue did not finish: its compute host did not report")
    # the late report of the host (its unrescue event finishing, 8 s after it began) does not undo that
    wait_for(lambda: unrescue_event_finished(faulty, uuid), "the host's late unrescue report", timeout=60)
    assert faulty.openstack("server", "show", uuid, fmt_json=True)["status"] == "ERROR"
    faulty.openstack("server", "delete", "--wait", uuid)
