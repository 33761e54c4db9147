"""Upstream Nova's default policy through the real clients, persona by persona: admin, project manager,
member, reader, and a member of another project; and a policy.yaml override taking effect on a running cloud.

Users are made with the identity service's own roles (a manager's token also carries member and reader,
through the implied roles the bootstrap creates, as Keystone's).
"""
from __future__ import annotations

import json
import shutil
import uuid

import openstack
import pytest

from tests import forked_cli
from tests.cloud import new_cloud, wait_for

V = "2.90"
PERSONAS = ("manager", "member", "reader")


def _user(admin, project, name: str, role: str):
    user = admin.identity.find_user(name, domain_id="default")
    if user is None:
        user = admin.identity.create_user(name=name, password=f"{name}-pw", domain_id="default",
                                          default_project_id=project.id)
        admin.identity.assign_project_role_to_user(project, user, admin.identity.find_role(role))
    return user


def _project(admin, name: str):
    return admin.identity.find_project(name, domain_id="default") or \
        admin.identity.create_project(name=name, domain_id="default")


class Persona:
    def __init__(self, cloud, user, project_name: str):
        self.user, self.name, self.project_name, self.cloud = user, user.name, project_name, cloud
        self.conn = openstack.connect(auth_url=cloud.auth()["auth_url"], username=user.name,
                                      password=f"{user.name}-pw", project_name=project_name,
                                      user_domain_name="Default", project_domain_name="Default",
                                      region_name="RegionOne")

    def call(self, method: str, path: str, body=None, version: str = V):
        return self.conn.compute.request(path, method, json=body, microversion=version)

    def openstack(self, *args: str):
        """The real ``openstack`` CLI as this user."""
        env = self.cloud.env()
        env.pop("OS_CLOUD")
        env.update({"OS_AUTH_URL": self.cloud.auth()["auth_url"], "OS_USERNAME": self.name,
                    "OS_PASSWORD": f"{self.name}-pw", "OS_PROJECT_NAME": self.project_name,
                    "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                    "OS_REGION_NAME": "RegionOne", "OS_IDENTITY_API_VERSION": "3"})
        return forked_cli.run("openstack", list(args), env, 120)


@pytest.fixture(scope="module")
def people(cloud):
    admin = cloud.sdk()
    home, away = _project(admin, "policy-home"), _project(admin, "policy-away")
    found = {role: Persona(cloud, _user(admin, home, f"policy-{role}", role), "policy-home") for role in PERSONAS}
    found["other"] = Persona(cloud, _user(admin, away, "policy-other", "member"), "policy-away")
    found["admin"] = Persona.__new__(Persona)
    found["admin"].conn, found["admin"].cloud = admin, cloud
    found["home"] = home
    return found


def _boot(persona, name: str) -> str:
    reply = persona.call("POST", "/servers", {"server": {"name": name, "flavorRef": "1", "networks": "none",
                                                         "imageRef": _image(persona)}})
    assert reply.status_code == 202, reply.text
    return reply.json()["server"]["id"]


def _image(persona) -> str:
    return persona.conn.image.find_image("kilonova-tiny").id


def _status(persona, server_id: str) -> str | None:
    reply = persona.call("GET", f"/servers/{server_id}")
    return reply.json()["server"]["status"] if reply.status_code == 200 else None


@pytest.fixture(scope="module")
def server(people):
    member = people["member"]
    server_id = _boot(member, f"policy-{uuid.uuid4().hex[:6]}")
    wait_for(lambda: _status(member, server_id) == "ACTIVE", "the member's server to be ACTIVE", timeout=60)
    yield server_id
    people["admin"].call("DELETE", f"/servers/{server_id}")


def _refused(reply, rule: str) -> None:
    assert reply.status_code == 403, reply.text
    assert reply.json() == {"forbidden": {"code": 403, "message": f"Policy doesn't allow {rule} to be performed."}}


def test_readers_read_members_write_and_another_project_sees_nothing(people, server):
    for role in ("admin", "manager", "member", "reader"):
        assert people[role].call("GET", f"/servers/{server}").status_code == 200, role
        listed = people[role].call("GET", "/servers/detail?all_tenants=1" if role == "admin" else "/servers")
        assert server in [s["id"] for s in listed.json()["servers"]], role
    other = people["other"]
    assert other.call("GET", f"/servers/{server}").status_code == 404
    assert server not in [s["id"] for s in other.call("GET", "/servers").json()["servers"]]
    assert other.call("DELETE", f"/servers/{server}").status_code == 404
    assert other.call("POST", f"/servers/{server}/action", {"lock": None}).status_code == 404
    reader = people["reader"]
    _refused(reader.call("POST", "/servers", {"server": {"name": "no", "flavorRef": "1", "networks": "none",
                                                         "imageRef": _image(reader)}}),
             "os_compute_api:servers:create")
    _refused(reader.call("DELETE", f"/servers/{server}"), "os_compute_api:servers:delete")
    _refused(reader.call("PUT", f"/servers/{server}", {"server": {"name": "renamed"}}),
             "os_compute_api:servers:update")
    _refused(reader.call("POST", f"/servers/{server}/action", {"lock": None}), "os_compute_api:os-lock-server:lock")
    _refused(reader.call("POST", f"/servers/{server}/action", {"os-stop": None}), "os_compute_api:servers:stop")
    assert reader.call("GET", f"/servers/{server}/metadata").status_code == 200
    _refused(reader.call("PUT", f"/servers/{server}/metadata/k", {"meta": {"k": "v"}}),
             "os_compute_api:server-metadata:update")
    assert people["member"].call("PUT", f"/servers/{server}/metadata/k", {"meta": {"k": "v"}}).status_code == 200
    assert other.call("GET", f"/servers/{server}/metadata").status_code == 404
    # the CLI says the same
    result = reader.openstack("server", "delete", server)
    assert result.returncode != 0 and "Policy doesn't allow os_compute_api:servers:delete" in result.stderr


def test_a_zero_disk_flavor_boots_volume_backed_servers_only_for_members(people):
    admin, member = people["admin"], people["member"]
    name = f"policy-nodisk-{uuid.uuid4().hex[:6]}"
    flavor = admin.call("POST", "/flavors", {"flavor": {"name": name, "ram": 64, "vcpus": 1, "disk": 0}}).json()
    try:
        reply = member.call("POST", "/servers", {"server": {"name": name, "flavorRef": flavor["flavor"]["id"],
                                                            "networks": "none", "imageRef": _image(member)}})
        assert reply.status_code == 403, reply.text
        assert reply.json()["forbidden"]["message"] == "Only volume-backed servers are allowed for flavors with " \
            "zero disk."
    finally:
        admin.call("DELETE", f"/flavors/{flavor['flavor']['id']}")


def test_members_lock_and_only_admins_override_an_admin_lock(people, server):
    member, admin = people["member"], people["admin"]
    assert member.call("POST", f"/servers/{server}/action", {"lock": None}).status_code == 202
    assert member.call("POST", f"/servers/{server}/action", {"unlock": None}).status_code == 202
    assert admin.call("POST", f"/servers/{server}/action", {"lock": None}).status_code == 202
    _refused(member.call("POST", f"/servers/{server}/action", {"unlock": None}),
             "os_compute_api:os-lock-server:unlock:unlock_override")
    assert admin.call("POST", f"/servers/{server}/action", {"unlock": None}).status_code == 202


def test_admin_only_actions_and_resources(people, server):
    for role in ("manager", "member", "reader", "other"):
        persona = people[role]
        target = server if role != "other" else str(uuid.uuid4())
        if role != "other":
            _refused(persona.call("POST", f"/servers/{target}/action", {"os-resetState": {"state": "active"}}),
                     "os_compute_api:os-admin-actions:reset_state")
            _refused(persona.call("GET", f"/servers/{target}/diagnostics"), "os_compute_api:os-server-diagnostics")
        _refused(persona.call("GET", "/os-hypervisors"), "os_compute_api:os-hypervisors:list")
        _refused(persona.call("GET", "/os-services"), "os_compute_api:os-services:list")
        _refused(persona.call("GET", "/os-aggregates"), "os_compute_api:os-aggregates:index")
        _refused(persona.call("POST", "/flavors", {"flavor": {"name": "x", "ram": 64, "vcpus": 1, "disk": 1}}),
                 "os_compute_api:os-flavor-manage:create")
        _refused(persona.call("PUT", f"/os-quota-sets/{people['home'].id}", {"quota_set": {"instances": 99}}),
                 "os_compute_api:os-quota-sets:update")
    admin = people["admin"]
    for path in ("/os-hypervisors", "/os-services", "/os-aggregates", f"/servers/{server}/diagnostics"):
        assert admin.call("GET", path).status_code == 200, path
    result = people["member"].openstack("hypervisor", "list")
    assert result.returncode != 0 and "Policy doesn't allow os_compute_api:os-hypervisors:list" in result.stderr


def test_quotas_keypairs_and_server_groups_by_persona(people):
    home = people["home"].id
    for role in ("manager", "member", "reader"):
        assert people[role].call("GET", f"/os-quota-sets/{home}").status_code == 200, role
    _refused(people["other"].call("GET", f"/os-quota-sets/{home}"), "os_compute_api:os-quota-sets:show")
    # a keypair is its user's: a reader makes its own, nobody but an admin names another user's
    reader, member = people["reader"], people["member"]
    name = f"policy-{uuid.uuid4().hex[:6]}"
    assert reader.call("POST", "/os-keypairs", {"keypair": {"name": name, "type": "ssh"}}).status_code == 201
    assert reader.call("DELETE", f"/os-keypairs/{name}").status_code == 204
    _refused(member.call("GET", f"/os-keypairs?user_id={reader.user.id}"), "os_compute_api:os-keypairs:index")
    assert people["admin"].call("GET", f"/os-keypairs?user_id={reader.user.id}").status_code == 200
    # server groups: members create and delete, readers only look
    _refused(reader.call("POST", "/os-server-groups", {"server_group": {"name": "g", "policy": "affinity"}}),
             "os_compute_api:os-server-groups:create")
    group = member.call("POST", "/os-server-groups", {"server_group": {"name": "g", "policy": "affinity"}})
    assert group.status_code == 200, group.text
    group_id = group.json()["server_group"]["id"]
    assert reader.call("GET", f"/os-server-groups/{group_id}").status_code == 200
    assert group_id in [g["id"] for g in reader.call("GET", "/os-server-groups").json()["server_groups"]]
    assert people["other"].call("GET", f"/os-server-groups/{group_id}").status_code == 404
    _refused(reader.call("DELETE", f"/os-server-groups/{group_id}"), "os_compute_api:os-server-groups:delete")
    assert member.call("DELETE", f"/os-server-groups/{group_id}").status_code == 204


def test_a_manager_migrates_without_naming_a_host_and_sees_its_migrations_without_hosts(people):
    manager, member, admin = people["manager"], people["member"], people["admin"]
    server = _boot(manager, f"policy-move-{uuid.uuid4().hex[:6]}")
    try:
        wait_for(lambda: _status(manager, server) == "ACTIVE", "the manager's server to be ACTIVE", timeout=60)
        _refused(member.call("POST", f"/servers/{server}/action", {"migrate": None}),
                 "os_compute_api:os-migrate-server:migrate")
        _refused(manager.call("POST", f"/servers/{server}/action", {"migrate": {"host": "nowhere"}}),
                 "os_compute_api:os-migrate-server:migrate:host")
        _refused(manager.call("POST", f"/servers/{server}/action", {"os-migrateLive": {
            "host": "nowhere", "block_migration": "auto"}}), "os_compute_api:os-migrate-server:migrate_live:host")
        reply = manager.call("POST", f"/servers/{server}/action", {"migrate": None})
        assert reply.status_code == 202, reply.text
        wait_for(lambda: _status(manager, server) == "VERIFY_RESIZE", "the migration to wait for confirmation",
                 timeout=60)
        assert manager.call("POST", f"/servers/{server}/action", {"confirmResize": None}).status_code == 204
        _refused(member.call("GET", "/os-migrations"), "os_compute_api:os-migrations:index")
        mine = manager.call("GET", "/os-migrations").json()["migrations"]
        assert {m["project_id"] for m in mine} == {people["home"].id}
        moved = [m for m in mine if m["instance_uuid"] == server]
        assert len(moved) == 1 and moved[0]["source_compute"] is None and moved[0]["dest_compute"] is None
        _refused(manager.call("GET", f"/os-migrations?project_id={uuid.uuid4().hex}"),
                 "os_compute_api:os-migrations:index:all_projects")
        seen = [m for m in admin.call("GET", "/os-migrations").json()["migrations"] if m["instance_uuid"] == server]
        assert seen[0]["source_compute"] and seen[0]["dest_compute"]
    finally:
        admin.call("DELETE", f"/servers/{server}")


def test_a_policy_file_changes_rules_of_the_running_cloud(cloud, people, server):
    """A rule for one user at a time, so that nothing else on this cloud changes while it is in force."""
    reader, member, other = people["reader"], people["member"], people["other"]
    path = cloud.state_dir / "policy.yaml"
    path.write_text(json.dumps({
        "os_compute_api:os-hypervisors:list": f"rule:context_is_admin or user_id:{reader.user.id}",
        "os_compute_api:servers:create": f"rule:project_member_or_admin and not user_id:{member.user.id}",
        "placement:resource_providers:list": f"rule:admin_or_service_api or user_id:{reader.user.id}",
        # Nova's is_admin is this rule: the other project's member then sees every project's servers
        "context_is_admin": f"role:admin or user_id:{other.user.id}",
    }))
    try:
        # Each service reads the file again on its own (at most a second after a change): wait for compute's
        # and Placement's.
        wait_for(lambda: reader.call("GET", "/os-hypervisors").status_code == 200,
                 "the override to let the reader list hypervisors", timeout=30)
        wait_for(lambda: reader.openstack("resource", "provider", "list").returncode == 0,
                 "Placement's override to let the reader list providers", timeout=30)
        assert other.call("GET", f"/servers/{server}").status_code == 200
        assert other.call("GET", "/os-services").status_code == 200
        result = reader.openstack("resource", "provider", "list", "-f", "json")
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)) >= 1
        _refused(member.call("POST", "/servers", {"server": {"name": "no", "flavorRef": "1", "networks": "none",
                                                             "imageRef": _image(member)}}),
                 "os_compute_api:servers:create")
        _refused(people["manager"].call("GET", "/os-hypervisors"), "os_compute_api:os-hypervisors:list")
        listing = cloud.manage("policy", "list", "--overridden").stdout
        assert f'"os_compute_api:servers:create": "rule:project_member_or_admin and not user_id:{member.user.id}"' \
            in listing
    finally:
        path.unlink()
    wait_for(lambda: reader.call("GET", "/os-hypervisors").status_code == 403, "the defaults back", timeout=30)
    assert other.call("GET", f"/servers/{server}").status_code == 404
    wait_for(lambda: reader.openstack("resource", "provider", "list").returncode != 0,
             "Placement's defaults back", timeout=30)


def test_a_malformed_policy_file_stops_the_cloud_at_start_with_one_line():
    broken = new_cloud(hosts=1)
    broken.state_dir.mkdir(parents=True, exist_ok=True)
    (broken.state_dir / "policy.yaml").write_text('"os_compute_api:servers:create": "role:member and"\n')
    try:
        with pytest.raises(RuntimeError) as failed:
            broken.start(timeout=60)
        output = str(failed.value).split("\n", 1)[1].strip()
        assert output == ("kilonova: configuration error: rule 'os_compute_api:servers:create': cannot parse "
                          "check string 'role:member and'"), output
    finally:
        shutil.rmtree(broken.workdir, ignore_errors=True)
