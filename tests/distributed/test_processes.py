"""Each service in its own OS process, over RabbitMQ and PostgreSQL or MariaDB, with two cells.

Set-up follows an operator's order: ``api_db sync``, ``cell_v2 map_cell0``,
``create_cell`` for cell1 and cell2, ``db sync``; then identity, the other
APIs, conductor and scheduler, and two compute processes (two fake hosts in
cell1, two in cell2). The scenarios are the all-in-one's, with the real
``openstack`` CLI, on each database. Faults of processes and of the broker,
which do not depend on the database, are in faults/test_faults.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid

import httpx
import pytest

from tests.distributed.cluster import availability_zone, two_cell_deployment, wait_for


DATABASES = ["postgresql", "mysql"]


@pytest.fixture(scope="module")
def cluster(request):
    """One deployment per database kind, shared by the module's tests (parametrized in pytest_generate_tests)."""
    # Periodic host discovery on (off by default): both schedulers run it, on the same databases.
    with two_cell_deployment(request.param, extra={"scheduler": {"discover_hosts_in_cells_interval": "1"}}) \
            as deployed:
        yield deployed


@pytest.fixture(scope="module")
def cloud(cluster):
    """The all-in-one's end-to-end scenarios (imported below) run unchanged against this deployment."""
    return cluster


# The scenarios of the all-in-one tests (openstack and nova CLIs, openstacksdk, bad input), unchanged, against
# the cluster already running. A deployment's scenarios cost seconds of CPU in its processes and databases, so the
# costlier scenarios run on one database each: server actions on PostgreSQL, the nova CLI on MariaDB; the cheap ones on both. Left out: those
# naming the all-in-one's hosts (compute1 ...), and what the module's own tests already cover.
from tests.functional import test_instance_actions_cli as instance_actions_cli  # noqa: E402
from tests.functional import test_servers_cli as servers_cli  # noqa: E402
from tests.functional.test_bad_input import (  # noqa: E402,F401
    compute, test_demo_cannot_touch_admins_server_or_admin_apis, test_duplicate_keypair_is_409,
    test_malformed_and_invalid_server_requests, test_missing_and_invalid_tokens_are_401,
    test_revoked_token_is_refused_by_identity, test_unknown_server_and_microversions)
from tests.functional.test_identity_cli import (  # noqa: E402,F401
    test_catalog_lists_every_service_with_three_interfaces)
from tests.functional.test_volume_attachments_cli import (  # noqa: E402,F401
    attach_server, test_attach_complete_detach_with_cli)

ONLY_ON = {"test_nova_cli_boot_list_show_delete": "mysql", "test_attach_complete_detach_with_cli": "mysql", "test_openstacksdk_create_wait_list": "postgresql",
           "TestServerActions": "postgresql",
           "test_racing_creates_on_two_api_processes_never_pass_the_quota": "postgresql"}
test_nova_cli_boot_list_show_delete = servers_cli.test_nova_cli_boot_list_show_delete
test_openstacksdk_create_wait_list = servers_cli.test_openstacksdk_create_wait_list


def pytest_generate_tests(metafunc):
    """Every test on both databases, but those in ONLY_ON (by function or class) on their one database only."""
    if "cluster" in metafunc.fixturenames:
        owner = metafunc.cls.__name__ if metafunc.cls else metafunc.function.__name__
        kinds = [ONLY_ON[owner]] if owner in ONLY_ON else DATABASES
        metafunc.parametrize("cluster", kinds, indirect=True, scope="module")


class TestServerActions:
    """The all-in-one's actions on one server (``vm-cli``), on PostgreSQL; the server is deleted before the
    module's own tests, which count every server and all usage."""

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, cloud):
        with servers_cli.cli_server(cloud) as created:
            yield created

    test_stop_start_reboot = staticmethod(servers_cli.test_stop_start_reboot)
    test_console_log = staticmethod(servers_cli.test_console_log)
    test_set_name_and_property = staticmethod(servers_cli.test_set_name_and_property)
    test_every_action_records_its_steps = staticmethod(instance_actions_cli.test_every_action_records_its_steps)


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


