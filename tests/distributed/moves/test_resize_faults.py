"""Cold migrations cut short by a kill -9 of the destination or the source compute process, on a deployment with
every service in its own OS process (RabbitMQ + PostgreSQL; the package's, conftest.py).

Three extra compute processes run one fake host each in cell1: ``rz-a1`` (a source), ``rz-b1`` (a destination
whose finish_migration is held 30 s: it dies in it) and ``rz-c1`` (a source whose migrate_disk_and_power_off is
held 30 s). After the kill the migration record stops moving; past ``[compute] move_timeout`` the conductor's
reconcile pass ends the move on the source: ACTIVE there when the source brings its guest back, ERROR there
with a fault when the source itself is gone. Either way the allocation is the source's only, the record says
``error``, and ``kilonova manage placement audit`` is clean once the dead host is back.
"""
from __future__ import annotations

from tests.distributed.cluster import boot_on, wait_for
from tests.distributed.moves.moves import FLAVOR, MOVE_TIMEOUT as TIMEOUT
from tests.distributed.moves.moves import assert_audit_clean, delete, held, newest_migration as newest_of_kind
from tests.distributed.moves.moves import settled, wait_status as wait_status_of_kind


def migrate(api, uuid: str, host: str) -> None:
    response = api.post(f"/servers/{uuid}/action", json={"migrate": {"host": host}})
    assert response.status_code == 202, response.text


def newest_migration(api, uuid: str) -> dict:
    return newest_of_kind(api, uuid, "migration")


def wait_status(cluster, api, uuid: str, statuses: tuple[str, ...], timeout: float, what: str) -> dict:
    return wait_status_of_kind(cluster, api, uuid, "migration", statuses, timeout, what)


def test_destination_killed_while_finishing_the_server_is_back_on_its_source(cluster, api):
    uuid = boot_on(cluster, api, "rz-a1", "rz-kill-dest")
    migrate(api, uuid, "rz-b1")
    moving = wait_status(cluster, api, uuid, ("post-migrating",), 30, "the guest to leave its source")
    assert held(cluster, moving["uuid"]) == {"rz-a1": FLAVOR} and held(cluster, uuid) == {"rz-b1": FLAVOR}
    cluster.processes["rz-b"].kill()
    ended = wait_status(cluster, api, uuid, ("error",), TIMEOUT + 60, "the stuck move to be rolled back")
    assert ended["id"] == moving["id"]
    server = settled(cluster, api, uuid)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "rz-a1")
    assert held(cluster, uuid) == {"rz-a1": FLAVOR} and held(cluster, moving["uuid"]) == {}
    with cluster.network_api() as network:
        ports = network.get("/v2.0/ports", params={"device_id": uuid}).json()["ports"]
    assert [port["binding:host_id"] for port in ports] == ["rz-a1"]
    # The destination comes back (its finish_resize message again): the server stays where it is.
    cluster.restart("rz-b")
    server = api.get(f"/servers/{uuid}").json()["server"]
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "rz-a1")
    assert newest_migration(api, uuid)["status"] == "error"
    assert_audit_clean(cluster)
    delete(cluster, api, uuid)
    assert_audit_clean(cluster)


def test_source_killed_while_sending_the_server_ends_on_its_source(cluster, api):
    uuid = boot_on(cluster, api, "rz-c1", "rz-kill-source")
    migrate(api, uuid, "rz-a1")
    moving = wait_status(cluster, api, uuid, ("migrating",), 30, "the source to start sending the guest")
    cluster.processes["rz-c"].kill()
    ended = wait_status(cluster, api, uuid, ("error",), 2 * TIMEOUT + 60, "the stuck move to be ended")
    assert ended["id"] == moving["id"]
    server = settled(cluster, api, uuid)
    # Its source is gone with the guest: ERROR there, saying what the operator can do.
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ERROR", "rz-c1")
    assert "could not be brought back on its source host rz-c1" in server["fault"]["message"]
    assert "hard reboot" in server["fault"]["message"]
    assert held(cluster, uuid) == {"rz-c1": FLAVOR} and held(cluster, moving["uuid"]) == {}
    cluster.restart("rz-c")  # its late messages change nothing
    server = api.get(f"/servers/{uuid}").json()["server"]
    assert server["OS-EXT-SRV-ATTR:host"] == "rz-c1" and newest_migration(api, uuid)["status"] == "error"
    assert_audit_clean(cluster)
    delete(cluster, api, uuid)
    assert_audit_clean(cluster)


def test_moves_stay_in_their_cell(cluster, api):
    """Cross-cell moves are refused as upstream refuses them by default: a host of another cell is not found,
    and a scheduled migration lands in the server's own cell."""
    uuid = boot_on(cluster, api, "rz-a1", "rz-cells")
    refused = api.post(f"/servers/{uuid}/action", json={"migrate": {"host": "cell2-host1"}})
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == "Compute host cell2-host1 could not be found."
    response = api.post(f"/servers/{uuid}/action", json={"migrate": None})
    assert response.status_code == 202, response.text
    moved = wait_for(lambda: (lambda s: s if s["status"] in ("VERIFY_RESIZE", "ACTIVE", "ERROR") and
                              s["OS-EXT-STS:task_state"] is None else None)(api.get(f"/servers/{uuid}").json()[
                                  "server"]), 90, "the migration to end", cluster)
    assert moved["status"] in ("VERIFY_RESIZE", "ACTIVE")  # (ACTIVE: rolled back, if only a slow host was left)
    assert not moved["OS-EXT-SRV-ATTR:host"].startswith("cell2-")
    if moved["status"] == "VERIFY_RESIZE":
        assert api.post(f"/servers/{uuid}/action", json={"confirmResize": None}).status_code == 204
        settled(cluster, api, uuid)
    assert_audit_clean(cluster)
    delete(cluster, api, uuid)
