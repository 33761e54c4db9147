"""Faults of processes and of the broker, on a deployment with every service in its own OS process.

The faults do not depend on the database, so they run once, on PostgreSQL. The
deployment has one conductor and one scheduler, so a killed one is really gone
until the test starts it again. Every test leaves every process running, and
checks what a user and an operator would see afterwards: each server ACTIVE,
or ERROR with a fault saying why, within a deadline; Placement holding exactly
the claims of the servers that exist, each on the server's own host; and
``kilonova manage placement audit`` clean.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from tests.distributed.cluster import two_cell_deployment, wait_for

TINY_MB = 512
RPC_TIMEOUT = 20


@pytest.fixture(scope="module")
def cluster():
    # RPC calls live 20 s: long enough that a dead conductor's scheduler call outlives the restarts below.
    with two_cell_deployment("postgresql", second_controller=False,
                             extra={"DEFAULT": {"rpc_response_timeout": str(RPC_TIMEOUT)}}) as deployed:
        yield deployed


@pytest.fixture
def api(cluster):
    with cluster.compute_api("2.60") as client:
        yield client


@pytest.fixture(scope="module")
def image(cluster):
    return next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")


def boot(api, image: str, name: str) -> str:
    flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
    response = api.post("/servers", json={"server": {"name": name, "flavorRef": flavor, "imageRef": image,
                                                     "networks": "auto"}})
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def settled(cluster, api, ids: list[str], timeout: float = 90) -> list[dict]:
    """Wait until every server is ACTIVE or ERROR; an ERROR one must say why."""
    def check():
        rows = [api.get(f"/servers/{uuid}").json()["server"] for uuid in ids]
        return rows if all(s["status"] in ("ACTIVE", "ERROR") for s in rows) else None

    servers = wait_for(check, timeout, "every server ACTIVE or ERROR", cluster)
    for server in servers:
        if server["status"] == "ERROR":
            assert server.get("fault", {}).get("message"), server
    return servers


def gone(cluster, api, ids: list[str], timeout: float = 90) -> None:
    wait_for(lambda: all(api.get(f"/servers/{uuid}").status_code == 404 for uuid in ids), timeout,
             "the servers to be deleted", cluster)


def claims_match(cluster, servers: list[dict]) -> None:
    """Placement holds one claim per ACTIVE server, on that server's host, and nothing else."""
    active = [s for s in servers if s["status"] == "ACTIVE"]
    with cluster.placement_api() as placement:
        names = {p["uuid"]: p["name"] for p in placement.get("/resource_providers").json()["resource_providers"]}
        for server in active:
            held = placement.get(f"/allocations/{server['id']}").json()["allocations"]
            assert [names[rp] for rp in held] == [server["OS-EXT-SRV-ATTR:host"]], (server["name"], held)
    assert cluster.usage().get("MEMORY_MB", 0) == TINY_MB * len(active)
    audit = cluster.manage("placement", "audit", "--verbose", check=False)
    assert audit.returncode == 0, audit.stdout


def delete_all(cluster, api, ids: list[str]) -> None:
    for uuid in ids:
        assert api.delete(f"/servers/{uuid}").status_code in (204, 404)
    gone(cluster, api, ids)
    assert cluster.usage().get("MEMORY_MB", 0) == 0
    audit = cluster.manage("placement", "audit", "--verbose", check=False)
    assert audit.returncode == 0, audit.stdout


