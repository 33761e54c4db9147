"""kill -9 during the server lifecycle's long operations, over RabbitMQ and PostgreSQL.

Operations: resize, confirm, revert, live migration and rebuild.

Three compute processes with one fake host each (so a move's source and destination die separately),
one conductor. Each case holds one driver step of an operation for a few seconds
(``[fake_driver] step_delays``), kills the conductor, the source's or the destination's compute process
while the step runs, starts it again, and then requires what the issue promises: within the operations'
deadline the server is ACTIVE (or SHUTOFF / VERIFY_RESIZE, a state the user can go on from) on exactly one
host, or in ERROR with a fault that says what failed; its move's record ended (never left ``migrating``);
Placement holds exactly the server's claim on its host and nothing for the move; and the allocation audit
finds nothing leaked or missing.
"""
from __future__ import annotations

import time

import pytest

from tests.distributed.cluster import two_cell_deployment

STEP_SECONDS = 4
# Deadlines short enough for a test: a move stuck this long is ended by the conductor's reconcile pass.
DEADLINE = 15
HOSTS = ("fa-host1", "fb-host1", "fc-host1")
ENDED = ("confirmed", "reverted", "error", "failed", "done", "completed", "cancelled", "finished")


@pytest.fixture(scope="module")
def cluster():
    delays = ",".join(f"{step}={STEP_SECONDS}" for step in (
        "migrate_disk_and_power_off", "finish_migration", "confirm_migration", "finish_revert_migration",
        "live_migration", "rebuild"))
    computes = [(f"compute-{name.split('-')[0]}", "cell1", {"hosts": "1", "host_prefix": name[:-1],
                                                            "step_delays": delays}) for name in HOSTS]
    extra = {"conductor": {"reconcile_interval": "2", "live_migration_stall_timeout": str(DEADLINE)},
             "compute": {"move_timeout": str(DEADLINE), "shelve_timeout": str(DEADLINE), "build_timeout": "30"},
             "DEFAULT": {"service_down_time": "6"}, "quota": {"instances": "-1", "cores": "-1", "ram": "-1"}}
    with two_cell_deployment("postgresql", second_controller=False, extra=extra, computes=computes) as deployed:
        yield deployed


def process_of(host: str) -> str:
    return f"compute-{host.split('-')[0]}"


def server_of(compute, uuid: str) -> dict:
    response = compute.get(f"/servers/{uuid}")
    assert response.status_code == 200, response.text
    return response.json()["server"]


def wait(check, timeout: float, what: str, cluster=None):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {value}" + (f"\n{cluster.logs()}" if cluster else ""))


def migrations_of(compute, uuid: str) -> list[dict]:
    response = compute.get("/os-migrations", params={"instance_uuid": uuid})
    assert response.status_code == 200, response.text
    return response.json()["migrations"]


def event_running(compute, uuid: str, event: str) -> bool:
    """The instance's newest action has ``event`` started and not finished."""
    actions = compute.get(f"/servers/{uuid}/os-instance-actions").json()["instanceActions"]
    if not actions:
        return False
    detail = compute.get(f"/servers/{uuid}/os-instance-actions/{actions[0]['request_id']}").json()
    return any(e["event"] == event and not e.get("finish_time") for e in detail["instanceAction"].get("events", []))


def boot_all(cluster, compute, names: list[str]) -> dict[str, dict]:
    """Servers booted together, then each waited for."""
    net = cluster.network_api().get("/v2.0/networks", params={"name": "private"}).json()["networks"][0]["id"]
    image = cluster.openstack("image", "show", "kilonova-tiny", fmt_json=True)["id"]
    uuids = {}
    for name in names:
        created = compute.post("/servers", json={"server": {"name": name, "flavorRef": "1", "imageRef": image,
                                                            "networks": [{"uuid": net}]}})
        assert created.status_code == 202, created.text
        uuids[name] = created.json()["server"]["id"]
    return {name: wait(lambda: (s := server_of(compute, uuid))["status"] == "ACTIVE" and s, 120, f"{name} ACTIVE",
                       cluster) for name, uuid in uuids.items()}


def settled(compute, uuid: str):
    """The server out of every task, in a state a user can go on from, and its moves ended; else None."""
    shown = server_of(compute, uuid)
    if shown["OS-EXT-STS:task_state"] is not None:
        return None
    if shown["status"] not in ("ACTIVE", "SHUTOFF", "VERIFY_RESIZE", "ERROR"):
        return None
    moves = migrations_of(compute, uuid)
    if any(m["status"] not in ENDED for m in moves):
        return None
    return shown


def check_claims(cluster, shown: dict) -> None:
    """Placement holds the server's claim on its host's provider only, and nothing for its moves."""
    with cluster.placement_api() as placement:
        providers = {p["uuid"]: p["name"] for p in placement.get("/resource_providers").json()["resource_providers"]}
        held = placement.get(f"/allocations/{shown['id']}").json()["allocations"]
        hosts = sorted(providers[rp] for rp in held)
        if shown["status"] == "VERIFY_RESIZE":
            return  # the destination holds the server's claim, the source the migration's: checked after confirm
        assert hosts == [shown["OS-EXT-SRV-ATTR:host"]], (hosts, shown["OS-EXT-SRV-ATTR:host"])
    with cluster.compute_api("2.59") as compute:
        for move in migrations_of(compute, shown["id"]):
            with cluster.placement_api() as placement:
                assert placement.get(f"/allocations/{move['uuid']}").json()["allocations"] == {}, move


