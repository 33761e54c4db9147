"""Server-group policies on a running cloud, through openstacksdk and the real `openstack` CLI: the soft policies
spread or pack (and never fail), and the hard ones hold through cold migration, resize, live migration (with a
requested or a forced host) and evacuation, with 2.64's ``max_server_per_host``; disabling a compute service
(os-services, os-hosts) puts COMPUTE_STATUS_DISABLED on its provider at once, as upstream's API asks the host."""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta

import openstack
import pytest

from tests.cloud import SHARED_CLOUD_CONFIG, new_cloud, wait_for
from tests.projects import member_of_new_project

PROJECT = "affinity"
HOSTS = ["compute1", "compute2", "compute3", "compute4"]
DISABLED = "COMPUTE_STATUS_DISABLED"
REPORT_INTERVAL = 10  # [DEFAULT] report_interval of the shared cloud: seconds between a host's heartbeats


def admin_in(cloud, project):
    """The admin user scoped to ``project`` (admin there too): it names hosts at create (2.74) and moves."""
    admin = cloud.sdk()
    user = admin.identity.find_user(cloud.auth()["username"], domain_id="default")
    admin.identity.assign_project_role_to_user(project, user, admin.identity.find_role("admin"))
    auth = cloud.auth()
    return openstack.connect(auth_url=auth["auth_url"], username=auth["username"], password=auth["password"],
                             project_name=project.name, user_domain_name="Default", project_domain_name="Default",
                             region_name="RegionOne")


@pytest.fixture(scope="module")
def conn(cloud):
    admin, project, _member = member_of_new_project(cloud, PROJECT)
    admin.compute.update_quota_set(project.id, instances=40, cores=80, server_groups=20, server_group_members=20)
    yield admin_in(cloud, project)
    admin.compute.revert_quota_set(project.id)


@pytest.fixture
def made(conn):
    """The servers and groups a test makes, deleted after it."""
    things = {"servers": [], "groups": []}
    yield things
    for uuid in things["servers"]:
        conn.compute.delete_server(uuid, ignore_missing=True)
    wait_for(lambda: not any(conn.compute.find_server(uuid) for uuid in things["servers"]), "the servers to go", 60)
    for uuid in things["groups"]:
        conn.compute.delete_server_group(uuid, ignore_missing=True)


def group(conn, made, policy: str, **rules) -> str:
    body = {"server_group": {"name": f"g-{policy}", "policy": policy, **({"rules": rules} if rules else {})}}
    answer = conn.compute.post("/os-server-groups", json=body, microversion="2.64")
    assert answer.status_code == 200, answer.text
    made["groups"].append(answer.json()["server_group"]["id"])
    return made["groups"][-1]


def boot(conn, made, name: str, group_id: str | None, host: str | None = None, count: int = 1) -> list[str]:
    image = conn.image.find_image("kilonova-tiny")
    server = {"name": name, "flavorRef": "1", "imageRef": image.id, "networks": "none"}
    if host:
        server["host"] = host
    if count > 1:
        server.update(min_count=count, max_count=count, return_reservation_id=True)
    hints = {"os:scheduler_hints": {"group": group_id}} if group_id else {}
    answer = conn.compute.post("/servers", json={"server": server, **hints}, microversion="2.74")
    assert answer.status_code == 202, answer.text
    if count > 1:
        reservation = answer.json()["reservation_id"]
        uuids = [s.id for s in conn.compute.servers(reservation_id=reservation)]
    else:
        uuids = [answer.json()["server"]["id"]]
    made["servers"].extend(uuids)
    for uuid in uuids:
        wait_for(lambda: conn.compute.get_server(uuid).status in ("ACTIVE", "ERROR"), "the build to end", 60)
        assert conn.compute.get_server(uuid).status == "ACTIVE", conn.compute.get_server(uuid).fault
    return uuids


def host_of(conn, uuid: str) -> str:
    return conn.compute.get_server(uuid).compute_host


def settled(conn, uuid: str):
    """The server once its task is over."""
    wait_for(lambda: conn.compute.get_server(uuid).task_state is None, "the task to end", 60)
    return conn.compute.get_server(uuid)


def migrations(conn, uuid: str) -> list[dict]:
    found = conn.compute.get(f"/os-migrations?instance_uuid={uuid}", microversion="2.59").json()["migrations"]
    return sorted(found, key=lambda m: m["id"])


