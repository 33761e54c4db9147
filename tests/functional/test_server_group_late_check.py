"""The conductor's late check of a hard server-group policy (upstream's compute-side
_validate_instance_group_policy), seen through openstacksdk on a cloud of its own whose scheduler does not
run the group filters and stacks servers (negative weight multipliers): every build into an anti-affinity
group is first given the host of the group's other server, and only the late check moves it to an alternate
or, with none left, ends it in ERROR saying which policy was violated."""
from __future__ import annotations

import shutil

import pytest

from tests.cloud import SHARED_CLOUD_CONFIG, new_cloud, wait_for

CONFIG = {**SHARED_CLOUD_CONFIG, "filter_scheduler": {
    "enabled_filters": "ComputeFilter", "ram_weight_multiplier": "-1", "cpu_weight_multiplier": "-1",
    "disk_weight_multiplier": "-1"}}


@pytest.fixture(scope="module")
def stacking():
    cloud = new_cloud(hosts=2, config=CONFIG)
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def boot(conn, name: str, group: str) -> str:
    image = conn.image.find_image("kilonova-tiny")
    body = {"server": {"name": name, "flavorRef": "1", "imageRef": image.id, "networks": "none"},
            "os:scheduler_hints": {"group": group}}
    made = conn.compute.post("/servers", json=body, microversion="2.37")
    assert made.status_code == 202, made.text
    uuid = made.json()["server"]["id"]
    wait_for(lambda: conn.compute.get_server(uuid).status in ("ACTIVE", "ERROR"), "the build to end", 60)
    return uuid


def test_a_build_given_a_host_that_breaks_anti_affinity_is_rescheduled_or_fails_saying_so(stacking):
    conn = stacking.sdk()
    group = conn.compute.post("/os-server-groups", json={"server_group": {"name": "apart", "policy": "anti-affinity"}},
                              microversion="2.64").json()["server_group"]["id"]
    first = boot(conn, "first", group)
    second = boot(conn, "second", group)
    servers = [conn.compute.get_server(uuid) for uuid in (first, second)]
    assert [s.status for s in servers] == ["ACTIVE", "ACTIVE"]
    assert servers[0].compute_host != servers[1].compute_host  # stacking alone would have put them together

    third = conn.compute.get_server(boot(conn, "third", group))
    assert third.status == "ERROR"
    assert "Anti-affinity instance group policy was violated." in third.fault["details"]
