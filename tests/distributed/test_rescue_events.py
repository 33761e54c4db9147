"""Rescue, the calls to a host (changePassword, diagnostics), soft delete and network-vif-plugged over RabbitMQ
and PostgreSQL, each service in its own process, hosts in two cells.

The hosts of cell1 wait for their ports' network-vif-plugged as libvirt's do
(``[fake_driver] wait_for_vif_plugging``): a boot there only ends once the network process's event went
through the compute API process and the cell's RabbitMQ to the compute process.
"""
from __future__ import annotations

import time

import pytest

from tests.distributed.cluster import two_cell_deployment

RECLAIM = 12


@pytest.fixture(scope="module")
def cluster():
    computes = [("compute-cell1", "cell1", {"hosts": "1", "wait_for_vif_plugging": "true"}),
                ("compute-cell2", "cell2", {"hosts": "1"})]
    extra = {"DEFAULT": {"reclaim_instance_interval": str(RECLAIM), "vif_plugging_timeout": "30"},
             "conductor": {"reconcile_interval": "1"}}
    with two_cell_deployment("postgresql", second_controller=False, extra=extra, computes=computes) as deployed:
        yield deployed


def wait(check, timeout: float, what: str, cluster=None):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {value}" + (f"\n{cluster.logs()}" if cluster else ""))


def status(compute, uuid: str) -> str | None:
    response = compute.get(f"/servers/{uuid}")
    return response.json()["server"]["status"] if response.status_code == 200 else None


def boot(cluster, compute, name: str, host: str) -> str:
    net = cluster.network_api().get("/v2.0/networks", params={"name": "private"}).json()["networks"][0]["id"]
    image = cluster.openstack("image", "show", "kilonova-tiny", fmt_json=True)["id"]
    created = compute.post("/servers", json={"server": {"name": name, "flavorRef": "1", "imageRef": image,
                                                        "networks": [{"uuid": net}],
                                                        "host": host}})  # 2.74
    assert created.status_code == 202, created.text
    uuid = created.json()["server"]["id"]
    wait(lambda: status(compute, uuid) == "ACTIVE", 60, f"{name} ACTIVE", cluster)
    return uuid


def act(compute, uuid: str, body: dict):
    return compute.post(f"/servers/{uuid}/action", json=body)


@pytest.mark.parametrize("host", ["cell1-host1", "cell2-host1"])
def test_lifecycle_on_each_cell(cluster, host):
    with cluster.compute_api("2.87") as compute:
        before = cluster.usage()
        uuid = boot(cluster, compute, f"rescue-{host}", host)
        assert compute.get(f"/servers/{uuid}").json()["server"]["OS-EXT-SRV-ATTR:host"] == host
        rescued = act(compute, uuid, {"rescue": {"adminPass": "Rescue-me-1"}})
        assert rescued.status_code == 200 and rescued.json() == {"adminPass": "Rescue-me-1"}
        wait(lambda: status(compute, uuid) == "RESCUE", 30, "RESCUE", cluster)
        assert act(compute, uuid, {"unrescue": None}).status_code == 202
        wait(lambda: status(compute, uuid) == "ACTIVE", 30, "ACTIVE after unrescue", cluster)
        # calls that wait for the host's answer, through the cell's RabbitMQ
        assert act(compute, uuid, {"changePassword": {"adminPass": "n3w-pass"}}).status_code == 202
        diagnostics = compute.get(f"/servers/{uuid}/diagnostics").json()
        assert diagnostics["state"] == "running" and diagnostics["num_nics"] == 1
        actions = [a["action"] for a in compute.get(f"/servers/{uuid}/os-instance-actions").json()["instanceActions"]]
        assert {"create", "rescue", "unrescue", "changePassword"} <= set(actions), actions
        # soft delete, restore, soft delete again and the reclaim
        assert compute.delete(f"/servers/{uuid}").status_code == 204
        wait(lambda: status(compute, uuid) == "SOFT_DELETED", 30, "SOFT_DELETED", cluster)
        assert act(compute, uuid, {"restore": None}).status_code == 202
        wait(lambda: status(compute, uuid) == "ACTIVE", 30, "ACTIVE after restore", cluster)
        assert compute.delete(f"/servers/{uuid}").status_code == 204
        wait(lambda: status(compute, uuid) == "SOFT_DELETED", 30, "SOFT_DELETED again", cluster)
        assert cluster.usage() != before  # kept while soft-deleted
        wait(lambda: status(compute, uuid) is None, RECLAIM + 30, "the reclaim", cluster)
        wait(lambda: cluster.usage() == before, 20, "the claims given back", cluster)
    audit = cluster.manage("placement", "audit", "--verbose", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_events_reach_hosts_of_both_cells(cluster):
    with cluster.compute_api("2.74") as compute:
        first = boot(cluster, compute, "events-1", "cell1-host1")
        second = boot(cluster, compute, "events-2", "cell2-host1")
        reply = compute.post("/os-server-external-events", json={"events": [
            {"name": "network-changed", "server_uuid": first}, {"name": "network-changed", "server_uuid": second}]})
        assert reply.status_code == 200, reply.text
        assert [e["code"] for e in reply.json()["events"]] == [200, 200]
        for uuid in (first, second):
            assert compute.post(f"/servers/{uuid}/action", json={"forceDelete": None}).status_code == 202
        wait(lambda: status(compute, first) is None and status(compute, second) is None, 30, "deleted", cluster)