def cold_migrate(conn, uuid: str, host: str | None = None, flavor: str | None = None) -> dict:
    """A cold migration (to ``host`` when named, 2.56) or a resize; its migration record once it ends."""
    before = len(migrations(conn, uuid))
    body = {"resize": {"flavorRef": flavor}} if flavor else {"migrate": {"host": host} if host else None}
    answer = conn.compute.post(f"/servers/{uuid}/action", json=body, microversion="2.56")
    assert answer.status_code == 202, answer.text
    wait_for(lambda: len(migrations(conn, uuid)) > before and migrations(conn, uuid)[-1]["status"] in (
        "finished", "error"), "the move to end", 60)
    server = settled(conn, uuid)
    if server.status == "VERIFY_RESIZE":
        conn.compute.confirm_server_resize(uuid)
        wait_for(lambda: conn.compute.get_server(uuid).status == "ACTIVE", "the confirmation", 60)
    return migrations(conn, uuid)[-1]


def failed_event_says(conn, uuid: str, text: str) -> bool:
    actions = conn.compute.get(f"/servers/{uuid}/os-instance-actions", microversion="2.84").json()
    latest = actions["instanceActions"][0]
    events = conn.compute.get(f"/servers/{uuid}/os-instance-actions/{latest['request_id']}",
                              microversion="2.84").json()["instanceAction"]["events"]
    return any(e["result"] == "Error" and text in (e.get("traceback") or "") + (e.get("details") or "")
               for e in events)


def test_soft_policies_spread_then_share_and_pack(conn, made):
    apart = group(conn, made, "soft-anti-affinity")
    four = boot(conn, made, "spread", apart, count=4)
    assert sorted(host_of(conn, u) for u in four) == HOSTS  # one per host while hosts remain
    two = boot(conn, made, "more", apart, count=2)  # no host is free: they share, no failure
    hosts = [host_of(conn, u) for u in four + two]
    assert max(hosts.count(h) for h in HOSTS) == 2 and len(set(hosts)) == 4

    # soft-affinity's weigher counts as much as each of RAM, CPU and disk (normalised 0..1, multipliers 1), which
    # all prefer the emptier hosts: as upstream documents, an operator who wants it to win raises its multiplier,
    # here for the four hosts through an aggregate's metadata.
    aggregate = conn.compute.create_aggregate(name="pack-hard")
    try:
        for host in HOSTS:
            conn.compute.add_host_to_aggregate(aggregate, host)
        conn.compute.set_aggregate_metadata(aggregate, {"soft_affinity_weight_multiplier": "10"})
        together = group(conn, made, "soft-affinity")
        packed = boot(conn, made, "pack", together, count=3) + boot(conn, made, "pack-later", together)
        assert len({host_of(conn, u) for u in packed}) == 1
    finally:
        for host in HOSTS:
            conn.compute.remove_host_from_aggregate(aggregate, host)
        conn.compute.delete_aggregate(aggregate)


def test_cold_migration_and_resize_keep_anti_affinity(conn, made):
    apart = group(conn, made, "anti-affinity")
    a, b, c = (boot(conn, made, f"apart-{i}", apart, host)[0] for i, host in enumerate(HOSTS[:3]))
    busy = [boot(conn, made, f"busy-{i}", None, "compute4")[0] for i in range(2)]  # the weighers would avoid it
    moved = cold_migrate(conn, a)
    assert moved["status"] == "confirmed" and host_of(conn, a) == "compute4"  # the one host with no member

    for server in busy:
        conn.compute.delete_server(server)
    d = boot(conn, made, "apart-3", apart, "compute1")[0]  # every host holds a member now
    for server, body in ((b, {}), (c, {"flavor": "2"}), (d, {"host": "compute2"})):
        where = host_of(conn, server)
        ended = cold_migrate(conn, server, **body)
        assert ended["status"] == "error", body
        shown = conn.compute.get_server(server)
        assert (shown.status, shown.compute_host, shown.flavor.original_name) == ("ACTIVE", where, "m1.tiny")
        assert failed_event_says(conn, server, "No valid host was found")


