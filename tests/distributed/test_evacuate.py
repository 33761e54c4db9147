"""Evacuation on a deployment with every service in its own OS process (RabbitMQ, PostgreSQL): the compute
process of the failed host is really killed (``kill -9``) and later started again.

cell1 gets a third host, ``cell1b-host1`` (its own compute process), so that a server of compute-cell1's
hosts has somewhere to go in its own cell once compute-cell1 dies.
"""
from __future__ import annotations

import pytest

from tests.distributed.cluster import two_cell_deployment, wait_for

RECONCILE = "2"
DEADLINE = 20  # [compute] build_timeout: a rebuild or evacuation not finished by then is given up


@pytest.fixture(scope="module")
def cluster():
    extra = {"conductor": {"reconcile_interval": RECONCILE}, "compute": {"build_timeout": str(DEADLINE)}}
    with two_cell_deployment("postgresql", second_controller=False, extra=extra) as deployed:
        start_spare(deployed)
        yield deployed


def start_spare(cluster, **fake_driver: str) -> None:
    config = cluster.compute_config("compute-cell1b", "cell1", host_prefix="cell1b-host", hosts="1", **fake_driver)
    if "compute-cell1b" in cluster.processes:
        cluster.restart("compute-cell1b")
    else:
        cluster.start("compute-cell1b", ["compute"], config).wait_ready()


def states(api) -> dict[str, str]:
    return {row["host"]: row["state"] for row in api.get("/os-services", params={"binary": "nova-compute"})
            .json()["services"]}


def server(api, uuid: str) -> dict:
    return api.get(f"/servers/{uuid}").json()["server"]


def held(cluster, uuid: str) -> list[str]:
    """Names of the providers ``uuid`` holds allocations on."""
    with cluster.placement_api() as placement:
        names = {p["uuid"]: p["name"] for p in placement.get("/resource_providers").json()["resource_providers"]}
        return sorted(names[rp] for rp in placement.get(f"/allocations/{uuid}").json()["allocations"])


def migration_statuses(api, uuid: str) -> list[str]:
    rows = api.get("/os-migrations", params={"instance_uuid": uuid}).json()["migrations"]
    return [row["status"] for row in sorted(rows, key=lambda r: r["id"])]


def boot_on(cluster, api, host: str, name: str) -> str:
    flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
    image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
    response = api.post("/servers", json={"server": {"name": name, "flavorRef": flavor, "imageRef": image,
                                                     "networks": "auto", "host": host}})
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def test_evacuate_from_a_killed_compute_and_its_clean_up_when_it_comes_back(cluster):
    with cluster.compute_api("2.74") as api:
        uuid = boot_on(cluster, api, "cell1-host1", "ev-dist")
        wait_for(lambda: server(api, uuid)["status"] == "ACTIVE", 60, "ACTIVE", cluster)
        cluster.processes["compute-cell1"].kill()
        # both hosts of the killed process: one not yet seen down could be chosen as the destination
        wait_for(lambda: states(api).get("cell1-host1") == states(api).get("cell1-host2") == "down", 60,
                 "cell1-host1 and cell1-host2 down", cluster)

        response = api.post(f"/servers/{uuid}/action", json={"evacuate": {}})
        assert response.status_code == 200, response.text
        moved = wait_for(lambda: (lambda s: s if s["status"] == "ACTIVE" else None)(server(api, uuid)), 60,
                         "ACTIVE after the evacuation", cluster)
        assert moved["OS-EXT-SRV-ATTR:host"] == "cell1b-host1", "scheduled in the server's own cell"
        assert held(cluster, uuid) == ["cell1-host1", "cell1b-host1"]
        assert cluster.manage("placement", "audit", "--verbose", check=False).returncode == 0

        cluster.restart("compute-cell1")  # the failed host comes back
        wait_for(lambda: held(cluster, uuid) == ["cell1b-host1"], 30, "the source's claim released", cluster)
        with cluster.compute_api("2.59") as newer:
            assert migration_statuses(newer, uuid) == ["completed"]
        assert server(api, uuid)["status"] == "ACTIVE"
        audit = cluster.manage("placement", "audit", "--verbose", check=False)
        assert audit.returncode == 0, audit.stdout
        assert api.delete(f"/servers/{uuid}").status_code == 204
        wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "deleted", cluster)
        assert held(cluster, uuid) == []


