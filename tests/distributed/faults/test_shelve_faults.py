"""Shelving when a compute dies (``kill -9``) in the middle, on a deployment with every service in its own
process (RabbitMQ + PostgreSQL, two cells; the package's, conftest.py): within ``[compute] shelve_timeout``
each server ends ACTIVE on its host or SHELVED_OFFLOADED holding nothing, can be unshelved again, and the
Placement audit is clean; a shelve cut short leaves no snapshot image behind.

A compute is caught mid-step by holding the fake hypervisor in that step (``[fake_driver] step_delays`` /
``spawn_delay`` / ``destroy_delay``, set by restarting it) and waiting for the server's task state.
"""
from __future__ import annotations

import signal

import pytest

from tests.distributed.cluster import wait_for
from tests.distributed.faults.faults import SHELVE_TIMEOUT
from tests.distributed.faults.test_faults import boot, claims_match, ports_of, restart_compute_cell1, task_state


@pytest.fixture
def api(cluster):
    with cluster.compute_api("2.91") as client:
        yield client


def server(api, uuid: str) -> dict:
    return api.get(f"/servers/{uuid}").json()["server"]


def reaches(cluster, api, uuid: str, status: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (lambda s: s if s["status"] == status and not s["OS-EXT-STS:task_state"] else None)(
        server(api, uuid)), timeout, f"{uuid} {status}", cluster)


def act(api, uuid: str, body: dict) -> None:
    reply = api.post(f"/servers/{uuid}/action", json=body)
    assert reply.status_code == 202, reply.text


def holds_nothing(cluster, uuid: str) -> None:
    with cluster.placement_api() as placement:
        assert placement.get(f"/allocations/{uuid}").json()["allocations"] == {}


def test_a_compute_killed_mid_unshelve_leaves_the_server_offloaded_holding_nothing(cluster, api, image, zone1):
    uuid = boot(api, image, "unshelve-killed", zone1)
    reaches(cluster, api, uuid, "ACTIVE")
    act(api, uuid, {"shelve": None})
    reaches(cluster, api, uuid, "SHELVED_OFFLOADED")
    holds_nothing(cluster, uuid)
    restart_compute_cell1(cluster, spawn_delay="60")
    act(api, uuid, {"unshelve": None})
    wait_for(lambda: task_state(api, uuid) == "spawning", 30, "the unshelve's spawn to start", cluster)
    cluster.processes["compute-cell1"].kill()
    shown = reaches(cluster, api, uuid, "SHELVED_OFFLOADED", timeout=SHELVE_TIMEOUT + 30)
    assert shown["OS-EXT-SRV-ATTR:host"] is None
    holds_nothing(cluster, uuid)
    assert all(not p["binding:host_id"] for p in ports_of(cluster, uuid))
    claims_match(cluster, [])
    restart_compute_cell1(cluster)  # the unshelve it had in hand comes back, and is dropped
    act(api, uuid, {"unshelve": None})
    shown = reaches(cluster, api, uuid, "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"].startswith("cell1-")
    claims_match(cluster, [shown])
    assert api.delete(f"/servers/{uuid}").status_code == 204
    wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "the delete", cluster)
    claims_match(cluster, [])


def snapshots_named(cluster, name: str) -> list[dict]:
    """The images called ``name`` in the image service, through the openstack CLI."""
    return cluster.openstack("image", "list", "--name", name, "--long", fmt_json=True) or []


