"""``[quota] driver = unified_limits``: the compute API enforces Keystone's registered limits and limits, set
with the real ``openstack`` CLI; 100 racing creates against a servers limit of 10; resource classes from the
flavor; os-quota-sets and ``openstack limits show --absolute`` showing Keystone's values, as upstream."""
from __future__ import annotations

import shutil
import time

import openstack
import pytest

from tests.cloud import new_cloud
from tests.projects import member_of_new_project
from tests.quota_race import check_nothing_leaked, delete_all, race

PROJECT = "unified"


@pytest.fixture(scope="module")
def ul_cloud():
    # upstream's spelling of the driver; the short one is checked in tests/unit/test_quota_engine.py
    instance = new_cloud(hosts=2, config={"quota": {"driver": "nova.quota.UnifiedLimitsDriver"},
                                          "vnc": {"novncproxy_port": "0"}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def member(ul_cloud):
    admin, project, conn = member_of_new_project(ul_cloud, PROJECT)
    yield admin, project, conn
    delete_all(conn)


def _create(conn, name: str, flavor: str = "1"):
    return conn.compute.create_server(name=name, flavor_id=flavor, image_id=conn.image.find_image("kilonova-tiny").id,
                                      networks="none")


def test_no_registered_servers_limit_refuses_as_upstream(member):
    """[quota] unified_limits_resource_list defaults to servers with the require strategy: no limit is 0."""
    admin, project, conn = member
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        _create(conn, "none-yet")
    # oslo.limit's words: every resource over its limit (those with none are 0), enforced for servers
    assert (f"Project {project.id} is over a limit for [Resource class:DISK_GB is over limit of 0 due to "
            "current usage 0 and delta 1, Resource class:MEMORY_MB is over limit of 0 due to current usage 0 and "
            "delta 512, Resource class:VCPU is over limit of 0 due to current usage 0 and delta 1, Resource "
            "servers is over limit of 0 due to current usage 0 and delta 1]") in str(refused.value)


def test_limits_from_the_cli_then_100_racing_creates(ul_cloud, member):
    admin, project, conn = member
    ul_cloud.openstack("registered", "limit", "create", "--service", "compute", "--default-limit", "20", "servers")
    ul_cloud.openstack("limit", "create", "--project", PROJECT, "--service", "compute", "--resource-limit", "10",
                       "servers")
    shown = conn.compute.get("/os-quota-sets/" + project.id).json()["quota_set"]
    assert shown["instances"] == 10 and shown["cores"] == 0 and shown["floating_ips"] == -1
    started = time.monotonic()
    answers = race(conn, 100, conn.network.find_network("private").id)
    print(f"100 racing creates answered in {time.monotonic() - started:.1f} s")
    accepted = {r.json()["server"]["id"] for r in answers if r.status_code == 202}
    refused = [r for r in answers if r.status_code != 202]
    assert len(accepted) == 10, [r.text for r in answers][:5]
    assert {r.status_code for r in refused} == {403}
    for answer in refused:
        message = answer.json()["forbidden"]["message"]
        assert message.startswith(f"Project {project.id} is over a limit for [Resource class:DISK_GB is over ")
        assert message.endswith("Resource servers is over limit of 10 due to current usage 10 and delta 1]")
    check_nothing_leaked(admin, conn, project.id, accepted, conn.compute.find_flavor("1"))
    rows = ul_cloud.openstack(
        "limits", "show", "--absolute", "--project", project.id, fmt_json=True)
    absolute = {row["Name"]: row["Value"] for row in rows}   # the SDK's names of maxTotalInstances, ...
    assert absolute["max_total_instances"] == 10 and absolute["total_instances_used"] == 10
    assert absolute["total_cores_used"] == 10 and absolute["max_total_cores"] == 0   # no class:VCPU limit
    delete_all(conn)


def test_resource_classes_from_the_flavor(ul_cloud, member):
    admin, project, conn = member
    ul_cloud.openstack("registered", "limit", "create", "--service", "compute", "--default-limit", "100",
                       "class:VCPU")
    ul_cloud.openstack("limit", "create", "--project", PROJECT, "--service", "compute", "--resource-limit", "3",
                       "class:VCPU")
    first = _create(conn, "two-cpus", flavor="3")     # m1.medium: 2 vCPUs
    conn.compute.wait_for_server(first, wait=60, interval=0.3)
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        _create(conn, "two-more", flavor="3")
    assert str(refused.value).endswith("Resource class:VCPU is over limit of 3 due to current usage 2 and delta 2]")
    made = _create(conn, "one-more")                  # m1.tiny: 1 vCPU still fits
    conn.compute.wait_for_server(made, wait=60, interval=0.3)
    detail = conn.compute.get(f"/os-quota-sets/{project.id}/detail").json()["quota_set"]
    assert detail["cores"] == {"in_use": 3, "limit": 3, "reserved": 0}
    assert detail["instances"]["in_use"] == 2
    delete_all(conn)


def test_quota_sets_are_read_only(ul_cloud, member):
    """Upstream with unified limits: an update answers the limits unchanged, a delete changes nothing."""
    admin, project, conn = member
    response = admin.compute.put(f"/os-quota-sets/{project.id}", json={"quota_set": {"instances": 50}})
    assert response.status_code == 200 and response.json()["quota_set"]["instances"] == 10
    assert admin.compute.delete(f"/os-quota-sets/{project.id}").status_code == 202
    assert admin.compute.get(f"/os-quota-sets/{project.id}").json()["quota_set"]["instances"] == 10
    defaults = admin.compute.get(f"/os-quota-sets/{project.id}/defaults").json()["quota_set"]
    assert defaults["instances"] == 20 and defaults["cores"] == 100
    # bad input is refused as before
    assert admin.compute.put(f"/os-quota-sets/{project.id}",
                             json={"quota_set": {"instances": -5}}).status_code == 400


def test_limits_nova_checks_itself(ul_cloud, member):
    """Key pairs, metadata items, server groups and group members: the registered limits (Nova checks them
    with no project, so a project's own limit does not count), oslo.limit's words in the 403."""
    admin, project, conn = member
    for resource, value in (("server_key_pairs", 1), ("server_metadata_items", 2), ("server_groups", 1),
                            ("server_group_members", 1)):
        ul_cloud.openstack("registered", "limit", "create", "--service", "compute", "--default-limit", str(value),
                           resource)
    ul_cloud.openstack("limit", "create", "--project", PROJECT, "--service", "compute", "--resource-limit", "5",
                       "server_key_pairs")
    conn.compute.create_keypair(name="first")
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        conn.compute.create_keypair(name="second")
    assert ("Project None is over a limit for [Resource server_key_pairs is over limit of 1 due to current usage 1 "
            "and delta 1]") in str(refused.value)
    image = conn.image.find_image("kilonova-tiny").id
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        conn.compute.create_server(name="meta", flavor_id="1", image_id=image, networks="none",
                                   metadata={"a": "1", "b": "2", "c": "3"})
    assert ("Project None is over a limit for [Resource server_metadata_items is over limit of 2 due to current "
            "usage 0 and delta 3]") in str(refused.value)
    group = conn.compute.create_server_group(name="g", policy="soft-affinity")
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        conn.compute.create_server_group(name="g2", policy="soft-affinity")
    assert "Resource server_groups is over limit of 1 due to current usage 1 and delta 1]" in str(refused.value)
    conn.compute.create_server(name="in-group", flavor_id="1", image_id=image, networks="none",
                               scheduler_hints={"group": group.id})
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:   # per group: the admin too
        admin.compute.create_server(name="in-group-2", flavor_id="1", image_id=image, networks="none",
                                    scheduler_hints={"group": group.id})
    assert "Resource server_group_members is over limit of 1 due to current usage 1 and delta 1]" \
        in str(refused.value)
    shown = conn.compute.get(f"/os-quota-sets/{project.id}").json()["quota_set"]
    assert shown["key_pairs"] == 1 and shown["metadata_items"] == 2 and shown["server_group_members"] == 1
    delete_all(conn)


def test_unshelve_counts_the_resource_classes_again(ul_cloud, member):
    """An offloaded server holds no allocation: while it is offloaded its vCPUs are free for others, and
    unshelving it must fit them again (upstream: a servers delta of 0 and the flavor's classes)."""
    admin, project, conn = member   # class:VCPU: 3 for this project (test_resource_classes_from_the_flavor)
    shelved = _create(conn, "shelved", flavor="3")     # 2 vCPUs
    conn.compute.wait_for_server(shelved, wait=60, interval=0.3)
    conn.compute.shelve_server(shelved)
    conn.compute.wait_for_server(shelved, status="SHELVED_OFFLOADED", wait=90, interval=0.3)
    other = _create(conn, "took-the-room", flavor="3")
    conn.compute.wait_for_server(other, wait=60, interval=0.3)
    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        conn.compute.unshelve_server(shelved)
    assert str(refused.value).endswith("Resource class:VCPU is over limit of 3 due to current usage 2 and delta 2]")
    conn.compute.delete_server(other)
    conn.compute.wait_for_delete(other, wait=60, interval=0.3)
    conn.compute.unshelve_server(shelved)
    conn.compute.wait_for_server(shelved, wait=90, interval=0.3)
    delete_all(conn)


def test_migrate_to_unified_limits(ul_cloud, member):
    """kilonova manage limits migrate_to_unified_limits (upstream's nova-manage command): the classic defaults
    become registered limits, a project's overrides its limits; what Keystone has already is left alone."""
    from kilonova.common.db import Database
    from kilonova.compute.db import quotas
    from kilonova.config import Config

    admin, project, conn = member
    dry = ul_cloud.manage("limits", "migrate_to_unified_limits", "--dry-run").stdout
    assert "Would create registered limit class:MEMORY_MB = 51200" in dry
    assert "Would create registered limit server_injected_files = 5" in dry
    assert "registered limit servers " not in dry          # registered by an earlier test: left as it is
    assert "No registered limit for these resources the flavors ask for" in dry and "class:DISK_GB" in dry
    assert admin.identity.get("/registered_limits?resource_name=class:MEMORY_MB").json()["registered_limits"] == []
    ul_cloud.manage("limits", "migrate_to_unified_limits")
    created = admin.identity.get("/registered_limits?resource_name=class:MEMORY_MB").json()["registered_limits"]
    assert [r["default_limit"] for r in created] == [51200]

    api_db = Database(Config.load(ul_cloud.config_file, state_dir=ul_cloud.state_dir).get(
        "api_database", "connection"), name="nova_api-test")
    try:   # overrides os-quota-sets could have stored before the switch to unified limits
        api_db.run_sync(quotas.set_limits, project.id, {"instances": 7, "ram": 4096})
    finally:
        api_db.close()
    out = ul_cloud.manage("limits", "migrate_to_unified_limits", "--project-id", project.id, "--verbose").stdout
    assert "Creating limit class:MEMORY_MB = 4096" in out and "servers: already in Keystone" in out
    own = {x["resource_name"]: x["resource_limit"] for x in
           admin.identity.get(f"/limits?project_id={project.id}").json()["limits"]}
    assert own["class:MEMORY_MB"] == 4096 and own["servers"] == 10
