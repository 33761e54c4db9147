"""createImage (server snapshots) through the real `openstack` CLI, with the fake driver's small real qcow2."""
from __future__ import annotations


import httpx
import pytest

QCOW2_MAGIC = b"QFI\xfb"


def wait_active(cloud, server: str, cloud_name: str = "kilonova", timeout: float = 30) -> dict:
    return cloud.wait_status(server, "ACTIVE", timeout, cloud_name, settled=True)


def token_for(cloud, username: str, password: str, project: str) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": username, "password": password, "domain": {"id": "default"}}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
    response = httpx.post(cloud.urls["identity"] + "/auth/tokens", json=body, timeout=30)
    response.raise_for_status()
    return response.headers["X-Subject-Token"]


@pytest.fixture(scope="module")
def server(cloud):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-snap", fmt_json=True)
    yield created
    cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_snapshot_becomes_an_active_image_that_boots(cloud, server, tmp_path):
    cloud.openstack("server", "image", "create", "--name", "snap-cli", "--property", "purpose=backup",
                    "--wait", server["id"], timeout=90)
    image = cloud.openstack("image", "show", "snap-cli", fmt_json=True)
    source = cloud.openstack("image", "show", "kilonova-tiny", fmt_json=True)
    project = cloud.openstack("project", "show", "admin", fmt_json=True)["id"]
    assert image["status"] == "active"
    assert (image["disk_format"], image["container_format"]) == ("qcow2", "bare")
    assert image["owner"] == project
    assert image["min_disk"] >= 1
    props = image["properties"]
    assert props["image_type"] == "snapshot"
    assert props["instance_uuid"] == server["id"]
    assert props["base_image_ref"] == source["id"]
    assert props["purpose"] == "backup"
    assert props["user_id"] == cloud.openstack("user", "show", "admin", fmt_json=True)["id"]
    # The data is a real qcow2 of the flavor's root disk size.
    target = tmp_path / "snap.qcow2"
    cloud.openstack("image", "save", "--file", str(target), image["id"])
    data = target.read_bytes()
    assert data.startswith(QCOW2_MAGIC) and image["size"] == len(data)
    assert int.from_bytes(data[24:32], "big") == 1 << 30  # virtual size: m1.tiny's 1 GB root disk
    shown = wait_active(cloud, server["id"])
    assert shown["OS-EXT-STS:task_state"] is None

    booted = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", image["id"], "--network",
                             "private", "--wait", "vm-from-snap", fmt_json=True)
    try:
        assert booted["status"] == "ACTIVE"
        assert cloud.openstack("server", "show", booted["id"], fmt_json=True)["image"].startswith("snap-cli")
    finally:
        cloud.openstack("server", "delete", "--wait", booted["id"], check=False)
        cloud.openstack("image", "delete", image["id"], check=False)


def test_microversions_location_header_then_image_id_body(cloud, server):
    with cloud.http("compute") as api:
        old = api.post(f"/servers/{server['id']}/action", json={"createImage": {"name": "snap-2.1"}})
        assert old.status_code == 202, old.text
        old_id = old.headers["Location"].rsplit("/", 1)[1]
        assert old.content == b""
        wait_active(cloud, server["id"])
        new = api.post(f"/servers/{server['id']}/action", json={"createImage": {"name": "snap-2.45"}},
                       headers={"OpenStack-API-Version": "compute 2.45"})
        assert new.status_code == 202, new.text
        assert "Location" not in new.headers
        new_id = new.json()["image_id"]
        wait_active(cloud, server["id"])
    for image_id in (old_id, new_id):
        assert cloud.openstack("image", "show", image_id, fmt_json=True)["status"] == "active"
        cloud.openstack("image", "delete", image_id)


