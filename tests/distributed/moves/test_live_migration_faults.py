"""Live migrations cut short by a kill -9 of the source or the destination compute process, on a deployment with
every service in its own OS process (RabbitMQ + PostgreSQL; the package's, conftest.py).

Two extra compute processes run one fake host each in cell1 (``lm-a1``, ``lm-b1``), so one side of a migration
can die alone. After the kill the migration record stops moving; within ``[conductor]
live_migration_stall_timeout`` the conductor's reconcile pass asks the hosts where the guest runs and ends the
migration there: the server is ACTIVE on exactly one host, its allocation on that host only, the record
``error`` (rolled back) or ``completed``, and ``kilonova manage placement audit`` is clean once the host is back.
"""
from __future__ import annotations

import time

from tests.distributed.cluster import boot_on, wait_for
from tests.distributed.moves.moves import (FLAVOR, LIVE_DESTINATION_DEAD, STALL, assert_audit_clean, delete, held,
                                         settled)
from tests.distributed.moves.moves import newest_migration as newest_of_kind
from tests.distributed.moves.moves import wait_status as wait_status_of_kind


def live_migrate(api, uuid: str, host: str) -> None:
    response = api.post(f"/servers/{uuid}/action", json={"os-migrateLive": {"host": host, "block_migration": "auto"}})
    assert response.status_code == 202, response.text


def newest_migration(api, uuid: str) -> dict:
    return newest_of_kind(api, uuid, "live-migration")  # none yet: the conductor's


def wait_status(cluster, api, uuid: str, statuses: tuple[str, ...], timeout: float, what: str) -> dict:
    return wait_status_of_kind(cluster, api, uuid, "live-migration", statuses, timeout, what)


def test_source_killed_mid_copy_the_server_stays_on_its_source(cluster, api):
    uuid = boot_on(cluster, api, "lm-a1", "lm-kill-source")
    live_migrate(api, uuid, "lm-b1")
    running = wait_status(cluster, api, uuid, ("running",), 30, "the migration to run")
    assert held(cluster, running["uuid"]) == {"lm-a1": FLAVOR} and held(cluster, uuid) == {"lm-b1": FLAVOR}
    cluster.processes["lm-a"].kill()
    ended = wait_status(cluster, api, uuid, ("error",), STALL + 60, "the stalled migration to be rolled back")
    assert ended["id"] == running["id"]
    server = settled(cluster, api, uuid)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "lm-a1")
    assert held(cluster, uuid) == {"lm-a1": FLAVOR} and held(cluster, running["uuid"]) == {}
    cluster.restart("lm-a")  # the source comes back, with the guest it still has (and the migration message again)
    server = api.get(f"/servers/{uuid}").json()["server"]
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "lm-a1")
    assert newest_migration(api, uuid)["status"] == "error"
    audit = cluster.manage("placement", "audit", "--verbose", check=False)
    assert audit.returncode == 0, audit.stdout
    delete(cluster, api, uuid)


def test_destination_killed_the_moved_guest_is_the_destinations(cluster, api):
    uuid = boot_on(cluster, api, "lm-a1", "lm-kill-dest")
    live_migrate(api, uuid, "lm-b1")
    running = wait_status(cluster, api, uuid, ("running",), 30, "the migration to run")
    cluster.processes["lm-b"].kill()
    # The copy ends on the source; the destination cannot take the guest over: the conductor finishes the move.
    ended = wait_status(cluster, api, uuid, ("completed",), LIVE_DESTINATION_DEAD + 60,
                        "the stalled migration to be finished")
    assert ended["id"] == running["id"]
    server = settled(cluster, api, uuid)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "lm-b1")
    assert held(cluster, uuid) == {"lm-b1": FLAVOR} and held(cluster, running["uuid"]) == {}
    with cluster.network_api() as network:
        ports = network.get("/v2.0/ports", params={"device_id": uuid}).json()["ports"]
    assert [port["binding:host_id"] for port in ports] == ["lm-b1"]
    cluster.restart("lm-b")
    server = api.get(f"/servers/{uuid}").json()["server"]
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "lm-b1")
    audit = cluster.manage("placement", "audit", "--verbose", check=False)
    assert audit.returncode == 0, audit.stdout
    delete(cluster, api, uuid)


def _gone(cluster, api, uuid: str, timeout: float) -> None:
    wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, timeout, "the server to be deleted", cluster)


def test_a_delete_mid_copy_cuts_the_migration_short_across_processes(cluster, api):
    """The delete reaches the source's process while its migration runs there: the copy (20 s) stops, the
    server is gone in seconds, neither host keeps a claim."""
    uuid = boot_on(cluster, api, "lm-a1", "lm-delete")
    live_migrate(api, uuid, "lm-b1")
    running = wait_status(cluster, api, uuid, ("running",), 30, "the migration to run")
    started = time.monotonic()
    assert api.delete(f"/servers/{uuid}").status_code == 204
    _gone(cluster, api, uuid, 15)
    assert time.monotonic() - started < 15
    ended = newest_migration(api, uuid)
    assert (ended["id"], ended["status"]) == (running["id"], "error")
    assert held(cluster, uuid) == {} and held(cluster, running["uuid"]) == {}
    assert_audit_clean(cluster)


def test_a_delete_cutting_a_migration_short_survives_a_kill_of_the_source(cluster, api):
    """kill -9 of the source right after the delete reached it: the stalled migration ends error, the delete is
    finished (by the source when it is back, which gets the delete again), and nothing is left in Placement."""
    uuid = boot_on(cluster, api, "lm-a1", "lm-delete-kill")
    live_migrate(api, uuid, "lm-b1")
    running = wait_status(cluster, api, uuid, ("running",), 30, "the migration to run")
    assert api.delete(f"/servers/{uuid}").status_code == 204
    cluster.processes["lm-a"].kill()
    ended = wait_status(cluster, api, uuid, ("error",), STALL + 60, "the migration to end")
    assert ended["id"] == running["id"]
    cluster.restart("lm-a")
    _gone(cluster, api, uuid, 90)
    assert held(cluster, uuid) == {} and held(cluster, running["uuid"]) == {}
    assert_audit_clean(cluster)
