"""Each service in its own OS process, over RabbitMQ and PostgreSQL or MariaDB, with two cells.

Set-up follows an operator's order: ``api_db sync``, ``cell_v2 map_cell0``,
``create_cell`` for cell1 and cell2, ``db sync``; then identity, the other
APIs, conductor and scheduler, and two compute processes (two fake hosts in
cell1, two in cell2). The scenarios are the all-in-one's, with the real
``openstack`` CLI.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.distributed.cluster import Cluster
from tests.distributed.infra import Databases, rabbit_vhost

SECTIONS = ("database", "cell0_database", "api_database", "placement_database", "identity_database",
            "image_database", "network_database")


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def cluster(request):
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-dist-"))
    databases = Databases(request.param)
    with rabbit_vhost("kn-dist") as transport_url:
        names = {section: section.replace("_database", "") if section != "database" else "cell1"
                 for section in SECTIONS}
        created = databases.urls([*names.values(), "cell2"])
        urls = {section: created[name] for section, name in names.items()}
        cell2 = created["cell2"]
        cluster = Cluster(workdir, transport_url, urls, extra={"compute": {"build_timeout": "30"}})
        cluster.kind = request.param
        try:
            cluster.manage("api_db", "sync")
            cluster.manage("cell_v2", "map_cell0")
            cluster.manage("cell_v2", "create_cell", "--name", "cell1")
            cluster.manage("cell_v2", "create_cell", "--name", "cell2", "--database_connection", cell2,
                           "--transport-url", transport_url)
            cluster.manage("db", "sync")

            def compute(name: str, cell: str) -> Path:
                return cluster.variant(name, {"compute": {"cell": cell},
                                              "fake_driver": {"hosts": "2", "host_prefix": f"{cell}-host"}})

            cluster.start_all([
                [("identity", ["identity"], None)],
                [("placement", ["placement"], None), ("image", ["image"], None), ("network", ["network"], None)],
                [("api", ["api"], None), ("conductor", ["conductor"], None), ("scheduler", ["scheduler"], None)],
                # A second conductor and scheduler on another "host": active/active on the same queues.
                [("controller2", ["conductor", "scheduler"],
                  cluster.variant("controller2", {"DEFAULT": {"host": "controller2"}}))],
                [("compute-cell1", ["compute"], compute("compute-cell1", "cell1")),
                 ("compute-cell2", ["compute"], compute("compute-cell2", "cell2"))],
            ])
            cluster.write_clouds_yaml()
            yield cluster
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.stop()
            databases.drop_all()
            shutil.rmtree(workdir, ignore_errors=True)


def wait_for(check, timeout: float, what: str, cluster=None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{cluster.logs()}" if cluster else ""))
        time.sleep(0.5)


def transport_only(cluster) -> None:
    """Faults of the transport and of the processes do not depend on the database: run them once."""
    if cluster.kind != "postgresql":
        pytest.skip("a transport/process fault test; it runs with the PostgreSQL deployment")


def hosts_of(servers: list[dict]) -> list[str]:
    return [s["OS-EXT-SRV-ATTR:host"] for s in servers]


def test_cells_are_listed_and_the_deployment_passes_its_checks(cluster):
    listed = cluster.manage("cell_v2", "list_cells").stdout
    for name in ("cell0", "cell1", "cell2"):
        assert f"| {name} " in listed
    assert "guest:****@" in listed
    result = cluster.manage("status", "upgrade", "check", check=False)
    assert result.returncode == 0, result.stdout
    services = cluster.openstack("compute", "service", "list", fmt_json=True)
    assert {s["Host"] for s in services if s["Binary"] == "nova-compute"} == {
        "cell1-host1", "cell1-host2", "cell2-host1", "cell2-host2"}
    for binary in ("nova-conductor", "nova-scheduler"):
        assert {s["Host"] for s in services if s["Binary"] == binary} == {"controller", "controller2"}
    assert {s["State"] for s in services} == {"up"}


def test_boot_list_delete_over_separate_processes(cluster):
    created = cluster.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                "--network", "private", "--wait", "dist-vm", fmt_json=True, timeout=90)
    assert created["status"] == "ACTIVE"
    assert "10.0.0." in str(created["addresses"])
    listed = cluster.openstack("server", "list", fmt_json=True)
    assert [row["Name"] for row in listed if row["ID"] == created["id"]] == ["dist-vm"]
    assert cluster.usage()["MEMORY_MB"] == 512
    cluster.openstack("server", "delete", "--wait", created["id"], timeout=90)
    assert cluster.usage().get("MEMORY_MB", 0) == 0
    assert cluster.manage("placement", "audit", check=False).returncode == 0


def test_servers_in_two_cells_are_listed_merged_and_paged(cluster):
    with cluster.compute_api() as api:
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        # cell2's hosts form availability zone "zone2"; the others stay in "nova": two servers in each cell.
        aggregate = api.post("/os-aggregates", json={"aggregate": {"name": "cell2-hosts",
                                                                   "availability_zone": "zone2"}})
        assert aggregate.status_code == 200, aggregate.text
        for host in ("cell2-host1", "cell2-host2"):
            added = api.post(f"/os-aggregates/{aggregate.json()['aggregate']['id']}/action",
                             json={"add_host": {"host": host}})
            assert added.status_code == 200, added.text
        ids = []
        for i in range(4):
            response = api.post("/servers", json={"server": {"name": f"cells-{i}", "flavorRef": flavor,
                                                             "imageRef": image, "networks": "auto",
                                                             "availability_zone": ("nova", "zone2")[i % 2]}})
            assert response.status_code == 202, response.text
            ids.append(response.json()["server"]["id"])

        def all_active():
            rows = [s for s in api.get("/servers/detail").json()["servers"] if s["id"] in ids]
            return rows if len(rows) == 4 and all(s["status"] == "ACTIVE" for s in rows) else None

        servers = wait_for(all_active, 60, "four ACTIVE servers")
        hosts = {s["OS-EXT-SRV-ATTR:host"] for s in servers}
        assert sorted(h.split("-")[0] for h in hosts_of(servers)) == ["cell1", "cell1", "cell2", "cell2"], hosts
        everything = [s["id"] for s in api.get("/servers").json()["servers"]]
        first = api.get("/servers", params={"limit": 2}).json()["servers"]
        rest = api.get("/servers", params={"limit": 10, "marker": first[-1]["id"]}).json()["servers"]
    assert sorted(everything) == sorted(ids)
    assert [s["id"] for s in first + rest] == everything
    listed = cluster.openstack("server", "list", "--long", fmt_json=True)
    assert sorted(row["ID"] for row in listed) == sorted(ids)
    assert {row["Host"] for row in listed} == hosts
    cluster.openstack("server", "delete", "--wait", *ids, timeout=90)
    assert cluster.usage().get("MEMORY_MB", 0) == 0


def test_audit_reports_and_heals_an_orphaned_allocation(cluster):
    with cluster.placement_api() as placement:
        provider = placement.get("/resource_providers", params={"name": "cell1-host1"}).json()["resource_providers"][0]
    consumer = str(uuid.uuid4())
    cluster.openstack("--os-placement-api-version", "1.8", "resource", "provider", "allocation", "set",
                      consumer, "--allocation", f"rp={provider['uuid']},MEMORY_MB=64",
                      "--project-id", str(uuid.uuid4()), "--user-id", str(uuid.uuid4()))
    found = cluster.manage("placement", "audit", "--verbose", check=False)
    assert found.returncode == 3 and consumer in found.stdout, found.stdout
    assert cluster.manage("placement", "audit", "--heal", check=False).returncode == 4
    assert cluster.manage("placement", "audit", check=False).returncode == 0


def test_a_boot_sent_while_the_conductor_is_dead_finishes_when_it_restarts(cluster):
    cluster.processes["conductor"].kill()
    cluster.processes["controller2"].kill()  # the other conductor (and a scheduler)
    with cluster.compute_api() as api:
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        response = api.post("/servers", json={"server": {"name": "waits-for-conductor", "flavorRef": flavor,
                                                         "imageRef": image, "networks": "auto"}})
        assert response.status_code == 202, response.text
        uuid_ = response.json()["server"]["id"]
        time.sleep(1)
        assert api.get(f"/servers/{uuid_}").json()["server"]["status"] == "BUILD"
        cluster.start_all([[("conductor-restarted", ["conductor"], None)]])
        wait_for(lambda: api.get(f"/servers/{uuid_}").json()["server"]["status"] == "ACTIVE", 60, "ACTIVE",
                 cluster)
    cluster.openstack("server", "delete", "--wait", uuid_, timeout=90)
    assert cluster.manage("placement", "audit", check=False).returncode == 0


@pytest.mark.xfail(strict=False, reason="known bug (issue 4): the dead conductor's expired scheduler call can "
                   "leave a stale claim, so the replacement's claim gets 409 and the boot ends in ERROR; "
                   "failed in 1 of 2 fresh-clone CI runs on 2026-11-23")
def test_a_conductor_killed_mid_boot_is_replaced_and_the_boot_completes(cluster):
    """The conductor dies waiting for the scheduler: its unacknowledged cast goes to the next conductor."""
    transport_only(cluster)
    cluster.processes["scheduler"].kill()  # the only scheduler left: the conductor's call will wait
    with cluster.compute_api() as api:
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        response = api.post("/servers", json={"server": {"name": "conductor-dies", "flavorRef": flavor,
                                                         "imageRef": image, "networks": "auto"}})
        assert response.status_code == 202, response.text
        uuid_ = response.json()["server"]["id"]
        time.sleep(1)
        cluster.processes["conductor-restarted"].kill()
        # The dead conductor's select_destinations call expires in the scheduler queue after
        # rpc_response_timeout; a scheduler started before that would claim for a caller that is gone.
        time.sleep(10)
        cluster.start_all([[("scheduler-restarted", ["scheduler"], None),
                            ("conductor-third", ["conductor"], None)]])
        shown = wait_for(lambda: (lambda s: s if s["status"] in ("ACTIVE", "ERROR") else None)(
            api.get(f"/servers/{uuid_}").json()["server"]), 60, "the boot to finish", cluster)
        assert shown["status"] == "ACTIVE", shown
    cluster.openstack("server", "delete", "--wait", uuid_, timeout=90)
    assert cluster.usage().get("MEMORY_MB", 0) == 0
    assert cluster.manage("placement", "audit", check=False).returncode == 0


@pytest.mark.xfail(strict=False, reason="known bug (issue 4): after a broker restart, deleting the burst's "
                   "servers once left 1024 MB allocated in Placement (1 of 2 fresh-clone CI runs, 2026-11-23)")
def test_a_broker_restart_during_a_burst_of_boots_loses_nothing(cluster):
    transport_only(cluster)
    with cluster.compute_api() as api:
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        ids = []
        for i in range(6):
            response = api.post("/servers", json={"server": {"name": f"burst-{i}", "flavorRef": flavor,
                                                             "imageRef": image, "networks": "auto"}})
            assert response.status_code == 202, response.text
            ids.append(response.json()["server"]["id"])
            if i == 2:
                subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
                subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60)

        def settled():
            rows = [s for s in api.get("/servers/detail").json()["servers"] if s["id"] in ids]
            return rows if len(rows) == 6 and all(s["status"] in ("ACTIVE", "ERROR") for s in rows) else None

        servers = wait_for(settled, 90, "every server ACTIVE or ERROR", cluster)
    for server in servers:
        if server["status"] == "ERROR":
            assert server.get("fault", {}).get("message"), server
    active = [s for s in servers if s["status"] == "ACTIVE"]
    assert len(active) >= 3, [(s["name"], s["status"], s.get("fault")) for s in servers]
    assert cluster.usage().get("MEMORY_MB", 0) == 512 * len(active)
    assert cluster.manage("placement", "audit", check=False).returncode == 0
    cluster.openstack("server", "delete", "--wait", *ids, timeout=120)
    assert cluster.usage().get("MEMORY_MB", 0) == 0


def test_a_killed_compute_shows_down_within_the_service_down_time(cluster):
    def states(api):
        rows = api.get("/os-services", params={"binary": "nova-compute"}).json()["services"]
        return {row["host"]: row["state"] for row in rows}

    with cluster.compute_api() as api:
        assert set(states(api).values()) == {"up"}
        cluster.processes["compute-cell2"].kill()
        killed = time.monotonic()
        expected = {"cell1-host1": "up", "cell1-host2": "up", "cell2-host1": "down", "cell2-host2": "down"}
        wait_for(lambda: states(api) == expected, 20, "cell2's hosts down")
        assert time.monotonic() - killed < 6 + 1 + 2  # service_down_time + report_interval + polling
    listed = cluster.openstack("compute", "service", "list", "--service", "nova-compute", fmt_json=True)
    assert {row["Host"]: row["State"] for row in listed} == expected
    # The scheduler no longer chooses the dead hosts: zone2 (cell2's hosts) has no valid host left.
    with cluster.compute_api() as api:
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        response = api.post("/servers", json={"server": {"name": "to-a-dead-zone", "flavorRef": flavor,
                                                         "imageRef": image, "networks": "auto",
                                                         "availability_zone": "zone2"}})
        assert response.status_code == 202, response.text
        uuid_ = response.json()["server"]["id"]
        shown = wait_for(lambda: (lambda s: s if s["status"] == "ERROR" else None)(
            api.get(f"/servers/{uuid_}").json()["server"]), 30, "ERROR")
        assert "No valid host" in shown["fault"]["message"], shown["fault"]
        assert api.delete(f"/servers/{uuid_}").status_code == 204