def test_one_request_id_finds_a_boot_in_the_log_of_every_process_that_worked_on_it(cluster):
    """Each process logs to its own file (stderr of `kilonova serve`): a caller's request id is in the lines of
    the API, the conductor, the scheduler, Placement, the network service and the compute host's agent."""
    given = f"req-{uuid.uuid4()}"
    api = cluster.compute_api("2.74")
    image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
    response = api.post("/servers", headers={"X-OpenStack-Request-ID": given}, json={"server": {
        "name": "traced", "flavorRef": "1", "imageRef": image, "networks": "auto", "host": "cell1-host1"}})
    assert response.status_code == 202, response.text
    assert response.headers["x-openstack-request-id"] != given
    server = response.json()["server"]["id"]
    try:
        wait_for(lambda: api.get(f"/servers/{server}").json()["server"]["status"] == "ACTIVE", 60, "the boot",
                 cluster)
        lines = {name: [line for line in process.log.read_text(errors="replace").splitlines() if given in line]
                 for name, process in cluster.processes.items()}
        expected = {"api": '] compute 127.0.0.1 "POST /v2.1/servers"', "placement": "] placement ",
                    "network": "] network ", "compute-cell1": "rpc compute.cell1-host1 build_and_run_instance",
                    "conductor": "rpc conductor schedule_and_build_instances",
                    "scheduler": "rpc scheduler select_destinations"}
        for name, text in expected.items():
            # Two conductors and two schedulers share their queues: either may have handled the message.
            candidates = [name, "controller2"] if name in ("conductor", "scheduler") else [name]
            assert any(text in line for candidate in candidates for line in lines[candidate]), (name, lines)
        # Every API process answers its health check, the broker's included.
        for port in range(cluster.base_port, cluster.base_port + 5):
            assert httpx.get(f"http://127.0.0.1:{port}/healthcheck").text.strip() == "OK"
    finally:
        api.delete(f"/servers/{server}")


@pytest.fixture(scope="module")
def zone2(cluster):
    """cell2's hosts as availability zone "zone2"; the others stay in "nova"."""
    return availability_zone(cluster, "cell2-hosts", "zone2", ("cell2-host1", "cell2-host2"))


def test_servers_in_two_cells_are_listed_merged_and_paged(cluster, zone2):
    with cluster.compute_api("2.37") as api:
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        # two servers in each cell
        ids = []
        for i in range(4):
            response = api.post("/servers", json={"server": {"name": f"cells-{i}", "flavorRef": flavor,
                                                             "imageRef": image, "networks": "auto",
                                                             "availability_zone": ("nova", zone2)[i % 2]}})
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


