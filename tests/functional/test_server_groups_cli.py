"""Server groups (os-server-groups) end to end: the real `openstack server group create` and
`openstack server create --hint group=...`, the scheduler spreading an anti-affinity group over the
shared cloud's four hosts (multi-create too), keeping an affinity group together, explaining the host it
could not find, refusing a move that would break a hard policy; the API's microversion boundaries
(2.13, 2.15, 2.64, 2.71), quotas and bad input, checked with openstacksdk."""
from __future__ import annotations

import json

import pytest

from tests import forked_cli
from tests.cloud import client_env, wait_for
from tests.projects import member_of_new_project

PROJECT = "sgroups"


@pytest.fixture(scope="module")
def member(cloud):
    """A member of a project of its own (its quotas set here); its servers and groups removed afterwards."""
    admin, project, conn = member_of_new_project(cloud, PROJECT)
    admin.compute.update_quota_set(project.id, instances=40, cores=40)  # the module boots about 20 servers
    yield admin, project, conn
    for server in conn.compute.servers():
        conn.compute.delete_server(server)
    wait_for(lambda: not list(conn.compute.servers()), "the servers to go", timeout=60)
    for group in conn.compute.server_groups():
        conn.compute.delete_server_group(group)
    admin.compute.revert_quota_set(project.id)


def cli(cloud, *args: str) -> tuple[int, str, str]:
    env = {**client_env(), "OS_AUTH_URL": cloud.auth()["auth_url"], "OS_USERNAME": f"{PROJECT}-user",
           "OS_PASSWORD": f"{PROJECT}-pw", "OS_PROJECT_NAME": PROJECT, "OS_USER_DOMAIN_NAME": "Default",
           "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne", "OS_IDENTITY_API_VERSION": "3"}
    done = forked_cli.run("openstack", list(args), env, 120)
    return done.returncode, done.stdout, done.stderr


def boot(conn, name: str, group: str, **extra):
    image = conn.image.find_image("kilonova-tiny")
    body = {"server": {"name": name, "flavorRef": "1", "imageRef": image.id, "networks": "none", **extra},
            "os:scheduler_hints": {"group": group}}
    return conn.compute.post("/servers", json=body, microversion="2.37")


def settled(conn, server_id: str):
    wait_for(lambda: conn.compute.get_server(server_id).status in ("ACTIVE", "ERROR"), "the build to end", 60)
    return conn.compute.get_server(server_id)


def hosts_of(admin, server_ids) -> list[str]:
    return [admin.compute.get_server(sid).compute_host for sid in server_ids]


def group_call(conn, method: str, path: str, version: str, body=None):
    return conn.compute.request(path, method, json=body, microversion=version)


def fault(response) -> str:
    return next(iter(response.json().values()))["message"]


