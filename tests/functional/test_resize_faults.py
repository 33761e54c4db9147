"""Resize and cold migration when a destination fails or hangs, and the automatic confirm: the server ends
ACTIVE on exactly one host (or ERROR with a fault saying what to do), the migration record ends, and the
allocation audit finds nothing leaked. Failure injection: the fake driver's ``[fake_driver] fail_steps`` /
``step_delays``."""
from __future__ import annotations

import shutil

import pytest

from tests.cloud import new_cloud
from tests.functional.test_resize_cli import (BOOT, allocations, move_records, provider_uuid,
                                              wait_move_ended)


@pytest.fixture(scope="module")
def failing_cloud():
    """compute2's finish_migration fails; moves left in VERIFY_RESIZE are confirmed after 5 s."""
    cloud = new_cloud(hosts=3, config={
        "fake_driver": {"fail_steps": "finish_migration", "fail_step_hosts": "compute2"},
        "DEFAULT": {"resize_confirm_window": "5", "allow_resize_to_same_host": "true"},
        "conductor": {"reconcile_interval": "1"}})
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def hanging_cloud():
    """Every destination hangs in finish_migration for a minute; moves time out after 10 s."""
    cloud = new_cloud(hosts=2, config={
        "fake_driver": {"step_delays": "finish_migration=60"},
        "compute": {"move_timeout": "10"}, "conductor": {"reconcile_interval": "1"}})
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def on_host(cloud, name: str, host: str) -> dict:
    """An m1.tiny server built on ``host`` (2.74)."""
    return cloud.openstack("--os-compute-api-version", "2.74", "server", "create", "--flavor", "m1.tiny", *BOOT,
                           "--host", host, "--wait", name, fmt_json=True)


def test_a_failing_destination_rolls_the_move_back_to_the_source(failing_cloud):
    cloud = failing_cloud
    server = on_host(cloud, "rz-fail", "compute1")
    cloud.openstack("--os-compute-api-version", "2.56", "server", "migrate", "--host", "compute2", server["id"])
    move = wait_move_ended(cloud, server["id"], "error")
    assert (move["source_compute"], move["dest_compute"]) == ("compute1", "compute2")
    shown = cloud.wait_status(server["id"], "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"] == "compute1"
    fault = move_records(cloud, server["id"])[1][-1]
    assert "failed on compute2" in fault and "rolled back to compute1" in fault
    assert allocations(cloud, server["id"]) == {provider_uuid(cloud, "compute1"): {"DISK_GB": 1, "MEMORY_MB": 512,
                                                                                   "VCPU": 1}}
    assert allocations(cloud, move["uuid"]) == {}
    events = cloud.openstack("server", "event", "list", server["id"], fmt_json=True)
    migrate = next(a for a in events if a["Action"] == "migrate")
    detail = cloud.openstack("--os-compute-api-version", "2.51", "server", "event", "show", server["id"],
                             migrate["Request ID"], fmt_json=True)
    results = {e["event"]: e["result"] for e in detail["events"]}
    assert results["compute_finish_resize"] == "Error"
    assert results["compute_finish_revert_resize"] == "Success"
    # The guest runs on compute1 again.
    assert "login:" in cloud.openstack("console", "log", "show", server["id"]).stdout.splitlines()[-1]
    cloud.audit()
    cloud.openstack("server", "delete", "--wait", server["id"])
    cloud.audit()