def test_two_compute_api_processes_serve_the_same_cloud(cluster):
    """Active/active API: a second API process on its own port. Boots sent to both at once are each built
    once; what one process creates (a flavor, servers) the other sees, lists and deletes."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.cloud import free_port_block

    port = free_port_block(1)
    cluster.start_all([[("api2", ["api"], cluster.variant("api2", {"ports": {"compute": str(port)}}))]])
    try:
        with cluster.compute_api("2.37") as one, cluster.compute_api("2.37", port=port) as two:
            flavor = one.post("/flavors", json={"flavor": {"name": "active-active", "ram": 256, "vcpus": 1,
                                                           "disk": 1}})
            assert flavor.status_code == 200, flavor.text
            image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True)
                         if i["Name"] == "kilonova-tiny")

            def boot(index: int) -> str:
                response = (one, two)[index % 2].post("/servers", json={"server": {
                    "name": f"aa-{index}", "flavorRef": flavor.json()["flavor"]["id"], "imageRef": image,
                    "networks": "auto"}})
                assert response.status_code == 202, response.text
                return response.json()["server"]["id"]

            with ThreadPoolExecutor(6) as pool:
                ids = list(pool.map(boot, range(6)))

            def all_active(api):
                rows = {s["id"]: s for s in api.get("/servers/detail").json()["servers"] if s["id"] in ids}
                return rows if len(rows) == 6 and all(s["status"] == "ACTIVE" for s in rows.values()) else None

            def placed(rows: dict) -> dict:
                return {u: (s["OS-EXT-SRV-ATTR:host"], s["addresses"], s["flavor"]["id"]) for u, s in rows.items()}

            seen = placed(wait_for(lambda: all_active(two), 60, "six ACTIVE servers", cluster))
            assert placed(all_active(one)) == seen
            # Built once each: one claim per server in Placement, one instance per server on the hosts.
            assert cluster.usage()["MEMORY_MB"] == 6 * 256
            hypervisors = two.get("/os-hypervisors/host/servers").json()["hypervisors"]
            on_hosts = [s["uuid"] for h in hypervisors for s in h.get("servers", []) if s["uuid"] in ids]
            assert sorted(on_hosts) == sorted(ids)
            # Each server deleted through the process that did not create it.
            for index, uuid_ in enumerate(ids):
                assert (two, one)[index % 2].delete(f"/servers/{uuid_}").status_code == 204
            wait_for(lambda: all(api.get(f"/servers/{u}").status_code == 404 for api in (one, two) for u in ids),
                     60, "the deletes", cluster)
            assert one.delete(f"/flavors/{flavor.json()['flavor']['id']}").status_code == 202
    finally:
        cluster.processes.pop("api2").kill()
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


def test_concurrent_releases_on_one_provider_all_succeed(cluster):
    """Servers of one host deleted together release their claims at once; none may be left behind."""
    from concurrent.futures import ThreadPoolExecutor

    with cluster.placement_api() as placement:
        provider = placement.get("/resource_providers", params={"name": "cell1-host2"}).json()["resource_providers"][0]
        consumers = [str(uuid.uuid4()) for _ in range(12)]
        for consumer in consumers:
            claimed = placement.put(f"/allocations/{consumer}", json={
                "allocations": {provider["uuid"]: {"resources": {"MEMORY_MB": 16}}},
                "project_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "consumer_generation": None})
            assert claimed.status_code == 204, claimed.text
        with ThreadPoolExecutor(len(consumers)) as pool:
            codes = list(pool.map(lambda c: (placement.delete(f"/allocations/{c}").status_code), consumers))
        usages = placement.get(f"/resource_providers/{provider['uuid']}/usages").json()["usages"]
    assert codes == [204] * len(consumers)
    assert usages.get("MEMORY_MB", 0) == 0


def test_a_boot_sent_while_the_conductor_is_dead_finishes_when_it_restarts(cluster):
    with cluster.compute_api("2.37") as api:
        # Looked up before the conductors die, so they stay dead for as short a time as possible.
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        cluster.processes["conductor"].kill()
        cluster.processes["controller2"].kill()  # the other conductor (and a scheduler)
        response = api.post("/servers", json={"server": {"name": "waits-for-conductor", "flavorRef": flavor,
                                                         "imageRef": image, "networks": "auto"}})
        assert response.status_code == 202, response.text
        uuid_ = response.json()["server"]["id"]
        time.sleep(1)
        assert api.get(f"/servers/{uuid_}").json()["server"]["status"] == "BUILD"
        cluster.start_all([[("conductor-restarted", ["conductor"], None)]])
        shown = wait_for(lambda: (lambda s: s if s["status"] in ("ACTIVE", "ERROR") else None)(
            api.get(f"/servers/{uuid_}").json()["server"]), 60, "the boot to finish", cluster)
        # The boot is not lost: it is scheduled once a conductor is back. Heartbeats travel through the
        # conductors too, so when they were away longer than service_down_time (a loaded machine: the
        # restart alone can take that long) every host looks down until its next report, and the boot
        # may end in ERROR saying so, exactly as Nova's ComputeFilter would. Anything else is a failure.
        if shown["status"] == "ERROR":
            message = shown["fault"]["message"]
            assert "No valid host" in message and "ComputeFilter removed" in message, (shown["fault"], cluster.logs())
            print(f"boot sent during the outage ended in ERROR (hosts looked down): {message}")
        else:
            assert shown["status"] == "ACTIVE", (shown.get("fault"), cluster.logs())
    cluster.openstack("server", "delete", "--wait", uuid_, timeout=90)
    assert cluster.manage("placement", "audit", check=False).returncode == 0


def test_a_killed_compute_shows_down_within_the_service_down_time(cluster, zone2):
    def states(api):
        rows = api.get("/os-services", params={"binary": "nova-compute"}).json()["services"]
        return {row["host"]: row["state"] for row in rows}

    with cluster.compute_api() as api:
        # Every host reports again first (the test before this one cut the database off for a while).
        wait_for(lambda: set(states(api).values()) == {"up"}, 60, "every compute host up")
        cluster.processes["compute-cell2"].kill()
        expected = {"cell1-host1": "up", "cell1-host2": "up", "cell2-host1": "down", "cell2-host2": "down"}
        # service_down_time is 6 s here: the deadline leaves room for a loaded machine, not for a host that
        # never goes down.
        wait_for(lambda: states(api) == expected, 30, "cell2's hosts down")
    listed = cluster.openstack("compute", "service", "list", "--service", "nova-compute", fmt_json=True)
    assert {row["Host"]: row["State"] for row in listed} == expected
    # The scheduler no longer chooses the dead hosts: zone2 (cell2's hosts) has no valid host left.
    with cluster.compute_api("2.37") as api:
        flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
        image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
        response = api.post("/servers", json={"server": {"name": "to-a-dead-zone", "flavorRef": flavor,
                                                         "imageRef": image, "networks": "auto",
                                                         "availability_zone": zone2}})
        assert response.status_code == 202, response.text
        uuid_ = response.json()["server"]["id"]
        shown = wait_for(lambda: (lambda s: s if s["status"] == "ERROR" else None)(
            api.get(f"/servers/{uuid_}").json()["server"]), 30, "ERROR")
        assert "No valid host" in shown["fault"]["message"], shown["fault"]
        assert api.delete(f"/servers/{uuid_}").status_code == 204


@contextlib.contextmanager
def firehose(transport_url: str, queue: str):
    """The messages the broker delivers from ``queue`` meanwhile (RabbitMQ's firehose tracer), as envelopes.

    The list is filled when the block ends.
    """
    import aio_pika

    from kilonova.common.rpc_rabbit import amqp_url

    vhost, tap = transport_url.rsplit("/", 1)[-1], f"kn-firehose-{uuid.uuid4().hex[:8]}"

    async def bind() -> None:
        async with await aio_pika.connect(amqp_url(transport_url)) as connection:
            channel = await connection.channel()
            await (await channel.declare_queue(tap)).bind("amq.rabbitmq.trace", routing_key=f"deliver.{queue}")

    async def drain() -> list[dict]:
        async with await aio_pika.connect(amqp_url(transport_url)) as connection:
            channel = await connection.channel()
            tapped = await channel.declare_queue(tap)
            bodies = []
            while (message := await tapped.get(no_ack=True, fail=False)) is not None:
                bodies.append(json.loads(message.body))
            await tapped.delete(if_unused=False, if_empty=False)
            return bodies

    subprocess.run(["rabbitmqctl", "trace_on", "-p", vhost], check=True, capture_output=True, timeout=60)
    delivered: list[dict] = []
    try:
        asyncio.run(bind())
        yield delivered
        delivered.extend(asyncio.run(drain()))
    finally:
        subprocess.run(["rabbitmqctl", "trace_off", "-p", vhost], check=False, capture_output=True, timeout=60)


def test_a_compute_host_of_the_previous_release_boots_and_deletes(cluster):
    """A rolling upgrade half done: the API and the conductor are new, a compute host still speaks compute RPC
    1.0 (``[upgrade_levels] compute = 1.0`` on that host; it announces so in its service record). What its
    queue delivered was written for 1.0 (the build without the deadline of 1.1), and a boot and a delete work."""
    config = cluster.variant("compute-old", {"compute": {"cell": "cell1"}, "upgrade_levels": {"compute": "1.0"},
                                             "fake_driver": {"hosts": "1", "host_prefix": "old-host"}})
    with firehose(cluster.sections["DEFAULT"]["transport_url"], "kilonova.compute.old-host1") as delivered:
        cluster.start_all([[("compute-old", ["compute"], config)]])
        with cluster.compute_api("2.37") as api:
            aggregate = api.post("/os-aggregates", json={"aggregate": {"name": "previous-release",
                                                                       "availability_zone": "old"}})
            added = api.post(f"/os-aggregates/{aggregate.json()['aggregate']['id']}/action",
                             json={"add_host": {"host": "old-host1"}})
            assert added.status_code == 200, added.text
            flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
            image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True)
                         if i["Name"] == "kilonova-tiny")
            response = api.post("/servers", json={"server": {"name": "on-the-old-host", "flavorRef": flavor,
                                                             "imageRef": image, "networks": "auto",
                                                             "availability_zone": "old"}})
            assert response.status_code == 202, response.text
            uuid_ = response.json()["server"]["id"]
            shown = wait_for(lambda: (lambda s: s if s["status"] in ("ACTIVE", "ERROR") else None)(
                api.get(f"/servers/{uuid_}").json()["server"]), 60, "the boot to finish", cluster)
            assert (shown["status"], shown["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "old-host1"), shown.get("fault")
            assert api.delete(f"/servers/{uuid_}").status_code == 204
            wait_for(lambda: api.get(f"/servers/{uuid_}").status_code == 404, 60, "the delete", cluster)
    assert [(m["method"], m.get("version")) for m in delivered] == [("build_and_run_instance", "1.0"),
                                                                    ("terminate_instance", "1.0")]
    assert "deadline" not in delivered[0]["args"]


def test_periodic_discovery_maps_a_host_recorded_in_its_cell(cluster):
    """``[scheduler] discover_hosts_in_cells_interval``: a compute host whose service record is in cell2's
    database but that no host mapping names (written there directly, as upstream's nova-compute writes its
    own; Kilonova's conductors map the hosts they hear from themselves) is mapped to cell2 by the schedulers
    within seconds, with no ``cell_v2 discover_hosts``, and can then be put in an aggregate."""
    from kilonova.common.db import Database
    from kilonova.compute import versions
    from kilonova.compute.db import services

    cell2 = Database(cluster.cell_connections["cell2"], name="cell2-test", workers=1)
    try:
        cell2.run_sync(services.report, "late-host", "nova-compute", "compute", versions.SERVICE_VERSION)
    finally:
        cell2.close()
    rows = wait_for(lambda: [line for line in cluster.manage("cell_v2", "list_hosts").stdout.splitlines()
                             if " late-host " in line], 20, "late-host mapped", cluster)
    assert len(rows) == 1 and rows[0].startswith("| cell2 "), rows
    cluster.openstack("aggregate", "create", "late-hosts")
    added = cluster.openstack("aggregate", "add", "host", "late-hosts", "late-host", fmt_json=True)
    assert added["hosts"] == ["late-host"]
    cluster.openstack("aggregate", "remove", "host", "late-hosts", "late-host")
    cluster.openstack("aggregate", "delete", "late-hosts")
    service = next(row for row in cluster.openstack("compute", "service", "list", fmt_json=True)
                   if row["Host"] == "late-host")
    cluster.openstack("compute", "service", "delete", str(service["ID"]))
    assert " late-host " not in cluster.manage("cell_v2", "list_hosts").stdout


def test_os_migrations_lists_and_pages_across_both_cells(cluster):
    """Migration records in cell1 and cell2 (written through the data layer: no operation here moves a server
    between hosts yet) come back as one list, newest first, paged with a marker from either cell."""
    from datetime import datetime, timedelta

    from kilonova.common.db import Database
    from kilonova.compute.db import migrations

    now = datetime.utcnow()
    made = {}
    for offset, cell in enumerate(("cell1", "cell2", "cell1")):
        db = Database(cluster.cell_connections[cell], name=f"test-{cell}")
        try:
            made[offset] = (cell, db.run_sync(migrations.create, {
                "uuid": str(uuid.uuid4()), "instance_uuid": str(uuid.uuid4()), "migration_type": "migration",
                "status": "error", "source_compute": f"{cell}-src", "dest_compute": f"{cell}-dst",
                "created_at": now + timedelta(seconds=offset), "updated_at": now + timedelta(seconds=offset)}))
        finally:
            db.close()
    newest_first = [made[i][1]["uuid"] for i in (2, 1, 0)]
    try:
        with cluster.compute_api("2.59") as api:
            listed = api.get("/os-migrations", params={"status": "error", "migration_type": "migration"}).json()
            assert [m["uuid"] for m in listed["migrations"] if m["uuid"] in newest_first] == newest_first
            marker, pages = None, []
            while True:
                params = {"limit": "1", **({"marker": marker} if marker else {})}
                page = api.get("/os-migrations", params={**params, "status": "error"}).json()
                found = [m["uuid"] for m in page["migrations"]]
                pages.extend(u for u in found if u in newest_first)
                if not page.get("migrations_links"):
                    break
                marker = found[-1]
            assert pages == newest_first
        rows = cluster.openstack("--os-compute-api-version", "2.59", "server", "migration", "list", "--status",
                                 "error", fmt_json=True)
        assert [r["UUID"] for r in rows if r["UUID"] in newest_first] == newest_first
    finally:
        for cell, record in made.values():
            db = Database(cluster.cell_connections[cell], name=f"test-{cell}")
            try:
                db.run_sync(lambda session, u=record["uuid"]: session.execute(
                    migrations.Migration.__table__.delete().where(migrations.Migration.uuid == u)))
            finally:
                db.close()


def test_racing_creates_on_two_api_processes_never_pass_the_quota(cluster):
    """100 server creates of one project at once, sent to two API processes in turn, against an instances
    quota of 10: exactly 10 accepted (the generation each writes through is the project's, whichever
    process counted), the others upstream's 403, nothing left of them."""
    from tests.cloud import free_port_block
    from tests.projects import member_of_new_project
    from tests.quota_race import check_nothing_leaked, delete_all, race

    port = free_port_block(1)
    cluster.start_all([[("api-race", ["api"], cluster.variant("api-race", {"ports": {"compute": str(port)}}))]])
    admin, project, conn = member_of_new_project(cluster, "dist-race")
    try:
        admin.set_compute_quotas(project.id, instances=10)
        first = conn.compute.get_endpoint().rstrip("/")
        answers = race(conn, 100, None, endpoints=[first, f"http://127.0.0.1:{port}/v2.1"])
        accepted = {r.json()["server"]["id"] for r in answers if r.status_code == 202}
        assert len(accepted) == 10, [r.text for r in answers if r.status_code != 403][:3]
        assert {r.json()["forbidden"]["message"] for r in answers if r.status_code != 202} == {
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}
        check_nothing_leaked(admin, conn, project.id, accepted, conn.compute.find_flavor("1"), ports=False)
        delete_all(conn)
    finally:
        cluster.processes.pop("api-race").kill()