def claims_match(cluster, shown: dict) -> bool:
    try:
        check_claims(cluster, shown)
    except AssertionError:
        return False
    return True


def finish_and_audit(cluster, compute, uuid: str) -> dict:
    try:
        shown = wait(lambda: settled(compute, uuid), DEADLINE * 4, "the operation to end", cluster)
    except AssertionError as exc:
        now = server_of(compute, uuid)
        raise AssertionError(f"server {now['status']} task {now['OS-EXT-STS:task_state']} on "
                             f"{now['OS-EXT-SRV-ATTR:host']}, moves {migrations_of(compute, uuid)}\n{exc}") from None
    if shown["status"] == "ERROR":
        assert shown.get("fault", {}).get("message"), f"ERROR without a fault: {shown}"
    if shown["status"] == "VERIFY_RESIZE":
        # The user confirms; a 409 is a confirm the restarted services took up again meanwhile (a task under
        # way): then that one must end the resize.
        def confirmed():
            answer = compute.post(f"/servers/{uuid}/action", json={"confirmResize": None})
            assert answer.status_code in (204, 400, 409), answer.text
            return answer.status_code == 204 or server_of(compute, uuid)["status"] != "VERIFY_RESIZE"
        wait(confirmed, DEADLINE, "the confirm to be taken", cluster)
        shown = wait(lambda: (s := settled(compute, uuid)) and s["status"] != "VERIFY_RESIZE" and s, DEADLINE * 2,
                     "the confirm to end", cluster)
    # The claims follow the state by a moment (a rollback releases right after it records the state; a
    # crash in between is the periodic passes' to finish): they must converge, not be right at once.
    wait(lambda: claims_match(cluster, shown), DEADLINE, "the claims to match the server", cluster)
    check_claims(cluster, shown)
    audit = cluster.manage("placement", "audit", "--verbose", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    return shown


def start_resize(compute, uuid: str) -> None:
    response = compute.post(f"/servers/{uuid}/action", json={"resize": {"flavorRef": "2"}})
    assert response.status_code == 202, response.text


def start_resize_then(key: str):
    """A resize to VERIFY_RESIZE, then ``key`` (confirmResize or revertResize)."""
    def start(compute, uuid: str) -> None:
        start_resize(compute, uuid)
        wait(lambda: server_of(compute, uuid)["status"] == "VERIFY_RESIZE", 60, "VERIFY_RESIZE")
        response = compute.post(f"/servers/{uuid}/action", json={key: None})
        assert response.status_code in (202, 204), response.text
    return start


def start_live_migration(compute, uuid: str) -> None:
    response = compute.post(f"/servers/{uuid}/action", json={"os-migrateLive": {"host": None,
                                                                                "block_migration": "auto"}})
    assert response.status_code == 202, response.text


def start_rebuild(compute, uuid: str) -> None:
    image = server_of(compute, uuid)["image"]["id"]
    response = compute.post(f"/servers/{uuid}/action", json={"rebuild": {"imageRef": image, "name": "rebuilt"}})
    assert response.status_code == 202, response.text


OPERATIONS = {"resize": start_resize, "confirm": start_resize_then("confirmResize"),
              "revert": start_resize_then("revertResize"), "live-migrate": start_live_migration,
              "rebuild": start_rebuild}

# (operation, process killed, the instance-action event during which it is killed: a held driver step).
# Kills of a move's source or destination host are the operations' own distributed tests
# (test_resize_faults, test_live_migration_faults, test_shelve_faults, test_evacuate); these are the
# conductor's deaths and the steps those leave out.
CASES = [
    ("resize", "conductor", "compute_finish_resize"),
    ("confirm", "source", "compute_confirm_resize"),
    ("revert", "source", "compute_finish_revert_resize"),
    ("live-migrate", "conductor", "compute_live_migration"),
    ("rebuild", "source", "compute_rebuild_instance"),
    ("rebuild", "conductor", "compute_rebuild_instance"),
]
IDS = [f"{o}-{v}-{e}" for o, v, e in CASES]


@pytest.fixture(scope="module")
def servers(cluster):
    """One server per case, booted together up-front."""
    with cluster.compute_api("2.80") as compute:
        return boot_all(cluster, compute, [f"fault-{i}" for i in range(len(CASES))])


def victim_process(compute, uuid: str, victim: str, source: str) -> str:
    if victim == "conductor":
        return "conductor"
    if victim == "source":
        return process_of(source)
    moves = migrations_of(compute, uuid)
    host = moves[0]["dest_compute"] if moves else server_of(compute, uuid)["OS-EXT-SRV-ATTR:host"]
    return process_of(host)


@pytest.mark.parametrize("operation,victim,event", CASES, ids=IDS)
def test_an_operation_survives_a_kill_mid_step(cluster, servers, operation, victim, event):
    shown = servers[f"fault-{CASES.index((operation, victim, event))}"]
    uuid, source = shown["id"], shown["OS-EXT-SRV-ATTR:host"]
    with cluster.compute_api("2.80") as compute:
        OPERATIONS[operation](compute, uuid)
        wait(lambda: event_running(compute, uuid, event), 60, f"{event} to start", cluster)
        cluster.restart(victim_process(compute, uuid, victim, source))
        ended = finish_and_audit(cluster, compute, uuid)
        assert ended["status"] in ("ACTIVE", "ERROR"), ended
        compute.delete(f"/servers/{uuid}")
        wait(lambda: compute.get(f"/servers/{uuid}").status_code == 404, 30, "the delete")
