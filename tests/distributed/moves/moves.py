"""What the move fault modules ask of the deployment: its move records, claims and servers."""
from __future__ import annotations

from kilonova.compute.conductor.tasks.live_migrate import ASK_TIMEOUT
from tests.distributed.cluster import wait_for

MOVE_TIMEOUT = 5  # [compute] move_timeout: a cold migration stuck this long is ended
STALL = 5  # [conductor] live_migration_stall_timeout: a live one nothing moves for this long is ended
# How long the conductor's own waits take to finish a live migration whose destination died during the copy, on any
# machine (about 70 s, measured 71-72 s at load 8-18): the copy (20 s, [fake_driver] live_migration_delay), the stall
# seen (STALL), the source's job aborted, which bumps the record, so the stall seen again (STALL), the dead destination
# asked where the guest is (ASK_TIMEOUT, unanswered) and told to finish the move (3 * ASK_TIMEOUT, unanswered) before
# the conductor switches the host itself. (20 + STALL + 60 s left only 15 s for a loaded machine.)
LIVE_DESTINATION_DEAD = 20 + 2 * STALL + 4 * ASK_TIMEOUT
ASSIST_TIMEOUT = 30  # [volume] assisted_snapshot_timeout: a host's report on a snapshot is waited for this long
FLAVOR = {"DISK_GB": 1, "MEMORY_MB": 512, "VCPU": 1}


def newest_migration(api, uuid: str, kind: str) -> dict:
    """The server's newest move record of ``kind`` ("migration", "live-migration"); status None if none yet."""
    rows = api.get("/os-migrations", params={"instance_uuid": uuid, "migration_type": kind}).json()
    return max(rows["migrations"], key=lambda m: m["id"], default={"status": None})


def wait_status(cluster, api, uuid: str, kind: str, statuses: tuple[str, ...], timeout: float, what: str) -> dict:
    return wait_for(lambda: (lambda m: m if m["status"] in statuses else None)(newest_migration(api, uuid, kind)),
                    timeout, what, cluster)


def held(cluster, consumer: str) -> dict[str, dict]:
    with cluster.placement_api() as placement:
        names = {p["uuid"]: p["name"] for p in placement.get("/resource_providers").json()["resource_providers"]}
        allocations = placement.get(f"/allocations/{consumer}").json()["allocations"]
    return {names[rp]: a["resources"] for rp, a in allocations.items()}


def settled(cluster, api, uuid: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (lambda s: s if s["OS-EXT-STS:task_state"] is None else None)(
        api.get(f"/servers/{uuid}").json()["server"]), timeout, "the server's task to end", cluster)


def assert_audit_clean(cluster) -> None:
    audit = cluster.manage("placement", "audit", "--verbose", check=False)
    assert audit.returncode == 0, audit.stdout


def delete(cluster, api, uuid: str) -> None:
    api.delete(f"/servers/{uuid}")
    wait_for(lambda: api.get(f"/servers/{uuid}").status_code == 404, 60, "the server to be deleted", cluster)