def test_max_server_per_host_is_kept_by_moves(conn, made):
    two_each = group(conn, made, "anti-affinity", max_server_per_host=2)
    pairs = {host: [boot(conn, made, f"pair-{host}", two_each, host)[0] for _ in range(2)] for host in HOSTS[:3]}
    first, second = pairs["compute1"]
    assert cold_migrate(conn, first)["status"] == "confirmed"
    assert host_of(conn, first) == "compute4"  # the others hold two each already
    boot(conn, made, "pair-compute4", two_each, "compute4")
    # compute2 to compute4 hold two each; compute1 is the server's own: nowhere to go.
    assert cold_migrate(conn, second)["status"] == "error"
    assert (conn.compute.get_server(second).status, host_of(conn, second)) == ("ACTIVE", "compute1")


def test_a_pinned_affinity_member_cannot_be_moved_away(conn, made):
    together = group(conn, made, "affinity")
    first = boot(conn, made, "near", together)[0]
    second = boot(conn, made, "near", together)[0]
    home = host_of(conn, first)
    assert host_of(conn, second) == home
    elsewhere = next(h for h in HOSTS if h != home)
    assert cold_migrate(conn, second, host=elsewhere)["status"] == "error"
    assert (conn.compute.get_server(second).status, host_of(conn, second)) == ("ACTIVE", home)
    assert failed_event_says(conn, second, "No valid host was found")
    forced = conn.compute.post(f"/servers/{second}/action", json={"os-migrateLive": {
        "host": elsewhere, "block_migration": "auto", "force": True}}, microversion="2.30")
    assert forced.status_code == 400
    assert forced.json()["badRequest"]["message"].endswith("Affinity instance group policy was violated.")
    assert (settled(conn, second).status, host_of(conn, second)) == ("ACTIVE", home)


def test_live_migration_to_a_host_that_breaks_a_hard_policy_is_refused(conn, made):
    apart = group(conn, made, "anti-affinity")
    a, _b = (boot(conn, made, f"live-{i}", apart, host)[0] for i, host in enumerate(HOSTS[:2]))

    def live(version: str, **body):
        return conn.compute.post(f"/servers/{a}/action", json={"os-migrateLive": {
            "block_migration": "auto", **body}}, microversion=version)

    # A requested host goes through the scheduler: its group filter leaves no host (before 2.34, a 400 at once).
    asked = live("2.30", host="compute2")
    assert asked.status_code == 400 and "No valid host was found" in asked.json()["badRequest"]["message"]
    # A forced host skips the scheduler; the destination's pre-check validates the group policy, as upstream's
    # check_can_live_migrate_destination does.
    forced = live("2.30", host="compute2", force=True)
    assert forced.status_code == 400
    assert forced.json()["badRequest"]["message"] == (
        "Migration pre-check error: Failed to validate instance group policy due to: Build of instance "
        f"{a} was re-scheduled: Anti-affinity instance group policy was violated.")
    # From 2.34 the checks run after the 202: the migration ends in error, the server stays where it was.
    count = len(migrations(conn, a))
    assert live("2.34", host="compute2").status_code == 202
    wait_for(lambda: len(migrations(conn, a)) > count and migrations(conn, a)[-1]["status"] == "error",
             "the live migration to fail", 60)
    assert (settled(conn, a).status, host_of(conn, a)) == ("ACTIVE", "compute1")
    # Without a host, the scheduler picks one holding no member.
    assert live("2.30", host=None).status_code == 202
    wait_for(lambda: migrations(conn, a)[-1]["status"] == "completed", "the live migration", 60)
    assert host_of(conn, a) in ("compute3", "compute4")


def provider_traits(cloud, host: str) -> set[str]:
    with cloud.http("placement") as placement:
        placement.headers["OpenStack-API-Version"] = "placement 1.36"
        provider = placement.get("/resource_providers", params={"name": host}).json()["resource_providers"][0]
        return set(placement.get(f"/resource_providers/{provider['uuid']}/traits").json()["traits"])


def away_from_heartbeat(conn, host: str, margin: float = 2.0) -> None:
    """Wait past the host's next heartbeat when it is due within ``margin`` seconds (the next one comes no
    sooner than ``report_interval`` after the last, whose time the service record shows)."""
    service = conn.compute.get(f"/os-services?host={host}&binary=nova-compute").json()["services"][0]
    last = datetime.fromisoformat(service["updated_at"])
    due = (last + timedelta(seconds=REPORT_INTERVAL) - datetime.utcnow()).total_seconds()
    if due < margin:
        time.sleep(max(due, 0) + 0.5)


