"""Rebuild through the real `openstack` and `nova` CLIs, openstacksdk and plain HTTP against `kilonova up`."""
from __future__ import annotations

import base64

import pytest

from kilonova.image import qcow2
from tests.functional.test_servers_cli import usage

IMAGE = "kilonova-tiny"


def compute(cloud, version: str, cloud_name: str = "kilonova"):
    client = cloud.http("compute", cloud_name)
    client.headers["OpenStack-API-Version"] = f"compute {version}"
    return client


def rebuild(cloud, server_id: str, body: dict, version: str = "2.1", cloud_name: str = "kilonova"):
    with compute(cloud, version, cloud_name) as api:
        return api.post(f"/servers/{server_id}/action", json={"rebuild": body})


def ports(cloud, server_id: str) -> list[tuple[str, str]]:
    found = cloud.openstack("port", "list", "--server", server_id, fmt_json=True)
    return sorted((p["ID"], str(p["Fixed IP Addresses"])) for p in found)


def action_events(cloud, uuid: str, action: str) -> dict[str, str]:
    """event -> result of the newest ``action`` of the server (os-instance-actions, 2.51)."""
    with compute(cloud, "2.51") as api:
        actions = api.get(f"/servers/{uuid}/os-instance-actions").json()["instanceActions"]
        request_id = next(a["request_id"] for a in actions if a["action"] == action)
        shown = api.get(f"/servers/{uuid}/os-instance-actions/{request_id}").json()["instanceAction"]
    return {event["event"]: event["result"] for event in shown["events"]}


@pytest.fixture(scope="module")
def second_image(cloud, tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "second.qcow2"
    path.write_bytes(qcow2.empty_image(64 << 20))
    created = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2",
                              "--container-format", "bare", "--public", "rebuild-second", fmt_json=True)
    yield created
    cloud.openstack("image", "delete", created["id"], check=False)


@pytest.fixture
def server(cloud):
    cloud.openstack("keypair", "create", "rb-first")
    cloud.openstack("keypair", "create", "rb-second")
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", IMAGE, "--network", "private",
                              "--key-name", "rb-first", "--property", "old=1", "--wait", "rb-vm", fmt_json=True)
    yield created
    cloud.openstack("server", "delete", "--wait", created["id"], check=False)
    cloud.openstack("keypair", "delete", "rb-first", "rb-second", check=False)


def test_rebuild_with_openstack_cli_keeps_ports_and_changes_image_name_properties_key_user_data(
        cloud, server, second_image, tmp_path):
    before_ports, before_usage = ports(cloud, server["id"]), usage(cloud)
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\nhostname: rebuilt\n")
    rebuilt = cloud.openstack("--os-compute-api-version", "2.57", "server", "rebuild", "--image", "rebuild-second",
                              "--name", "rb-new", "--property", "role=db", "--key-name", "rb-second",
                              "--user-data", str(user_data), "--wait", server["id"])
    assert "Complete" in rebuilt.stdout
    shown = cloud.openstack("--os-compute-api-version", "2.57", "server", "show", server["id"], fmt_json=True)
    assert shown["status"] == "ACTIVE"
    assert shown["name"] == "rb-new"
    assert second_image["id"] in shown["image"]
    assert shown["properties"] == {"role": "db"}, "rebuild metadata replaces the old metadata"
    assert shown["key_name"] == "rb-second"
    assert base64.b64decode(shown["OS-EXT-SRV-ATTR:user_data"]).decode().startswith("#cloud-config")
    assert shown["OS-EXT-SRV-ATTR:host"] == server["OS-EXT-SRV-ATTR:host"]
    assert shown["addresses"] == server["addresses"]
    assert ports(cloud, server["id"]) == before_ports
    assert usage(cloud) == before_usage, "a rebuild claims nothing more"
    console = cloud.openstack("console", "log", "show", server["id"]).stdout
    assert f"rebuilding rb-vm from image {second_image['id']}" in console
    listed = cloud.openstack("server", "event", "list", server["id"], fmt_json=True)
    assert [a["Action"] for a in listed][:2] == ["rebuild", "create"]
    assert action_events(cloud, server["id"], "rebuild") == {
        "conductor_rebuild_instance": "Success", "rebuild_server": "Success", "compute_rebuild_instance": "Success"}

    # 2.54: --no-key-name removes the key pair (key_name null).
    cloud.openstack("--os-compute-api-version", "2.54", "server", "rebuild", "--image", IMAGE, "--no-key-name",
                    "--wait", server["id"])
    assert cloud.openstack("server", "show", server["id"], fmt_json=True)["key_name"] is None