@pytest.mark.parametrize("body, field", [
    ({"createImage": {}}, "'name' is a required property"),
    ({"createImage": {"name": "x" * 256}}, "is too long"),
    ({"createImage": {"name": " padded "}}, "An invalid 'name' value was provided."),
    ({"createImage": {"name": "ok", "metadata": ["not", "a", "dict"]}}, "Invalid input for field/attribute metadata."),
    ({"createImage": {"name": "ok", "metadata": {"k": 5}}}, "Invalid input for field/attribute k. Value: 5."),
    ({"createImage": {"name": "ok", "bogus": 1}}, "Additional properties"),
    ({"createImage": "snap"}, "createImage"),
])
def test_bad_bodies_are_400_and_change_nothing(cloud, server, body, field):
    before = {i["ID"] for i in cloud.openstack("image", "list", fmt_json=True)}
    with cloud.http("compute") as api:
        response = api.post(f"/servers/{server['id']}/action", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["badRequest"]["message"]
    assert {i["ID"] for i in cloud.openstack("image", "list", fmt_json=True)} == before


def test_unknown_server_other_project_reader_and_failed_server(cloud, server):
    body = {"createImage": {"name": "nope"}}
    with cloud.http("compute") as api:
        assert api.post("/servers/00000000-0000-0000-0000-000000000000/action", json=body).status_code == 404
    with cloud.http("compute", cloud="kilonova-demo") as demo:
        response = demo.post(f"/servers/{server['id']}/action", json=body)
        assert response.status_code == 404, response.text
    # A reader of the project may look but not snapshot.
    cloud.openstack("user", "create", "--project", "admin", "--password", "reader-pw", "snap-reader")
    cloud.openstack("role", "add", "--project", "admin", "--user", "snap-reader", "reader")
    reader = token_for(cloud, "snap-reader", "reader-pw", "admin")
    response = httpx.post(f"{cloud.urls['compute']}/servers/{server['id']}/action", json=body,
                          headers={"X-Auth-Token": reader}, timeout=30)
    assert response.status_code == 403, response.text
    # A server that never got a host (no host has the trait its flavor requires): 409, no image made.
    cloud.openstack("flavor", "create", "--ram", "64", "--disk", "1", "--vcpus", "1",
                    "--property", "trait:CUSTOM_NO_HOST_HAS_THIS=required", "snap.huge")
    failed = cloud.openstack("server", "create", "--flavor", "snap.huge", "--image", "kilonova-tiny",
                             "--network", "private", "--wait", "vm-nohost", fmt_json=True, check=False)
    listed = cloud.openstack("server", "list", "--name", "vm-nohost", fmt_json=True)
    try:
        assert listed and listed[0]["Status"] == "ERROR", (failed, listed)
        with cloud.http("compute") as api:
            response = api.post(f"/servers/{listed[0]['ID']}/action", json=body)
        assert response.status_code == 409, response.text
        assert "vm_state error" in response.json()["conflictingRequest"]["message"]
        assert not cloud.openstack("image", "list", "--name", "nope", fmt_json=True)
    finally:
        for row in listed:
            cloud.openstack("server", "delete", "--wait", row["ID"], check=False)
        cloud.openstack("flavor", "delete", "snap.huge", check=False)


def test_admin_snapshot_of_another_projects_server_belongs_to_that_project(cloud):
    demo_server = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                  "--network", "private", "--wait", "vm-demo-snap", fmt_json=True,
                                  cloud="kilonova-demo")
    try:
        with cloud.http("compute") as api:
            response = api.post(f"/servers/{demo_server['id']}/action", json={"createImage": {"name": "demo-snap"}},
                                headers={"OpenStack-API-Version": "compute 2.45"})
        assert response.status_code == 202, response.text
        image_id = response.json()["image_id"]
        wait_active(cloud, demo_server["id"], cloud_name="kilonova-demo")
        seen = cloud.openstack("image", "show", image_id, fmt_json=True, cloud="kilonova-demo")
        assert seen["owner"] == cloud.openstack("project", "show", "demo", fmt_json=True)["id"]
        assert seen["status"] == "active"
        cloud.openstack("image", "delete", image_id, cloud="kilonova-demo")
    finally:
        cloud.openstack("server", "delete", "--wait", demo_server["id"], check=False, cloud="kilonova-demo")
