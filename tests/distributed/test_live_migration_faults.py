"""Live migrations cut short by a kill -9 of the source or the destination compute process, on a deployment with
every service in its own OS process (RabbitMQ + PostgreSQL).

Two extra compute processes run one fake host each in cell1 (``lm-a1``, ``lm-b1``), so one side of a migration
can die alone. After the kill the migration record stops moving; within ``[conductor]
live_migration_stall_timeout`` the conductor's reconcile pass asks the hosts where the guest runs and ends the
migration there: the server is ACTIVE on exactly one host, its allocation on that host only, the record
``error`` (rolled back) or ``completed``, and ``kilonova manage placement audit`` is clean once the host is back.
"""
from __future__ import annotations

import pytest

from tests.distributed.cluster import boot_on, two_cell_deployment, wait_for

STALL = 5
FLAVOR = {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}


@pytest.fixture(scope="module")
def cluster():
    extra = {"conductor": {"reconcile_interval": "1", "live_migration_stall_timeout": str(STALL)},
             "fake_driver": {"live_migration_delay": "20"}}
    with two_cell_deployment("postgresql", second_controller=False, extra=extra) as deployed:
        for name in ("lm-a", "lm-b"):
            config = deployed.variant(name, {"compute": {"cell": "cell1"},
                                             "fake_driver": {"hosts": "1", "host_prefix": name}})
            deployed.start(name, ["compute"], config).wait_ready()
        yield deployed


@pytest.fixture
def api(cluster):
    with cluster.compute_api("2.80") as client:
        yield client


def live_migrate(api, uuid: str, host: str) -> None:
    response = api.post(f"/servers/{uuid}/action", json={"os-migrateLive": {"host": host, "block_migration": "auto"}})
    assert response.status_code == 202, response.text


def newest_migration(api, uuid: str) -> dict:
    rows = api.get("/os-migrations", params={"instance_uuid": uuid, "migration_type": "live-migration"}).json()
    return max(rows["migrations"], key=lambda m: m["id"], default={"status": None})  # none yet: the conductor's


def wait_status(cluster, api, uuid: str, statuses: tuple[str, ...], timeout: float, what: str) -> dict:
    return wait_for(lambda: (lambda m: m if m["status"] in statuses else None)(newest_migration(api, uuid)),
                    timeout, what, cluster)


def held(cluster, consumer: str) -> dict[str, dict]:
    with cluster.placement_api() as placement:
        names = {p["uuid"]: p["name"] for p in placement.get("/resource_providers").json()["resource_providers"]}
        allocations = placement.get(f"/allocations/{consumer}").json()["allocations"]
    return {names[rp]: a["resources"] for rp, a in allocations.items()}


def settled(cluster, api, uuid: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (lambda s: s if s["OS-EXT-STS:task_state"] is None else None)(
        api.get(f"/servers/{uuid}").json()["server"]), timeout, "the server's task to end", cluster)


def delete(cluster, api, uuid: str) -> None:
    api.delete(f"/servers/{uuid}")
    wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "the server to be deleted", cluster)


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
    ended = wait_status(cluster, api, uuid, ("completed",), 20 + STALL + 60, "the stalled migration to be finished")
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