def test_rebuild_answer_states_and_microversions_over_http(cloud, server, second_image):
    uuid = server["id"]
    answer = rebuild(cloud, uuid, {"imageRef": second_image["id"], "name": "rb-http", "metadata": {"k": "v"}},
                     version="2.1")
    assert answer.status_code == 202, answer.text
    body = answer.json()["server"]
    assert body["status"] == "REBUILD" and body["name"] == "rb-http" and body["metadata"] == {"k": "v"}
    assert body["image"]["id"] == second_image["id"]
    assert body["adminPass"] and answer.headers["Location"].endswith(f"/servers/{uuid}")
    assert "key_name" not in body and "OS-EXT-STS:task_state" not in body  # before 2.75: update's shape
    cloud.wait_status(uuid, "ACTIVE")

    given = rebuild(cloud, uuid, {"imageRef": second_image["id"], "adminPass": "s3cret!"}, version="2.75").json()
    assert given["server"]["adminPass"] == "s3cret!" and given["server"]["key_name"] == "rb-first"
    assert given["server"]["OS-EXT-STS:task_state"] == "rebuilding"
    cloud.wait_status(uuid, "ACTIVE")

    boundaries = [("description", "text", "2.18", "2.19"), ("key_name", None, "2.53", "2.54"),
                  ("user_data", base64.b64encode(b"hi").decode(), "2.56", "2.57"),
                  ("trusted_image_certificates", ["cert-a"], "2.62", "2.63"), ("hostname", "rb-host", "2.89", "2.90")]
    for field, value, before, since in boundaries:
        refused = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud), field: value}, version=before)
        assert refused.status_code == 400, (field, before, refused.text)
        assert field in refused.json()["badRequest"]["message"]
        taken = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud), field: value}, version=since)
        assert taken.status_code == 202, (field, since, taken.text)
        cloud.wait_status(uuid, "ACTIVE")
    with compute(cloud, "2.90") as api:
        shown = api.get(f"/servers/{uuid}").json()["server"]
    assert shown["description"] == "text" and shown["key_name"] is None
    assert shown["OS-EXT-SRV-ATTR:hostname"] == "rb-host" and shown["trusted_image_certificates"] == ["cert-a"]
    assert shown["OS-EXT-SRV-ATTR:user_data"] == base64.b64encode(b"hi").decode()
    # personality: until 2.56 (its quotas checked, then refused: nothing would inject the files), unknown from 2.57.
    files = [{"path": "/etc/motd", "contents": base64.b64encode(b"hello").decode()}]
    assert rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud), "personality": files}, version="2.57").status_code == 400
    refused = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud), "personality": files}, version="2.56")
    assert refused.status_code == 400
    assert "Personality (file injection) is not supported yet" in refused.json()["badRequest"]["message"]
    too_many = [{"path": f"/f{i}", "contents": ""} for i in range(6)]
    over = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud), "personality": too_many}, version="2.56")
    assert over.status_code == 403 and over.json()["forbidden"]["message"] == "Personality file limit exceeded"


def IMAGE_ID(cloud) -> str:  # noqa: N802 - a constant looked up once
    global _IMAGE_ID
    if _IMAGE_ID is None:
        _IMAGE_ID = cloud.openstack("image", "show", IMAGE, fmt_json=True)["id"]
    return _IMAGE_ID


_IMAGE_ID = None


def test_rebuild_refusals_with_upstream_messages(cloud, server, tmp_path):
    uuid = server["id"]
    missing = rebuild(cloud, uuid, {"imageRef": "6b1a5c5e-0000-4000-8000-000000000000"})
    assert missing.status_code == 400 and missing.json()["badRequest"]["message"] == "Cannot find image for rebuild"
    path = tmp_path / "big.qcow2"
    path.write_bytes(qcow2.empty_image(64 << 20))
    big = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2", "--container-format",
                          "bare", "--min-ram", "100000", "rb-needs-ram", fmt_json=True)
    disk = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2", "--container-format",
                           "bare", "--min-disk", "50", "rb-needs-disk", fmt_json=True)
    try:
        ram = rebuild(cloud, uuid, {"imageRef": big["id"]})
        assert ram.status_code == 400
        assert ram.json()["badRequest"]["message"] == "Flavor's memory is too small for requested image."
        small = rebuild(cloud, uuid, {"imageRef": disk["id"]})
        assert small.status_code == 400
        assert small.json()["badRequest"]["message"].startswith(
            "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is 1073741824 "
            "bytes, minimum size is 53687091200 bytes.")
    finally:
        cloud.openstack("image", "delete", big["id"], disk["id"])
    unknown_key = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud), "key_name": "no-such-key"}, version="2.54")
    assert unknown_key.status_code == 400 and unknown_key.json()["badRequest"]["message"] == "Invalid key_name provided."
    ephemeral = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud), "preserve_ephemeral": True})
    assert ephemeral.status_code == 400
    assert "does not support preserving ephemeral partitions" in ephemeral.json()["badRequest"]["message"]
    not_uuid = rebuild(cloud, uuid, {"imageRef": "not-a-uuid"})
    assert not_uuid.status_code == 400
    assert rebuild(cloud, uuid, {"name": "no-image"}).status_code == 400
    # Nothing of the refused requests was applied.
    assert cloud.openstack("server", "show", uuid, fmt_json=True)["name"] == "rb-vm"

    cloud.openstack("server", "pause", uuid)
    cloud.wait_status(uuid, "PAUSED")
    paused = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud)})
    assert paused.status_code == 409
    assert paused.json()["conflictingRequest"]["message"] == \
        f"Cannot 'rebuild' instance {uuid} while it is in vm_state paused"
    cloud.openstack("server", "unpause", uuid)
    cloud.wait_status(uuid, "ACTIVE")