def queued(cluster, queue: str) -> int:
    """Messages waiting in one of the deployment's RabbitMQ queues."""
    vhost = cluster.sections["DEFAULT"]["transport_url"].rsplit("/", 1)[1]
    listed = subprocess.run(["rabbitmqctl", "list_queues", "-q", "-p", vhost, "name", "messages"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    return sum(int(count) for name, count in (line.split() for line in listed.splitlines() if line.strip())
               if name == queue)


def test_a_conductor_killed_mid_boot_is_replaced_and_the_boot_completes(cluster, api, image):
    """The conductor dies waiting for the scheduler: its unacknowledged cast goes to the next conductor.

    The new conductor releases whatever the server held and asks the scheduler again; the scheduler
    then comes back while the dead conductor's call is still first in its queue, so it claims for a
    caller that is gone just before it answers the new one. The new attempt must keep that claim
    (or move it), not fail on it.
    """
    cluster.processes["scheduler"].kill()  # the conductor's select_destinations call will wait
    uuid = boot(api, image, "conductor-dies")
    wait_for(lambda: queued(cluster, "kilonova.scheduler") == 1, 10, "the conductor's call to the scheduler")
    cluster.processes["conductor"].kill()
    cluster.restart("conductor")
    wait_for(lambda: queued(cluster, "kilonova.scheduler") == 2, 15, "the new conductor's call behind the old one")
    cluster.restart("scheduler")
    [server] = settled(cluster, api, [uuid], timeout=60)
    assert server["status"] == "ACTIVE", (server, cluster.logs())
    claims_match(cluster, [server])
    delete_all(cluster, api, [uuid])


def test_a_broker_restart_during_a_burst_of_boots_loses_nothing(cluster, api, image):
    ids = []
    for i in range(6):
        ids.append(boot(api, image, f"burst-{i}"))
        if i == 2:
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60)
    servers = settled(cluster, api, ids)
    active = [s for s in servers if s["status"] == "ACTIVE"]
    assert len(active) >= 3, [(s["name"], s["status"], s.get("fault")) for s in servers]
    claims_match(cluster, servers)
    delete_all(cluster, api, ids)


def test_a_scheduler_killed_mid_boot_leaves_no_claim_behind(cluster, api, image):
    """``kill -9`` of the scheduler while it answers a burst: each boot ends ACTIVE or ERROR, claims exact."""
    ids = [boot(api, image, f"sched-dies-{i}") for i in range(4)]
    cluster.restart("scheduler")  # kill -9, then start again
    servers = settled(cluster, api, ids)
    claims_match(cluster, servers)
    delete_all(cluster, api, ids)


def _one_active(cluster, api, image, name: str) -> dict:
    [server] = settled(cluster, api, [boot(api, image, name)])
    assert server["status"] == "ACTIVE", server
    return server


def _compute_of(server: dict) -> str:
    return "compute-" + server["OS-EXT-SRV-ATTR:host"].split("-")[0]  # cell1-host2 -> compute-cell1


def test_a_compute_killed_during_a_delete_finishes_it_after_its_restart(cluster, api, image):
    server = _one_active(cluster, api, image, "compute-dies")
    assert api.delete(f"/servers/{server['id']}").status_code == 204
    cluster.restart(_compute_of(server))
    gone(cluster, api, [server["id"]], timeout=60)
    claims_match(cluster, [])


def test_a_conductor_killed_during_a_delete_lets_it_finish_after_its_restart(cluster, api, image):
    """The compute's calls to the dead conductor time out; the delete must still finish, not stay DELETING."""
    server = _one_active(cluster, api, image, "conductor-dies-in-delete")
    cluster.processes["conductor"].kill()
    assert api.delete(f"/servers/{server['id']}").status_code == 204
    time.sleep(RPC_TIMEOUT + 2)  # the compute's call to the conductor has failed
    assert api.get(f"/servers/{server['id']}").status_code == 200  # the compute could not finish it alone
    cluster.restart("conductor")
    gone(cluster, api, [server["id"]], timeout=90)
    claims_match(cluster, [])


def test_database_connections_cut_during_a_burst(cluster, api, image):
    """Every service's PostgreSQL connections are terminated, twice, while servers boot.

    Each request is accepted or refused with an error body; each server ends ACTIVE or ERROR within
    its deadline; Placement holds exactly the claims of the servers that exist.
    """
    ids = []
    for i in range(6):
        try:
            uuid = boot(api, image, f"db-cut-{i}")
        except AssertionError as refused:  # a refusal must explain itself
            assert '"message"' in str(refused) or '"computeFault"' in str(refused), refused
            continue
        ids.append(uuid)
        if i in (1, 3):
            assert cluster.databases.cut_connections() > 0
    servers = settled(cluster, api, ids)
    claims_match(cluster, servers)
    delete_all(cluster, api, ids)