def volume(cluster, volume_id: str) -> dict:
    return cluster.openstack("volume", "show", volume_id, fmt_json=True)


def test_a_destination_killed_during_the_evacuation_is_given_up_after_the_deadline(cluster):
    """The destination dies after it connected the server's volume and before the guest ran: past the deadline
    the server is back on its source in ERROR, its volume reserved for it (not left ``attaching`` to the dead
    host), and once the destination is back the server is evacuated there again; the source, back, leaves the
    new attachment alone."""
    with cluster.compute_api("2.74") as api:
        uuid = boot_on(cluster, api, "cell1-host2", "ev-dist-cut")
        data = cluster.openstack("volume", "create", "--size", "1", "ev-dist-data", fmt_json=True)["id"]
        wait_for(lambda: server(api, uuid)["status"] == "ACTIVE", 60, "ACTIVE", cluster)
        wait_for(lambda: volume(cluster, data)["status"] == "available", 30, "the volume available", cluster)
        cluster.openstack("server", "add", "volume", uuid, data)
        wait_for(lambda: volume(cluster, data)["status"] == "in-use", 30, "the volume in-use", cluster)
        start_spare(cluster, spawn_delay="90")  # the destination holds the guest in spawn (until it is killed)
        cluster.processes["compute-cell1"].kill()
        # both hosts of the killed process: one not yet seen down could be chosen as the destination
        wait_for(lambda: states(api).get("cell1-host1") == states(api).get("cell1-host2") == "down", 60,
                 "cell1-host1 and cell1-host2 down", cluster)

        assert api.post(f"/servers/{uuid}/action", json={"evacuate": {}}).status_code == 200
        wait_for(lambda: server(api, uuid)["OS-EXT-STS:task_state"] == "rebuild_spawning", 60, "spawning", cluster)
        wait_for(lambda: volume(cluster, data)["status"] == "attaching", 60, "connected to the destination", cluster)
        cluster.processes["compute-cell1b"].kill()  # kill -9 of the destination mid-spawn

        failed = wait_for(lambda: (lambda s: s if s["status"] == "ERROR" else None)(server(api, uuid)),
                          DEADLINE + 30, "ERROR after the deadline", cluster)
        assert failed["OS-EXT-SRV-ATTR:host"] == "cell1-host2"
        assert "did not finish within" in failed["fault"]["message"]
        assert [v["id"] for v in failed["os-extended-volumes:volumes_attached"]] == [data]
        shown = volume(cluster, data)
        assert (shown["status"], shown["attachments"]) == ("reserved", []), shown
        assert held(cluster, uuid) == ["cell1-host2"], "the destination's claim is released"
        with cluster.compute_api("2.59") as newer:
            assert migration_statuses(newer, uuid) == ["error"]

        start_spare(cluster)  # its unacknowledged message comes back and is dropped
        assert server(api, uuid)["status"] == "ERROR"
        assert api.post(f"/servers/{uuid}/action", json={"evacuate": {}}).status_code == 200
        moved = wait_for(lambda: (lambda s: s if s["status"] == "ACTIVE" else None)(server(api, uuid)), 60,
                         "ACTIVE after the second evacuation", cluster)
        assert moved["OS-EXT-SRV-ATTR:host"] == "cell1b-host1"
        shown = volume(cluster, data)
        assert shown["status"] == "in-use" and [(a["server_id"], a["host_name"]) for a in shown["attachments"]] \
            == [(uuid, "cell1b-host1")], shown

        # The source comes back: it cleans up its stale guest and leaves the destination's attachment alone.
        cluster.restart("compute-cell1")
        wait_for(lambda: held(cluster, uuid) == ["cell1b-host1"], 30, "the source's claim released", cluster)
        with cluster.compute_api("2.59") as newer:
            assert migration_statuses(newer, uuid) == ["error", "completed"]
        assert volume(cluster, data)["attachments"] == shown["attachments"]
        audit = cluster.manage("placement", "audit", "--verbose", check=False)
        assert audit.returncode == 0, audit.stdout
        assert api.delete(f"/servers/{uuid}").status_code == 204
        wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "deleted", cluster)
        wait_for(lambda: volume(cluster, data)["status"] == "available", 30, "the volume detached", cluster)
        cluster.openstack("volume", "delete", data)
        assert cluster.usage().get("MEMORY_MB", 0) == 0
