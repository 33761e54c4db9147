"""The classic quota driver under a race: 100 server creates at once against an instances quota of 10 (raw
HTTP from threads) — exactly 10 accepted, the others upstream's 403, nothing left of them; then the
per-user count of server_group_members, as upstream's DbQuotaDriver counts it."""
from __future__ import annotations

import time

import openstack
import pytest

from tests.projects import member_of_new_project
from tests.quota_race import check_nothing_leaked, delete_all, race

PROJECT = "quotarace"


@pytest.fixture(scope="module")
def member(cloud):
    admin, project, conn = member_of_new_project(cloud, PROJECT)
    yield admin, project, conn
    delete_all(conn)


def test_100_racing_creates_against_an_instances_quota_of_10(cloud, member):
    admin, project, conn = member
    admin.set_compute_quotas(project.id, instances=10)
    private = conn.network.find_network("private")
    started = time.monotonic()
    answers = race(conn, 100, private.id)
    elapsed = time.monotonic() - started
    accepted = {r.json()["server"]["id"] for r in answers if r.status_code == 202}
    refused = [r for r in answers if r.status_code != 202]
    assert len(accepted) == 10, [r.text for r in answers][:5]
    assert {r.status_code for r in refused} == {403}
    assert {r.json()["forbidden"]["message"] for r in refused} == {
        "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}
    check_nothing_leaked(admin, conn, project.id, accepted, conn.compute.find_flavor("1"))
    print(f"100 racing creates answered in {elapsed:.1f} s")
    delete_all(conn)


def test_server_group_members_count_per_user(cloud, member):
    """Upstream's DbQuotaDriver counts the caller's own servers in the group: another user of the same
    project still has room in a group that this user has filled."""
    admin, project, conn = member
    admin.set_compute_quotas(project.id, instances=10, server_group_members=1)
    group = conn.compute.create_server_group(name="per-user", policy="soft-anti-affinity")
    image = conn.image.find_image("kilonova-tiny").id
    first = conn.compute.create_server(name="g1", flavor_id="1", image_id=image, networks="none",
                                       scheduler_hints={"group": group.id})
    with pytest.raises(openstack.exceptions.ForbiddenException) as over:
        conn.compute.create_server(name="g2", flavor_id="1", image_id=image, networks="none",
                                   scheduler_hints={"group": group.id})
    assert "Quota exceeded, too many servers in group" in str(over.value)
    other = admin.identity.create_user(name=f"{PROJECT}-other", password="other-pw", domain_id="default")
    admin.identity.assign_project_role_to_user(project, other, admin.identity.find_role("member"))
    second = openstack.connect(auth_url=cloud.auth()["auth_url"], username=f"{PROJECT}-other",
                               password="other-pw", project_name=PROJECT, user_domain_name="Default",
                               project_domain_name="Default", region_name="RegionOne")
    made = second.compute.create_server(name="g3", flavor_id="1", image_id=image, networks="none",
                                        scheduler_hints={"group": group.id})
    members = set(conn.compute.get_server_group(group.id).member_ids)
    assert members == {first.id, made.id}
