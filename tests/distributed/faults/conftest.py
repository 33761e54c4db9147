"""One deployment for the process- and broker-fault modules of this package (RabbitMQ + PostgreSQL).

One conductor and one scheduler (a killed one is really gone until the test starts it again), and a
RabbitMQ node of the deployment's own: test_faults restarts it. Each test boots its own servers, deletes
them and restarts whatever it killed, so the modules share one start-up.
"""
from __future__ import annotations

import pytest

from tests.distributed.cluster import availability_zone, two_cell_deployment, wait_for
from tests.distributed.faults.faults import CELL1_HOSTS, RPC_TIMEOUT, SHELVE_TIMEOUT


@pytest.fixture(scope="package")
def cluster():
    with two_cell_deployment("postgresql", second_controller=False, own_broker=True, extra={
            "DEFAULT": {"rpc_response_timeout": str(RPC_TIMEOUT)}, "conductor": {"reconcile_interval": "2"},
            "compute": {"shelve_timeout": str(SHELVE_TIMEOUT)}}) as deployed:
        yield deployed


@pytest.fixture(scope="package")
def image(cluster):
    return next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")


@pytest.fixture(scope="package")
def zone1(cluster):
    """cell1's hosts as availability zone "zone1": a server booted there runs on compute-cell1."""
    return availability_zone(cluster, "cell1-hosts", "zone1", CELL1_HOSTS)


@pytest.fixture(autouse=True)
def whole_deployment(cluster):
    """Each test starts on the deployment as a passing test leaves it: every process running, compute-cell1 at
    normal speed, no server left. A test that fails midway (a process it killed not started again, a slowed
    compute-cell1, its servers not deleted) then fails alone, not every test after it in the package (CI saw one
    failure end four tests: compute-cell1 left dead, every later boot in zone1 timed out)."""
    config = cluster.workdir / "compute-cell1.conf"
    before = config.read_text()
    cluster.compute_config("compute-cell1", "cell1")
    dead = [name for name, process in cluster.processes.items() if process.popen.poll() is not None]
    if config.read_text() != before and "compute-cell1" not in dead:
        dead.append("compute-cell1")
    if dead:
        cluster.restart(*dead)
    with cluster.compute_api("2.60") as api:
        left = [s["id"] for s in api.get("/servers", params={"all_tenants": "1"}).json()["servers"]]
        for uuid in left:
            assert api.delete(f"/servers/{uuid}").status_code in (204, 404)
        wait_for(lambda: all(api.get(f"/servers/{uuid}").status_code == 404 for uuid in left), 90,
                 f"servers an earlier test left ({left}) to be deleted", cluster)