def test_a_disabled_service_has_the_disabled_trait_at_once(cloud, conn, made):
    try:
        cloud.openstack("compute", "service", "set", "--disable", "compute4", "nova-compute")
        assert DISABLED in provider_traits(cloud, "compute4")  # at once, not at the next heartbeat
        spread = boot(conn, made, "not-on-4", group(conn, made, "soft-anti-affinity"), count=3)
        assert "compute4" not in {host_of(conn, u) for u in spread}
        cloud.openstack("compute", "service", "set", "--enable", "compute4", "nova-compute")
        assert DISABLED not in provider_traits(cloud, "compute4")

        # os-hosts (until 2.42) asks the host the same way. Its service record stays enabled, so the host's next
        # heartbeat puts the trait back in step with it (as upstream's periodic does): not while this looks.
        away_from_heartbeat(conn, "compute4")
        answer = conn.compute.put("/os-hosts/compute4", json={"status": "disable"}, microversion="2.42")
        assert answer.status_code == 200 and answer.json() == {"host": "compute4", "status": "disabled"}
        assert DISABLED in provider_traits(cloud, "compute4")
        answer = conn.compute.put("/os-hosts/compute4", json={"status": "enable"}, microversion="2.42")
        assert answer.json() == {"host": "compute4", "status": "enabled"}
        assert DISABLED not in provider_traits(cloud, "compute4")
    finally:
        cloud.openstack("compute", "service", "set", "--enable", "compute4", "nova-compute")


@pytest.fixture(scope="module")
def three_hosts():
    """A cloud of its own: its compute1 is forced down for good (forcing it up again waits for its agent to
    restart after the evacuation, which the shared cloud cannot)."""
    cloud = new_cloud(hosts=3, config=SHARED_CLOUD_CONFIG)
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def test_evacuation_picks_a_host_without_members(three_hosts):
    cloud, made = three_hosts, {"servers": [], "groups": []}
    conn = cloud.sdk()
    apart = group(conn, made, "anti-affinity")
    a, b = (boot(conn, made, f"evac-{i}", apart, host)[0] for i, host in enumerate(["compute1", "compute2"]))
    for i in range(2):  # compute3 the busier: the weighers alone would pick compute2
        boot(conn, made, f"busy-{i}", None, "compute3")
    cloud.openstack("--os-compute-api-version", "2.11", "compute", "service", "set", "--down", "compute1",
                    "nova-compute")
    # A forced host skips the scheduler; the destination's late check aborts it (migration "failed") and the
    # server keeps its state and host, its claim there given back.
    answer = conn.compute.post(f"/servers/{a}/action", json={"evacuate": {"host": "compute2", "force": True}},
                               microversion="2.29")
    assert answer.status_code == 200, answer.text
    wait_for(lambda: migrations(conn, a) and migrations(conn, a)[-1]["status"] in ("done", "error", "failed"),
             "the forced evacuation to end", 60)
    assert migrations(conn, a)[-1]["status"] == "failed"
    assert (settled(conn, a).status, host_of(conn, a)) == ("ACTIVE", "compute1")
    assert failed_event_says(conn, a, "Anti-affinity instance group policy was violated.")
    with cloud.http("placement") as placement:
        placement.headers["OpenStack-API-Version"] = "placement 1.36"
        held = placement.get(f"/allocations/{a}").json()["allocations"]
        names = {p["uuid"]: p["name"] for p in placement.get("/resource_providers").json()["resource_providers"]}
    assert [names[uuid] for uuid in held] == ["compute1"]

    answer = conn.compute.post(f"/servers/{a}/action", json={"evacuate": {}}, microversion="2.68")
    assert answer.status_code == 200, answer.text
    wait_for(lambda: len(migrations(conn, a)) == 2 and migrations(conn, a)[-1]["status"] in ("done", "error"),
             "the evacuation to end", 60)
    assert migrations(conn, a)[-1]["status"] == "done"
    assert (settled(conn, a).status, host_of(conn, a)) == ("ACTIVE", "compute3")  # compute2 holds b
    assert host_of(conn, b) == "compute2"