def test_locked_server_refuses_its_owner_and_stopped_server_stays_stopped(cloud):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", IMAGE, "--network", "private",
                              "--wait", "rb-demo", cloud="kilonova-demo", fmt_json=True)
    uuid = created["id"]
    try:
        cloud.openstack("server", "lock", uuid)
        locked = rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud)}, cloud_name="kilonova-demo")
        assert locked.status_code == 409
        assert locked.json()["conflictingRequest"]["message"] == f"Instance {uuid} is locked"
        cloud.openstack("server", "unlock", uuid)
        with compute(cloud, "2.68", "kilonova-demo") as client:
            evacuated = client.post(f"/servers/{uuid}/action", json={"evacuate": {}})
        assert evacuated.status_code == 403
        assert evacuated.json()["forbidden"]["message"] == \
            "Policy doesn't allow os_compute_api:os-evacuate to be performed."
        cloud.openstack("server", "stop", uuid, cloud="kilonova-demo")
        cloud.wait_status(uuid, "SHUTOFF")
        # the nova CLI, as the owner
        cloud.nova("rebuild", "--name", "rb-demo-2", uuid, IMAGE, cloud="kilonova-demo")
        shown = cloud.wait_status(uuid, "SHUTOFF")
        assert shown["name"] == "rb-demo-2" and shown["OS-EXT-STS:task_state"] is None
        assert shown["OS-EXT-STS:power_state"] in (4, "Shutdown")
    finally:
        cloud.openstack("server", "delete", "--wait", uuid, check=False)


def test_rebuild_with_openstacksdk(cloud, server, second_image):
    conn = cloud.sdk()
    rebuilt = conn.compute.rebuild_server(server["id"], image=second_image["id"], name="rb-sdk",
                                          admin_password="sdk-pass", metadata={"via": "sdk"})
    assert rebuilt.name == "rb-sdk" and rebuilt.admin_password == "sdk-pass"
    done = conn.compute.wait_for_server(conn.compute.get_server(server["id"]), status="ACTIVE", wait=60)
    assert done.image.id == second_image["id"] and done.metadata == {"via": "sdk"}
    assert done.addresses == conn.compute.get_server(server["id"]).addresses


def test_a_new_image_the_host_cannot_run_puts_the_server_in_error_with_its_old_image(cloud, server, tmp_path):
    """Upstream schedules a rebuild with a new image to the server's own host: refused there, ERROR."""
    uuid = server["id"]
    path = tmp_path / "special.qcow2"
    path.write_bytes(qcow2.empty_image(64 << 20))
    needs_trait = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2",
                                  "--container-format", "bare", "--property", "trait:CUSTOM_NOT_HERE=required",
                                  "rb-needs-trait", fmt_json=True)
    other_arch = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2",
                                 "--container-format", "bare", "--property", "hw_architecture=s390x",
                                 "rb-s390x", fmt_json=True)
    try:
        assert rebuild(cloud, uuid, {"imageRef": needs_trait["id"]}).status_code == 202
        failed = cloud.wait_status(uuid, "ERROR")
        assert failed["fault"]["message"].startswith(
            "No valid host was found. Image traits cannot be satisfied by the current resource providers.")
        assert IMAGE_ID(cloud) in failed["image"], "the server keeps its old image"
        assert action_events(cloud, uuid, "rebuild")["rebuild_server"] == "Error"
        # From ERROR a rebuild is allowed: the same check refuses an architecture the host cannot run.
        assert rebuild(cloud, uuid, {"imageRef": other_arch["id"]}).status_code == 202
        failed = cloud.wait_status(uuid, "ERROR")
        assert "ImagePropertiesFilter" in failed["fault"]["message"]
        assert rebuild(cloud, uuid, {"imageRef": IMAGE_ID(cloud)}).status_code == 202
        assert cloud.wait_status(uuid, "ACTIVE")["OS-EXT-SRV-ATTR:host"] == server["OS-EXT-SRV-ATTR:host"]
    finally:
        cloud.openstack("image", "delete", needs_trait["id"], other_arch["id"])
