"""A request with the ``group`` hint through the real scheduler manager and the conductor's late check, over
the API and cell databases of the compute harness: multi-create spreading, the group's own hosts, a move
not counting the moving server, and a build that lands on a host breaking the policy."""
import pytest

from kilonova.compute.conductor import group_check
from kilonova.compute.db import compute_nodes, server_groups
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_compute_aggregates import CandidatePlacement, hosts  # noqa: F401 - fixtures
from tests.unit.test_compute_microversions import add_server

SPEC = {"flavor": {"vcpus": 1, "memory_mb": 0, "root_gb": 0}, "project_id": "demo-project", "user_id": "u"}


async def new_group(api, policy, rules=None):
    body = {"server_group": {"name": policy, "policy": policy, **({"rules": rules} if rules else {})}}
    made = await api.post("/os-server-groups", body, token="demo-token", version="2.64")
    assert made.status_code == 200, made.text
    return made.json()["server_group"]["id"]


def join(stub, group, *servers):
    stub.api_db.run_sync(server_groups.add_members, group, [s["uuid"] for s in servers], -1)


@pytest.fixture
def scheduler(stub, hosts):
    nodes = stub.cells.default.db.run_sync(lambda s: [n.uuid for n, _ in compute_nodes.list_with_services(s)])
    return SchedulerManager(stub.conf, CandidatePlacement(nodes), stub.cells)


async def test_multi_create_spreads_an_anti_affinity_group_and_explains_the_fourth(api, stub, scheduler):
    group = await new_group(api, "anti-affinity")
    spec = dict(SPEC, scheduler_hints={"group": group})
    chosen = await scheduler.select_destinations(spec, ["a1", "a2", "a3"])
    assert sorted(s[0]["host"] for s in chosen) == ["compute1", "compute2", "compute3"]
    # The three members are placed now (their records show their hosts): no host is left for a fourth.
    join(stub, group, *[add_server(stub, f"m{i}", host=s[0]["host"]) for i, s in enumerate(chosen)])
    with pytest.raises(NoValidHost) as info:
        await scheduler.select_destinations(spec, ["a4"])
    assert "ServerGroupAntiAffinityFilter removed 3 of 3 hosts" in str(info.value)
    assert f"server group {group}" in str(info.value)


async def test_a_multi_create_past_the_hosts_fails_and_says_after_how_many(api, stub, scheduler):
    group = await new_group(api, "anti-affinity", {"max_server_per_host": 1})
    with pytest.raises(NoValidHost) as info:
        await scheduler.select_destinations(dict(SPEC, scheduler_hints={"group": group}), ["b1", "b2", "b3", "b4"])
    assert "after 3 of the request's servers were placed" in str(info.value)


async def test_affinity_follows_the_first_member_and_a_move_does_not_count_itself(api, stub, scheduler):
    group = await new_group(api, "affinity")
    spec = dict(SPEC, scheduler_hints={"group": group})
    lone = add_server(stub, "lone", host="compute2")
    join(stub, group, lone)
    [picked] = await scheduler.select_destinations(spec, ["c1"])
    assert picked[0]["host"] == "compute2" and len(picked) == 1  # no alternate elsewhere
    # The lone member moving is not held to its own host.
    [moved] = await scheduler.select_destinations(spec, [lone["uuid"]], ignore_hosts=["compute2"])
    assert moved[0]["host"] in ("compute1", "compute3")


async def test_the_late_check_finds_a_host_taken_by_a_parallel_build(api, stub):
    anti = await new_group(api, "anti-affinity")
    first, second = add_server(stub, "p1", host="compute1"), add_server(stub, "p2", host="compute1")
    join(stub, anti, first, second)
    spec = {"scheduler_hints": {"group": anti}}
    # Both were sent to compute1 at once: each sees the other there.
    assert await group_check.violation(stub.cells, spec, second["uuid"], "compute1") == \
        "Anti-affinity instance group policy was violated."
    assert await group_check.violation(stub.cells, spec, second["uuid"], "compute2") is None
    two = await new_group(api, "anti-affinity", {"max_server_per_host": 2})
    third = add_server(stub, "p3", host="compute3")
    join(stub, two, third)
    assert await group_check.violation(stub.cells, {"scheduler_hints": {"group": two}}, "new", "compute3") is None

    together = await new_group(api, "affinity")
    near = add_server(stub, "n1", host="compute2")
    join(stub, together, near)
    spec = {"scheduler_hints": {"group": together}}
    assert await group_check.violation(stub.cells, spec, "new", "compute1") == \
        "Affinity instance group policy was violated."
    assert await group_check.violation(stub.cells, spec, "new", "compute2") is None
    assert await group_check.violation(stub.cells, {"scheduler_hints": {}}, "new", "compute1") is None
