"""Faults of processes and of the broker, on a deployment with every service in its own OS process.

The faults do not depend on the database, so they run once, on PostgreSQL (the package's deployment,
conftest.py). The deployment has one conductor and one scheduler, so a killed one is really gone
until the test starts it again. Every test leaves every process running, and
checks what a user and an operator would see afterwards: each server ACTIVE,
or ERROR with a fault saying why, within a deadline; Placement holding exactly
the claims of the servers that exist, each on the server's own host; and
``kilonova manage placement audit`` clean.

A compute is caught mid-boot or mid-delete by holding the fake hypervisor in ``spawn`` or
``destroy`` (``[fake_driver] spawn_delay`` / ``destroy_delay``, set by restarting it) and
waiting until RabbitMQ shows the message in its hands (delivered, not acknowledged).
"""
from __future__ import annotations

import time

import pytest

from tests.distributed.cluster import wait_for
from tests.distributed.faults.faults import CELL1_HOSTS, RPC_TIMEOUT
from tests.distributed.infra import rabbitmqctl, vhost_of

TINY_MB = 512


@pytest.fixture
def api(cluster):
    with cluster.compute_api("2.60") as client:
        yield client


def boot(api, image: str, name: str, zone: str | None = None) -> str:
    flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
    server = {"name": name, "flavorRef": flavor, "imageRef": image, "networks": "auto"}
    if zone:
        server["availability_zone"] = zone
    response = api.post("/servers", json={"server": server})
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


def queue_counts(cluster, column: str = "messages") -> dict[str, int]:
    """One column of ``rabbitmqctl list_queues`` for each of the deployment's queues."""
    url = cluster.sections["DEFAULT"]["transport_url"]
    listed = rabbitmqctl(url, "list_queues", "-q", "-p", vhost_of(url), "name", column)
    rows = (line.split() for line in listed.splitlines() if line.strip())
    return {name: int(count) for name, count in rows if count.isdigit()}  # (-q still prints a header)


def queued(cluster, queue: str) -> int:
    """Messages waiting (or in a server's hands) in one of the deployment's RabbitMQ queues."""
    return queue_counts(cluster).get(queue, 0)


def in_hand(cluster, hosts) -> int:
    """Messages these compute hosts have received and not acknowledged: operations under way there."""
    counts = queue_counts(cluster, "messages_unacknowledged")
    return sum(counts.get(f"kilonova.compute.{host}", 0) for host in hosts)


def restart_compute_cell1(cluster, **fake_driver: str) -> None:
    """``kill -9`` compute-cell1 (if it still runs) and start it with these ``[fake_driver]`` options."""
    cluster.compute_config("compute-cell1", "cell1", **fake_driver)
    cluster.restart("compute-cell1")


def task_state(api, uuid: str) -> str | None:
    return api.get(f"/servers/{uuid}").json()["server"]["OS-EXT-STS:task_state"]


def ports_of(cluster, uuid: str) -> list[dict]:
    with cluster.network_api() as network:
        return network.get("/v2.0/ports", params={"device_id": uuid}).json()["ports"]


def test_a_conductor_killed_mid_boot_is_replaced_and_the_boot_completes(cluster, api, image):
    """The conductor dies waiting for the scheduler: its unacknowledged cast goes to the next conductor.

    The new conductor releases whatever the server held and asks the scheduler again; the scheduler
    then comes back while the dead conductor's call is still first in its queue, so it claims for a
    caller that is gone just before it answers the new one. The new attempt must keep that claim
    (or move it), not fail on it.
    """
    cluster.processes["scheduler"].kill()  # the conductor's select_destinations call will wait
    uuid = boot(api, image, "conductor-dies")
    # Both waits stay under RPC_TIMEOUT (a call's message expires then); rabbitmqctl takes seconds under load.
    wait_for(lambda: queued(cluster, "kilonova.scheduler") == 1, RPC_TIMEOUT - 2, "the conductor's call to the scheduler")
    cluster.processes["conductor"].kill()
    cluster.restart("conductor")
    wait_for(lambda: queued(cluster, "kilonova.scheduler") == 2, RPC_TIMEOUT - 2,
             "the new conductor's call behind the old one")
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
            rabbitmqctl(cluster.sections["DEFAULT"]["transport_url"], "stop_app")  # the deployment's own node
            rabbitmqctl(cluster.sections["DEFAULT"]["transport_url"], "start_app")
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


