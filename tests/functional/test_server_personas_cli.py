"""The servers resource, its tags and fields for each of upstream's personas: a project's reader reads, its
member and manager write, an admin sees the extended fields (another project's member: test_server_tags_cli)."""
from __future__ import annotations

import json
import time

import httpx
import pytest

BOOT = ["--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network", "private"]
V226 = {"OpenStack-API-Version": "compute 2.26"}


def _user(cloud, name: str, role: str) -> httpx.Client:
    """A client authenticated as a new user holding only ``role`` in the demo project."""
    password = f"{name}-secret"
    cloud.openstack("user", "create", "--password", password, name)
    cloud.openstack("role", "add", "--user", name, "--project", "demo", role)
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": name, "password": password, "domain": {"id": "default"}}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}}
    token = httpx.post(cloud.urls["identity"] + "/auth/tokens", json=body, timeout=30).headers["X-Subject-Token"]
    return httpx.Client(base_url=cloud.urls["compute"], headers={"X-Auth-Token": token}, timeout=30)


@pytest.fixture(scope="module")
def personas(cloud):
    server = cloud.openstack("server", "create", *BOOT, "--wait", "persona-vm", fmt_json=True, cloud="kilonova-demo")
    clients = {"reader": _user(cloud, "persona-reader", "reader"), "manager": _user(cloud, "persona-manager", "manager")}
    yield server["id"], clients
    for client in clients.values():
        client.close()
    cloud.openstack("server", "delete", "--wait", server["id"], check=False, cloud="kilonova-demo")
    cloud.openstack("user", "delete", "persona-reader", "persona-manager", check=False)


def test_a_reader_reads_but_does_not_write(cloud, personas):
    server, clients = personas
    reader = clients["reader"]
    assert reader.get(f"/servers/{server}").status_code == 200
    assert [s["id"] for s in reader.get("/servers").json()["servers"]] == [server]
    assert reader.get(f"/servers/{server}/tags", headers=V226).json() == {"tags": []}
    assert reader.get(f"/servers/{server}/ips").status_code == 200
    assert reader.get(f"/servers/{server}/os-server-password").status_code == 200
    denied = reader.put(f"/servers/{server}/tags/x", headers=V226)
    assert denied.status_code == 403
    assert denied.json()["forbidden"]["message"] == \
        "Policy doesn't allow os_compute_api:os-server-tags:update to be performed."
    assert reader.put(f"/servers/{server}", json={"server": {"name": "renamed"}}).status_code == 403
    assert reader.delete(f"/servers/{server}/os-server-password").status_code == 403


def test_a_manager_writes_and_uses_a_members_filters_only(cloud, personas):
    server, clients = personas
    manager = clients["manager"]
    assert manager.put(f"/servers/{server}/tags/managed", headers=V226).status_code == 201
    assert manager.delete(f"/servers/{server}/tags/managed", headers=V226).status_code == 204
    # host is an admin's filter: dropped for a manager, as for a member; sorting by host refused.
    listed = manager.get("/servers", params={"host": "no-such-host"}).json()["servers"]
    assert [s["id"] for s in listed] == [server]
    assert manager.get("/servers", params={"sort_key": "host"}).status_code == 403
    shown = manager.get(f"/servers/{server}", headers={"OpenStack-API-Version": "compute 2.16"}).json()["server"]
    assert "OS-EXT-SRV-ATTR:host" not in shown and "host_status" not in shown


def test_an_admin_sees_the_extended_fields_and_lists_its_own_project(cloud, personas):
    server, _clients = personas
    with cloud.http("compute") as admin:  # admin of project admin: sees it by id, extended fields included
        shown = admin.get(f"/servers/{server}", headers=V226).json()["server"]
        assert shown["OS-EXT-SRV-ATTR:host"] and shown["tags"] == []
        assert server not in [s["id"] for s in admin.get("/servers").json()["servers"]]  # not without all_tenants
        assert server in [s["id"] for s in admin.get("/servers", params={"all_tenants": "1"}).json()["servers"]]


def test_policy_overrides_of_the_server_views_and_filters(cloud, personas):
    """One user at a time, so nothing else on this cloud changes while the file is in force."""
    server, clients = personas
    reader_id = cloud.openstack("user", "show", "persona-reader", fmt_json=True)["id"]
    manager_id = cloud.openstack("user", "show", "persona-manager", fmt_json=True)["id"]
    v247 = {"OpenStack-API-Version": "compute 2.47"}
    assert "extra_specs" in clients["reader"].get(f"/servers/{server}", headers=v247).json()["server"]["flavor"]
    path = cloud.state_dir / "policy.yaml"
    path.write_text(json.dumps({
        "os_compute_api:servers:show:flavor-extra-specs": f"rule:project_reader_or_admin and not user_id:{reader_id}",
        "os_compute_api:servers:allow_all_filters": f"rule:context_is_admin or user_id:{manager_id}",
    }))
    try:
        deadline = time.monotonic() + 10
        while "extra_specs" in clients["reader"].get(f"/servers/{server}", headers=v247).json()["server"]["flavor"]:
            assert time.monotonic() < deadline, "the override was not read"
            time.sleep(0.2)
        # allow_all_filters: the manager's host filter now counts (no server of theirs is on no-such-host).
        assert clients["manager"].get("/servers", params={"host": "no-such-host"}).json()["servers"] == []
        assert clients["reader"].get("/servers", params={"host": "no-such-host"}).json()["servers"] != []
    finally:
        path.unlink()
    deadline = time.monotonic() + 10
    while "extra_specs" not in clients["reader"].get(f"/servers/{server}", headers=v247).json()["server"]["flavor"]:
        assert time.monotonic() < deadline, "the defaults did not come back"
        time.sleep(0.2)