def test_verify_resize_is_confirmed_after_the_window(failing_cloud):
    cloud = failing_cloud
    server = on_host(cloud, "rz-window", "compute1")
    # Only compute1 can take it (compute2 fails, compute3 is disabled): a resize on the same host.
    cloud.openstack("compute", "service", "set", "--disable", "compute3", "nova-compute")
    cloud.openstack("compute", "service", "set", "--disable", "compute2", "nova-compute")
    try:
        cloud.openstack("server", "resize", "--flavor", "m1.small", server["id"])
        # Nobody confirms it (under load the short VERIFY_RESIZE may pass between two looks: not waited for).
        move = wait_move_ended(cloud, server["id"], "confirmed", timeout=40)
        assert move["source_compute"] == move["dest_compute"] == "compute1"
        shown = cloud.wait_status(server["id"], "ACTIVE")
        assert shown["flavor"]["name"] == "m1.small"
        assert allocations(cloud, server["id"]) == {provider_uuid(cloud, "compute1"): {
            "DISK_GB": 20, "MEMORY_MB": 2048, "VCPU": 1}}
        assert allocations(cloud, move["uuid"]) == {}
        assert "confirmResize" in [a["Action"] for a in cloud.openstack("server", "event", "list", server["id"],
                                                                         fmt_json=True)]
        cloud.audit()
    finally:
        for host in ("compute2", "compute3"):
            cloud.openstack("compute", "service", "set", "--enable", host, "nova-compute", check=False)
        cloud.openstack("server", "delete", "--wait", server["id"], check=False)


def test_a_destination_that_hangs_is_rolled_back_after_the_deadline(hanging_cloud):
    cloud = hanging_cloud
    server = on_host(cloud, "rz-hang", "compute1")
    cloud.openstack("server", "resize", "--flavor", "m1.small", server["id"])
    move = wait_move_ended(cloud, server["id"], "error", timeout=60)
    assert move["dest_compute"] == "compute2"
    shown = cloud.wait_status(server["id"], "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"] == "compute1" and shown["flavor"]["name"] == "m1.tiny"
    fault = move_records(cloud, server["id"])[1][-1]
    assert "stuck at finish_resize" in fault and "runs on its source host compute1" in fault
    assert allocations(cloud, server["id"]) == {provider_uuid(cloud, "compute1"): {"DISK_GB": 1, "MEMORY_MB": 512,
                                                                                   "VCPU": 1}}
    assert allocations(cloud, move["uuid"]) == {}
    cloud.audit()


def resized_then_restarted(cloud, name: str) -> dict:
    """A server built on compute1, resized to m1.small (on compute2, VERIFY_RESIZE), then the whole cloud
    stopped and started again on the same state."""
    cloud.start()
    server = on_host(cloud, name, "compute1")
    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", server["id"])
    assert cloud.wait_status(server["id"], "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"] == "compute2"
    cloud.stop()
    cloud.start()
    return server


def test_verify_resize_survives_a_restart_of_the_cloud():
    cloud = new_cloud(hosts=2)
    try:
        server = resized_then_restarted(cloud, "rz-restart")
        shown = cloud.wait_status(server["id"], "VERIFY_RESIZE")
        assert shown["OS-EXT-SRV-ATTR:host"] == "compute2"
        assert "login:" in cloud.openstack("console", "log", "show", server["id"]).stdout  # its guest is back
        cloud.audit()
        cloud.openstack("server", "resize", "confirm", server["id"])
        shown = cloud.wait_status(server["id"], "ACTIVE")
        assert shown["flavor"]["name"] == "m1.small"
        assert allocations(cloud, server["id"]) == {provider_uuid(cloud, "compute2"): {
            "DISK_GB": 20, "MEMORY_MB": 2048, "VCPU": 1}}
        cloud.audit()
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)


def test_a_resize_reverts_after_a_restart_of_the_cloud():
    """The source keeps what a revert needs across a restart of ``kilonova up`` on the same state."""
    cloud = new_cloud(hosts=2)
    try:
        server = resized_then_restarted(cloud, "rz-revert-restart")
        cloud.openstack("server", "resize", "revert", server["id"])
        shown = cloud.wait_status(server["id"], "ACTIVE", timeout=60)
        assert shown["OS-EXT-SRV-ATTR:host"] == "compute1" and shown["flavor"]["name"] == "m1.tiny"
        assert shown["OS-EXT-STS:power_state"] in ("Running", 1)
        assert move_records(cloud, server["id"])[0][-1]["status"] == "reverted"
        assert allocations(cloud, server["id"]) == {provider_uuid(cloud, "compute1"): {
            "DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}}
        assert "resize reverted" in cloud.openstack("console", "log", "show", server["id"]).stdout
        cloud.audit()
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)
