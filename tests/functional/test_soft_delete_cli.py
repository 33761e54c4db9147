"""Soft delete (``[DEFAULT] reclaim_instance_interval``), restore and forceDelete, and the reclaim pass."""
from __future__ import annotations

import shutil
import time

import pytest

from tests.cloud import new_cloud, wait_for

RECLAIM_SECONDS = 40  # long enough for the CLI steps on a soft-deleted server on a busy machine (the longest,
# listing and quota checks, take 12-15 s at load 8 with the CLIs forked from a warm process)


def usage(cloud) -> dict[str, int]:
    """Total Placement usage by resource class (over HTTP: quicker than the CLI, which the reclaim races)."""
    totals: dict[str, int] = {}
    with cloud.http("placement") as placement:
        for provider in placement.get("/resource_providers").json()["resource_providers"]:
            for rc, used in placement.get(f"/resource_providers/{provider['uuid']}/usages").json()["usages"].items():
                totals[rc] = totals.get(rc, 0) + used
    return totals


@pytest.fixture(scope="module")
def soft_cloud():
    # Shelved servers stay on their host (never offloaded); a snapshot takes a few seconds.
    cloud = new_cloud(hosts=2, config={"DEFAULT": {"reclaim_instance_interval": str(RECLAIM_SECONDS),
                                                   "shelved_offload_time": "-1"},
                                       "conductor": {"reconcile_interval": "1"},
                                       "fake_driver": {"fail_spawn_hosts": "", "step_delays": "snapshot=4"}})
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def boot(cloud, name: str, cloud_name: str = "kilonova") -> dict:
    return cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                           "private", "--wait", name, fmt_json=True, cloud=cloud_name)


def gone(cloud, server_id: str, timeout: float = 30) -> bool:
    """Whether the server is gone within ``timeout`` (polled over HTTP), as `openstack server show` says too."""
    wait_for(lambda: cloud.server(server_id) is None, f"{server_id} to be gone", timeout)
    return cloud.openstack("server", "show", server_id, check=False).returncode != 0