def test_a_compute_killed_mid_shelve_leaves_the_server_where_it_was(cluster, api, image, zone1):
    uuid = boot(api, image, "shelve-killed", zone1)
    host = reaches(cluster, api, uuid, "ACTIVE")["OS-EXT-SRV-ATTR:host"]
    restart_compute_cell1(cluster, step_delays="snapshot=60")
    act(api, uuid, {"shelve": None})
    wait_for(lambda: task_state(api, uuid) == "shelving_image_pending_upload", 30, "the snapshot to start", cluster)
    cluster.processes["compute-cell1"].kill()
    [snapshot] = snapshots_named(cluster, "shelve-killed-shelved")  # half-made: only the dead compute knew it
    assert snapshot["Status"] in ("queued", "saving")
    # The compute stays down (a compute that comes back drops the shelve it had in hand and its image):
    # the conductor's reconcile pass clears the shelve and deletes the image.
    shown = reaches(cluster, api, uuid, "ACTIVE", timeout=SHELVE_TIMEOUT + 30)
    assert snapshots_named(cluster, "shelve-killed-shelved") == []
    restart_compute_cell1(cluster)
    assert shown["OS-EXT-SRV-ATTR:host"] == host
    claims_match(cluster, [shown])
    # The guest is still there: the server shelves and unshelves again.
    act(api, uuid, {"shelve": None})
    reaches(cluster, api, uuid, "SHELVED_OFFLOADED")
    holds_nothing(cluster, uuid)
    act(api, uuid, {"unshelve": None})
    shown = reaches(cluster, api, uuid, "ACTIVE")
    claims_match(cluster, [shown])
    assert api.delete(f"/servers/{uuid}").status_code == 204
    wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "the delete", cluster)
    claims_match(cluster, [])


def test_a_conductor_killed_between_clearing_a_shelve_and_deleting_its_snapshot_leaks_no_image(
        cluster, api, image, zone1):
    """The conductor's reconcile pass clears a shelve whose compute died, then deletes its snapshot: it is
    killed (kill -9) in between, its image delete held by a frozen image service (killed too, so that the delete
    is never read). The server no longer names the image; the ledger of shelve snapshots does, and the sweep of the
    restarted conductor deletes it."""
    uuid = boot(api, image, "sweep-killed", zone1)
    host = reaches(cluster, api, uuid, "ACTIVE")["OS-EXT-SRV-ATTR:host"]
    restart_compute_cell1(cluster, step_delays="snapshot=60")
    act(api, uuid, {"shelve": None})
    wait_for(lambda: task_state(api, uuid) == "shelving_image_pending_upload", 30, "the snapshot to start", cluster)
    cluster.processes["compute-cell1"].kill()
    [snapshot] = snapshots_named(cluster, "sweep-killed-shelved")
    cluster.processes["image"].popen.send_signal(signal.SIGSTOP)  # the conductor's delete of it waits for an answer
    try:
        shown = reaches(cluster, api, uuid, "ACTIVE", timeout=SHELVE_TIMEOUT + 30)  # the shelve is cleared
    finally:
        cluster.processes["conductor"].kill()
        # kill -9 while stopped: the delete the image service had not read yet dies with it; then it starts again.
        cluster.restart("image")
    try:
        assert [s["ID"] for s in snapshots_named(cluster, "sweep-killed-shelved")] == [snapshot["ID"]]
    finally:
        cluster.restart("conductor")
    wait_for(lambda: snapshots_named(cluster, "sweep-killed-shelved") == [], 30, "the snapshot to be swept", cluster)
    restart_compute_cell1(cluster)
    assert shown["OS-EXT-SRV-ATTR:host"] == host
    claims_match(cluster, [shown])
    assert api.delete(f"/servers/{uuid}").status_code == 204
    wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "the delete", cluster)
    claims_match(cluster, [])


def test_an_offload_whose_compute_died_is_finished_by_the_conductor(cluster, api, image, zone1):
    uuid = boot(api, image, "offload-killed", zone1)
    reaches(cluster, api, uuid, "ACTIVE")
    restart_compute_cell1(cluster, destroy_delay="60")
    act(api, uuid, {"shelve": None})  # offloaded at once ([DEFAULT] shelved_offload_time 0)
    wait_for(lambda: task_state(api, uuid) == "shelving_offloading", 30, "the offload to start", cluster)
    cluster.processes["compute-cell1"].kill()
    shown = reaches(cluster, api, uuid, "SHELVED_OFFLOADED", timeout=SHELVE_TIMEOUT + 30)
    assert shown["OS-EXT-SRV-ATTR:host"] is None
    holds_nothing(cluster, uuid)
    assert all(not p["binding:host_id"] for p in ports_of(cluster, uuid))
    claims_match(cluster, [])
    restart_compute_cell1(cluster)
    act(api, uuid, {"unshelve": None})
    shown = reaches(cluster, api, uuid, "ACTIVE")
    claims_match(cluster, [shown])
    assert api.delete(f"/servers/{uuid}").status_code == 204
    wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "the delete", cluster)
    claims_match(cluster, [])
