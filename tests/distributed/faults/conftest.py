"""One deployment for the process- and broker-fault modules of this package (RabbitMQ + PostgreSQL).

One conductor and one scheduler (a killed one is really gone until the test starts it again), and a
RabbitMQ node of the deployment's own: test_faults restarts it. Each test boots its own servers, deletes
them and restarts whatever it killed, so the modules share one start-up.
"""
from __future__ import annotations

import pytest

from tests.distributed.cluster import availability_zone, two_cell_deployment
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