def test_delete_keeps_the_server_soft_deleted_then_restore(soft_cloud):
    cloud = soft_cloud
    before = usage(cloud)
    server = boot(cloud, "soft-1")
    booted = usage(cloud)
    assert booted["MEMORY_MB"] - before.get("MEMORY_MB", 0) == 512
    # the reclaim would take it after a few seconds: restore right away
    cloud.openstack("server", "delete", server["id"])
    soft = cloud.wait_status(server["id"], "SOFT_DELETED", timeout=10)
    assert soft["OS-EXT-STS:vm_state"] == "soft-delete" and soft["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    assert usage(cloud) == booted  # resources kept while soft-deleted
    assert cloud.openstack("port", "list", "--device-id", server["id"], fmt_json=True)
    assert "Power down." in cloud.openstack("console", "log", "show", server["id"]).stdout
    cloud.openstack("server", "restore", server["id"])
    restored = cloud.wait_status(server["id"], "ACTIVE", timeout=10)
    assert restored["OS-EXT-STS:power_state"] in ("Running", 1)
    time.sleep(3)  # a restored server is no longer due (its deleted_at is gone)
    assert cloud.openstack("server", "show", server["id"], fmt_json=True)["status"] == "ACTIVE"
    # restore only from SOFT_DELETED
    refused = cloud.openstack("server", "restore", server["id"], check=False)
    assert refused.returncode != 0 and \
        f"Cannot 'restore' instance {server['id']} while it is in vm_state active" in refused.stderr
    cloud.openstack("server", "delete", server["id"])
    cloud.wait_status(server["id"], "SOFT_DELETED", timeout=10)
    cloud.nova("force-delete", server["id"])
    assert gone(cloud, server["id"], timeout=20)
    assert usage(cloud) == before


def test_the_reclaim_pass_deletes_for_real_after_the_interval(soft_cloud):
    cloud = soft_cloud
    before = usage(cloud)
    server = boot(cloud, "soft-2")
    sdk = cloud.sdk()
    sdk.compute.delete_server(server["id"])
    cloud.wait_status(server["id"], "SOFT_DELETED", timeout=10)
    assert usage(cloud).get("MEMORY_MB", 0) - before.get("MEMORY_MB", 0) == 512
    # deleting again changes nothing
    cloud.openstack("server", "delete", server["id"])
    assert cloud.openstack("server", "show", server["id"], fmt_json=True)["status"] == "SOFT_DELETED"
    assert gone(cloud, server["id"], timeout=RECLAIM_SECONDS + 20)
    assert usage(cloud) == before
    assert cloud.openstack("port", "list", "--device-id", server["id"], fmt_json=True) == []


def test_force_delete_of_an_active_server_and_restore_over_the_sdk(soft_cloud):
    cloud = soft_cloud
    before = usage(cloud)
    first = boot(cloud, "soft-3")
    cloud.nova("force-delete", first["id"])  # any state: deleted at once
    assert gone(cloud, first["id"], timeout=20)
    second = boot(cloud, "soft-4")
    cloud.sdk().compute.delete_server(second["id"])
    cloud.wait_status(second["id"], "SOFT_DELETED", timeout=10)
    cloud.nova("restore", second["id"])
    cloud.wait_status(second["id"], "ACTIVE", timeout=10)
    cloud.openstack("server", "delete", second["id"])
    cloud.wait_status(second["id"], "SOFT_DELETED", timeout=10)
    cloud.openstack("server", "delete", "--force", second["id"])  # the openstack CLI's forceDelete
    assert gone(cloud, second["id"], timeout=20)
    assert usage(cloud) == before


def test_a_server_that_never_ran_is_deleted_at_once(soft_cloud):
    cloud = soft_cloud
    cloud.openstack("flavor", "create", "--ram", "512", "--disk", "900000", "--vcpus", "1", "too-big")
    server = cloud.openstack("server", "create", "--flavor", "too-big", "--image", "kilonova-tiny", "--network",
                             "private", "never", fmt_json=True)
    assert cloud.wait_status(server["id"], "ERROR", timeout=30)["OS-SRV-USG:launched_at"] is None
    cloud.openstack("server", "delete", server["id"])
    assert gone(cloud, server["id"], timeout=20)


def test_soft_deleted_servers_leave_the_quota_and_restore_must_fit(soft_cloud):
    cloud = soft_cloud
    cloud.openstack("quota", "set", "--instances", "1", "demo")
    try:
        first = boot(cloud, "quota-1", "kilonova-demo")
        cloud.openstack("server", "delete", first["id"], cloud="kilonova-demo")
        cloud.wait_status(first["id"], "SOFT_DELETED", timeout=10, cloud="kilonova-demo")
        second = boot(cloud, "quota-2", "kilonova-demo")  # the soft-deleted one does not count
        refused = cloud.openstack("server", "restore", first["id"], cloud="kilonova-demo", check=False)
        assert refused.returncode != 0
        assert "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances" in refused.stderr
        assert cloud.openstack("server", "show", first["id"], fmt_json=True)["status"] == "SOFT_DELETED"
        cloud.openstack("server", "delete", second["id"], cloud="kilonova-demo")  # soft: no longer counted
        cloud.wait_status(second["id"], "SOFT_DELETED", timeout=10)
        cloud.openstack("server", "restore", first["id"], cloud="kilonova-demo")
        cloud.wait_status(first["id"], "ACTIVE", timeout=10)
        actions = [row["Action"] for row in
                   cloud.openstack("server", "event", "list", first["id"], fmt_json=True, cloud="kilonova-demo")]
        assert actions.count("delete") == 1 and "restore" in actions and "create" in actions, actions
        delete = next(row for row in cloud.openstack("server", "event", "list", first["id"], fmt_json=True)
                      if row["Action"] == "delete")
        shown = cloud.openstack("server", "event", "show", first["id"], delete["Request ID"], fmt_json=True)
        assert [e["event"] for e in shown["events"]] == ["compute_soft_delete_instance"]
        for server in (first, second):
            cloud.openstack("server", "delete", "--force", server["id"])
            assert gone(cloud, server["id"])
    finally:
        cloud.openstack("quota", "set", "--instances", "10", "demo")


def listed(cloud, *args: str, cloud_name: str = "kilonova") -> dict[str, str]:
    """``openstack server list ARGS`` as {id: status}."""
    rows = cloud.openstack("server", "list", *args, fmt_json=True, cloud=cloud_name)
    return {row["ID"]: row["Status"] for row in rows}


def test_soft_deleted_servers_list_only_as_deleted_ones_as_upstream(soft_cloud):
    """Upstream's list leaves soft-deleted servers out unless an administrator asks for the deleted
    ones (``--deleted``, which gives the deleted and soft-deleted ones only); a user's ``deleted`` is
    ignored, and ``status=SOFT_DELETED`` alone finds none (its default ``deleted=False`` excludes them)."""
    cloud = soft_cloud
    live = boot(cloud, "listed-live", "kilonova-demo")
    soft = boot(cloud, "listed-soft", "kilonova-demo")
    gone_for_good = boot(cloud, "listed-gone", "kilonova-demo")
    try:
        cloud.openstack("server", "delete", soft["id"], cloud="kilonova-demo")
        cloud.wait_status(soft["id"], "SOFT_DELETED", timeout=10)
        cloud.openstack("server", "delete", "--force", gone_for_good["id"], cloud="kilonova-demo")
        assert gone(cloud, gone_for_good["id"])
        for args, cloud_name in (((), "kilonova-demo"), (("--all-projects",), "kilonova"),
                                 (("--deleted",), "kilonova-demo"),
                                 (("--status", "SOFT_DELETED"), "kilonova-demo"),
                                 (("--status", "SOFT_DELETED", "--all-projects"), "kilonova")):
            shown = listed(cloud, *args, cloud_name=cloud_name)
            assert soft["id"] not in shown and gone_for_good["id"] not in shown, (args, cloud_name)
        assert live["id"] in listed(cloud, cloud_name="kilonova-demo")
        deleted = listed(cloud, "--deleted", "--all-projects")
        assert deleted.get(soft["id"]) == "SOFT_DELETED" and deleted.get(gone_for_good["id"]) == "DELETED"
        assert live["id"] not in deleted
        assert set(listed(cloud, "--deleted", "--all-projects", "--status", "SOFT_DELETED")) & \
            {soft["id"], gone_for_good["id"], live["id"]} == {soft["id"]}
        assert set(listed(cloud, "--all-projects", "--status", "DELETED")) & \
            {soft["id"], gone_for_good["id"], live["id"]} == {gone_for_good["id"]}
        refused = cloud.openstack("server", "list", "--status", "DELETED", cloud="kilonova-demo", check=False)
        assert refused.returncode != 0 and "Only administrators may list deleted instances" in refused.stderr
        # a time window without ``deleted`` shows every kind (the openstack CLI sends deleted=False: novaclient)
        window = cloud.nova("list", "--changes-since", live["created"], "--all-tenants").stdout
        assert all(server["id"] in window for server in (soft, gone_for_good, live)), window
    finally:
        for server in (live, soft):
            cloud.openstack("server", "delete", "--force", server["id"], check=False)


def snapshots_of(cloud, server_id: str) -> list[dict]:
    return cloud.openstack("image", "list", "--property", f"instance_uuid={server_id}", fmt_json=True)


def test_a_shelved_servers_snapshot_goes_with_its_soft_delete_and_with_a_delete_while_shelving(soft_cloud):
    """As upstream's delete, soft or not, the snapshot of a SHELVED server is deleted; a server deleted
    while its shelve snapshot is being taken leaves no image either."""
    cloud = soft_cloud
    shelved = boot(cloud, "shelved-soft")
    cloud.openstack("server", "shelve", "--wait", shelved["id"])
    cloud.wait_status(shelved["id"], "SHELVED", timeout=30)
    assert [i["Name"] for i in snapshots_of(cloud, shelved["id"])] == ["shelved-soft-shelved"]
    cloud.openstack("server", "delete", shelved["id"])
    cloud.wait_status(shelved["id"], "SOFT_DELETED", timeout=10)
    assert snapshots_of(cloud, shelved["id"]) == []
    cloud.openstack("server", "delete", "--force", shelved["id"])
    assert gone(cloud, shelved["id"])

    shelving = boot(cloud, "shelving-gone")
    cloud.openstack("server", "shelve", shelving["id"])  # the snapshot takes 4 s
    deadline = time.monotonic() + 10
    while not snapshots_of(cloud, shelving["id"]):
        assert time.monotonic() < deadline, "the shelve made no image"
        time.sleep(0.3)
    cloud.openstack("server", "delete", shelving["id"])  # mid-shelve: deleted for real
    assert gone(cloud, shelving["id"], timeout=90)
    deadline = time.monotonic() + 30
    while snapshots_of(cloud, shelving["id"]):
        assert time.monotonic() < deadline, snapshots_of(cloud, shelving["id"])
        time.sleep(0.5)