def test_anti_affinity_group_spreads_servers_and_explains_the_host_it_cannot_find(cloud, member):
    admin, project, conn = member
    code, out, err = cli(cloud, "server", "group", "create", "--policy", "anti-affinity", "spread", "-f", "json")
    assert code == 0, err
    group = json.loads(out)
    assert group["policy"] == "anti-affinity" and group["members"] in ([], "")

    code, out, err = cli(cloud, "server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                         "private", "--hint", f"group={group['id']}", "--min", "3", "--max", "3", "--wait", "web")
    assert code == 0, err
    three = [s.id for s in conn.compute.servers() if s.name.startswith("web-")]
    assert len(three) == 3
    assert all(settled(conn, sid).status == "ACTIVE" for sid in three)
    assert len(set(hosts_of(admin, three))) == 3  # one per host

    shown = conn.compute.get_server_group(group["id"])
    assert sorted(shown.member_ids) == sorted(three)
    fourth = boot(conn, "web-4", group["id"])
    assert fourth.status_code == 202
    fourth_id = fourth.json()["server"]["id"]
    assert settled(conn, fourth_id).status == "ACTIVE"
    assert len(set(hosts_of(admin, three + [fourth_id]))) == 4

    # Every host holds one of the group's servers: the fifth has no valid host, and the fault says why.
    fifth = boot(conn, "web-5", group["id"]).json()["server"]["id"]
    failed = settled(admin, fifth)
    assert failed.status == "ERROR"
    assert "No valid host was found" in failed.fault["message"]
    assert "ServerGroupAntiAffinityFilter removed" in failed.fault.get("details", "") + failed.fault["message"]

    # A deleted server leaves the group; its host takes the next member.
    conn.compute.delete_server(fifth)
    conn.compute.delete_server(three[0])
    wait_for(lambda: three[0] not in conn.compute.get_server_group(group["id"]).member_ids, "the member to go", 60)
    again = boot(conn, "web-6", group["id"]).json()["server"]["id"]
    assert settled(conn, again).status == "ACTIVE"

    # 2.71: the server shows its group; before, nothing new.
    body = group_call(conn, "GET", f"/servers/{again}", "2.71").json()["server"]
    assert body["server_groups"] == [group["id"]]
    assert "server_groups" not in group_call(conn, "GET", f"/servers/{again}", "2.70").json()["server"]


def test_affinity_group_stays_together_and_a_move_that_would_break_it_has_no_valid_host(cloud, member):
    admin, project, conn = member
    made = group_call(conn, "POST", "/os-server-groups", "2.64",
                      {"server_group": {"name": "together", "policy": "affinity"}})
    assert made.status_code == 200
    group = made.json()["server_group"]
    assert group["rules"] == {} and group["members"] == [] and group["project_id"] == project.id
    first = boot(conn, "near-1", group["id"]).json()["server"]["id"]
    assert settled(conn, first).status == "ACTIVE"
    second = boot(conn, "near-2", group["id"]).json()["server"]["id"]
    assert settled(conn, second).status == "ACTIVE"
    assert len(set(hosts_of(admin, [first, second]))) == 1

    # Every other host is not the group's: a live migration has no valid host (400 at once) ...
    live = admin.compute.post(f"/servers/{second}/action", json={"os-migrateLive": {
        "host": None, "block_migration": "auto"}}, microversion="2.30")
    assert live.status_code == 400
    assert "ServerGroupAffinityFilter removed" in fault(live)
    # ... and a cold migration's record ends in error, the server still beside its group.
    assert admin.compute.post(f"/servers/{second}/action", json={"migrate": None},
                              microversion="2.56").status_code == 202

    def migration_status():
        found = admin.compute.get(f"/os-migrations?instance_uuid={second}", microversion="2.59").json()
        return [m["status"] for m in found["migrations"] if m["migration_type"] == "migration"]
    wait_for(lambda: migration_status() == ["error"], "the cold migration to fail", 60)
    wait_for(lambda: admin.compute.get_server(second).status == "ACTIVE", "the server to be ACTIVE again", 30)
    assert admin.compute.get_server(second).compute_host == admin.compute.get_server(first).compute_host


def test_microversion_boundaries_of_the_api(member):
    admin, project, conn = member
    old = group_call(conn, "POST", "/os-server-groups", "2.1",
                     {"server_group": {"name": "old", "policies": ["anti-affinity"]}})
    assert old.status_code == 200
    body = old.json()["server_group"]
    assert body["policies"] == ["anti-affinity"] and body["metadata"] == {} and "project_id" not in body
    shown = group_call(conn, "GET", f"/os-server-groups/{body['id']}", "2.13").json()["server_group"]
    assert shown["project_id"] == project.id and shown["user_id"] and shown["policies"] == ["anti-affinity"]
    shown = group_call(conn, "GET", f"/os-server-groups/{body['id']}", "2.64").json()["server_group"]
    assert shown["policy"] == "anti-affinity" and shown["rules"] == {} and "policies" not in shown

    # soft policies from 2.15
    soft = {"server_group": {"name": "soft", "policies": ["soft-anti-affinity"]}}
    assert group_call(conn, "POST", "/os-server-groups", "2.14", soft).status_code == 400
    assert group_call(conn, "POST", "/os-server-groups", "2.15", soft).status_code == 200
    # 2.64: policy + rules; policies refused; rules for anti-affinity only
    ruled = group_call(conn, "POST", "/os-server-groups", "2.64", {"server_group": {
        "name": "two-per-host", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}})
    assert ruled.status_code == 200 and ruled.json()["server_group"]["rules"] == {"max_server_per_host": 2}
    assert group_call(conn, "POST", "/os-server-groups", "2.64", soft).status_code == 400
    wrong_rule = group_call(conn, "POST", "/os-server-groups", "2.64", {"server_group": {
        "name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}})
    assert wrong_rule.status_code == 400 and fault(wrong_rule) == "Only anti-affinity policy supports rules."
    rules_too_early = group_call(conn, "POST", "/os-server-groups", "2.63", {"server_group": {
        "name": "x", "policies": ["anti-affinity"], "rules": {"max_server_per_host": 2}}})
    assert rules_too_early.status_code == 400
    for bad in ({"name": "x", "policy": "best-effort"}, {"name": "x", "policy": "anti-affinity",
                                                           "rules": {"max_server_per_host": 0}},
                {"name": "x", "policy": "anti-affinity", "rules": {"other": 1}}, {"policy": "affinity"}):
        answer = group_call(conn, "POST", "/os-server-groups", "2.64", {"server_group": bad})
        assert answer.status_code == 400, bad
        assert "Invalid input for field/attribute" in fault(answer)

    listed = group_call(conn, "GET", "/os-server-groups?limit=1&offset=1", "2.64").json()["server_groups"]
    assert len(listed) == 1
    assert group_call(conn, "GET", "/os-server-groups?foo=1", "2.74").status_code == 200
    assert group_call(conn, "GET", "/os-server-groups?foo=1", "2.75").status_code == 400
    assert group_call(conn, "GET", "/os-server-groups?limit=-1", "2.64").status_code == 400


def test_another_projects_group_is_not_found_nor_usable(cloud, member):
    admin, project, conn = member
    theirs = group_call(admin, "POST", "/os-server-groups", "2.64",
                        {"server_group": {"name": "admins", "policy": "affinity"}}).json()["server_group"]
    try:
        assert group_call(conn, "GET", f"/os-server-groups/{theirs['id']}", "2.64").status_code == 404
        assert group_call(conn, "DELETE", f"/os-server-groups/{theirs['id']}", "2.64").status_code == 404
        ids = [g["id"] for g in group_call(conn, "GET", "/os-server-groups?all_projects=1", "2.64")
               .json()["server_groups"]]
        assert theirs["id"] not in ids  # all_projects is for administrators
        every = group_call(admin, "GET", "/os-server-groups?all_projects=1", "2.64").json()["server_groups"]
        assert theirs["id"] in [g["id"] for g in every] and project.id in [g["project_id"] for g in every]
        refused = boot(conn, "stranger", theirs["id"])
        assert refused.status_code == 400 and fault(refused) == f"Instance group {theirs['id']} could not be found."
    finally:
        admin.compute.delete_server_group(theirs["id"])
    assert group_call(conn, "GET", f"/os-server-groups/{theirs['id']}", "2.64").status_code == 404


def test_quotas_of_groups_and_members(cloud, member):
    admin, project, conn = member
    used = len(list(conn.compute.server_groups()))
    admin.compute.update_quota_set(project.id, server_groups=used + 1, server_group_members=1)
    try:
        limits = conn.compute.get("/limits").json()["limits"]["absolute"]
        assert limits["maxServerGroups"] == used + 1 and limits["totalServerGroupsUsed"] == used
        detail = admin.compute.get(f"/os-quota-sets/{project.id}/detail").json()["quota_set"]
        assert detail["server_groups"]["in_use"] == used and detail["server_group_members"]["limit"] == 1
        group = group_call(conn, "POST", "/os-server-groups", "2.64",
                           {"server_group": {"name": "last", "policy": "soft-affinity"}}).json()["server_group"]
        over = group_call(conn, "POST", "/os-server-groups", "2.64",
                          {"server_group": {"name": "one-too-many", "policy": "affinity"}})
        assert over.status_code == 403 and fault(over) == "Quota exceeded, too many server groups."
        code, out, err = cli(cloud, "quota", "show", "-f", "json")
        assert code == 0, err
        shown = {row["Resource"]: row["Limit"] for row in json.loads(out)} if out.lstrip().startswith("[") \
            else json.loads(out)
        assert shown.get("server-groups", shown.get("server_groups")) == used + 1

        two = boot(conn, "pair", group["id"], min_count=2, max_count=2)
        assert two.status_code == 403 and fault(two) == "Quota exceeded, too many servers in group"
        assert not [s for s in conn.compute.servers() if s.name.startswith("pair")]
        one = boot(conn, "single", group["id"])
        assert one.status_code == 202
        assert boot(conn, "another", group["id"]).status_code == 403
    finally:
        admin.compute.update_quota_set(project.id, server_groups=10, server_group_members=10)


def test_an_unshelved_member_of_a_full_anti_affinity_group_goes_back_to_the_only_host_left(cloud, member):
    admin, project, conn = member
    group = group_call(conn, "POST", "/os-server-groups", "2.64",
                       {"server_group": {"name": "shelf", "policy": "anti-affinity"}}).json()["server_group"]["id"]
    made = boot(conn, "shelf", group, min_count=4, max_count=4, return_reservation_id=True)
    assert made.status_code == 202
    # Listed at once: from the 202 on the servers are build requests, then cell rows, never neither.
    four = [s.id for s in conn.compute.servers() if s.name.startswith("shelf-")]
    assert len(four) == 4 and all(settled(conn, sid).status == "ACTIVE" for sid in four)
    before = hosts_of(admin, four)
    assert len(set(before)) == 4
    conn.compute.shelve_server(four[0])  # offloaded at once (shelved_offload_time 0): its host is free
    wait_for(lambda: conn.compute.get_server(four[0]).status == "SHELVED_OFFLOADED", "the offload", 60)
    conn.compute.unshelve_server(four[0])
    wait_for(lambda: conn.compute.get_server(four[0]).status == "ACTIVE", "the unshelve", 60)
    # Every other host holds a member: the only valid host is the one it left.
    assert admin.compute.get_server(four[0]).compute_host == before[0]