def _one_active(cluster, api, image, name: str, zone: str | None = None) -> dict:
    [server] = settled(cluster, api, [boot(api, image, name, zone)])
    assert server["status"] == "ACTIVE", server
    return server


def test_a_compute_killed_mid_boot_and_mid_delete_converges_after_its_restart(cluster, api, image, zone1):
    """``kill -9`` of a compute while it spawns one server and destroys another, then its restart.

    The delete it was running finishes (its message comes back); the boot ends in ERROR with a fault,
    its port and claim given back, and its returning build message is dropped.
    """
    doomed = _one_active(cluster, api, image, "deleted-mid-way", zone1)
    restart_compute_cell1(cluster, spawn_delay="60", destroy_delay="60")
    booting = boot(api, image, "killed-mid-boot", zone1)
    wait_for(lambda: task_state(api, booting) == "spawning", 30, "the spawn to start", cluster)
    assert api.delete(f"/servers/{doomed['id']}").status_code == 204
    wait_for(lambda: in_hand(cluster, CELL1_HOSTS) == 2, 30, "compute-cell1 to hold the spawn and the destroy",
             cluster)
    cluster.processes["compute-cell1"].kill()
    restart_compute_cell1(cluster)  # at normal speed again
    gone(cluster, api, [doomed["id"]], timeout=60)
    [server] = settled(cluster, api, [booting], timeout=60)
    assert server["status"] == "ERROR" and "interrupted" in server["fault"]["message"], server
    assert ports_of(cluster, booting) == []
    claims_match(cluster, [server])
    delete_all(cluster, api, [booting])


def test_a_delete_sent_to_a_compute_that_just_died_is_finished_without_it(cluster, api, image, zone1):
    """compute-cell1 dies; a delete sent before it shows down waits in its queue, the server DELETING.

    Once the host is down the conductor finishes the delete (port, claim, record) while the compute
    is still dead; when the compute comes back its queued delete changes nothing.
    (A build message that arrives after the build deadline: tests/unit/test_recovery.py.)
    """
    server = _one_active(cluster, api, image, "deleted-while-host-dead", zone1)
    cluster.processes["compute-cell1"].kill()
    assert api.delete(f"/servers/{server['id']}").status_code == 204
    assert task_state(api, server["id"]) == "deleting"  # the API still saw the host up: the delete waits
    gone(cluster, api, [server["id"]], timeout=30)
    assert ports_of(cluster, server["id"]) == []
    claims_match(cluster, [])
    restart_compute_cell1(cluster)
    wait_for(lambda: sum(queued(cluster, f"kilonova.compute.{host}") for host in CELL1_HOSTS) == 0, 30,
             "compute-cell1 to take its queued delete", cluster)
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
    """Every service's PostgreSQL connections are terminated after each of the first five boots, while servers boot.

    Each request is accepted or refused with an error body; each server ends ACTIVE or ERROR within
    its deadline; Placement holds exactly the claims of the servers that exist.
    """
    ids = []
    try:
        for i in range(6):
            try:
                uuid = boot(api, image, f"db-cut-{i}")
            except AssertionError as refused:  # a refusal must explain itself
                assert '"message"' in str(refused) or '"computeFault"' in str(refused), refused
                continue
            ids.append(uuid)
            if i < 5:
                assert cluster.databases.cut_connections() > 0
        servers = settled(cluster, api, ids)
        claims_match(cluster, servers)
    finally:  # the package's later tests count the deployment's usage: leave no server behind, even on failure
        for uuid in ids:
            api.delete(f"/servers/{uuid}")
    delete_all(cluster, api, ids)
