"""``/os-assisted-volume-snapshots`` (the call Cinder's file-based drivers make to Nova) on the fake driver:
the server is found from the volume's attachment, the host is asked to switch the guest's disk onto the new
file (POST) or to merge a snapshot's file away (DELETE), and the fake host records it on the guest's console;
upstream's answers to bad input, unattached volumes and callers who are not admins."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.cloud import wait_for

ADMIN, DEMO = "kilonova", "kilonova-demo"


@pytest.fixture(scope="module")
def attached(cloud):
    """(server id, volume id): a demo server with a volume attached."""
    conn = cloud.sdk(DEMO)
    server = conn.compute.create_server(name=f"avs-{uuid.uuid4().hex[:6]}", flavor_id="1",
                                        image_id=conn.image.find_image("kilonova-tiny").id,
                                        networks=[{"uuid": conn.network.find_network("private").id}])
    conn.compute.wait_for_server(server, interval=0.2, wait=60)
    volume = conn.block_storage.create_volume(size=1, name=f"avs-{uuid.uuid4().hex[:6]}")
    conn.block_storage.wait_for_status(volume, "available", failures=["error"], interval=0.2, wait=60)
    conn.compute.create_volume_attachment(server, volume_id=volume.id)
    wait_for(lambda: conn.block_storage.get_volume(volume.id).status == "in-use", "the attach", timeout=60)
    yield server.id, volume.id
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.2, wait=60)
    conn.block_storage.delete_volume(volume.id, ignore_missing=True)


def _create(volume_id: str, snapshot_id: str, **extra) -> dict:
    return {"snapshot": {"volume_id": volume_id, "create_info": {
        "snapshot_id": snapshot_id, "type": "qcow2", "new_file": f"volume-{volume_id}.{snapshot_id}", **extra}}}


def _console(cloud, server_id: str) -> str:
    with cloud.http("compute") as api:
        return api.post(f"/servers/{server_id}/action", json={"os-getConsoleOutput": {}}).json()["output"]


def test_the_host_switches_the_guest_disk_and_merges_it_back(cloud, attached):
    server_id, volume_id = attached
    snapshot_id = str(uuid.uuid4())
    with cloud.http("compute") as api:
        made = api.post("/os-assisted-volume-snapshots", json=_create(volume_id, snapshot_id, id=snapshot_id))
        assert made.status_code == 200, made.text
        assert made.json() == {"snapshot": {"id": snapshot_id, "volumeId": volume_id}}
        wait_for(lambda: f"disk switched to volume-{volume_id}.{snapshot_id}" in _console(cloud, server_id),
                 "the switch on the host", timeout=30)
        info = {"volume_id": volume_id, "type": "qcow2", "file_to_merge": None, "merge_target_file": None}
        gone = api.delete(f"/os-assisted-volume-snapshots/{snapshot_id}", params={"delete_info": json.dumps(info)})
        assert gone.status_code == 204, gone.text
        wait_for(lambda: f"snapshot {snapshot_id}: None merged into the active file" in _console(cloud, server_id),
                 "the merge on the host", timeout=30)


def test_bad_input_and_unattached_volumes_are_400s_and_members_are_refused(cloud, attached):
    _server_id, volume_id = attached
    loose = cloud.sdk(ADMIN).block_storage.create_volume(size=1, name="avs-loose")
    snapshot_id = str(uuid.uuid4())
    with cloud.http("compute") as api:
        for body in ({"snapshot": {"volume_id": volume_id}},
                     _create(volume_id, snapshot_id, extra="x"),
                     {"snapshot": {"volume_id": volume_id, "create_info": {
                         "snapshot_id": snapshot_id, "type": "raw", "new_file": "f"}}},
                     {"snapshot": {"volume_id": "", "create_info": {
                         "snapshot_id": snapshot_id, "type": "qcow2", "new_file": "f"}}}):
            refused = api.post("/os-assisted-volume-snapshots", json=body)
            assert refused.status_code == 400 and "badRequest" in refused.json(), refused.text
        for missing in (loose.id, str(uuid.uuid4())):
            refused = api.post("/os-assisted-volume-snapshots", json=_create(missing, snapshot_id))
            assert refused.status_code == 400, refused.text
            assert refused.json()["badRequest"]["message"] == f"No volume Block Device Mapping with id {missing}."
        no_info = api.delete(f"/os-assisted-volume-snapshots/{snapshot_id}")
        assert no_info.status_code == 400 and no_info.json()["badRequest"]["message"] == "'delete_info'"
        for bad in ("not json", json.dumps({"type": "qcow2"}), "[1]"):
            refused = api.delete(f"/os-assisted-volume-snapshots/{snapshot_id}", params={"delete_info": bad})
            assert refused.status_code == 400, refused.text
        extra = api.delete(f"/os-assisted-volume-snapshots/{snapshot_id}", headers={
            "OpenStack-API-Version": "compute 2.75"}, params={"delete_info": json.dumps({"volume_id": volume_id}),
                                                           "other": "1"})
        assert extra.status_code == 400, extra.text
    with cloud.http("compute", DEMO) as member:
        denied = member.post("/os-assisted-volume-snapshots", json=_create(volume_id, snapshot_id))
        assert denied.status_code == 403, denied.text
        assert "os_compute_api:os-assisted-volume-snapshots:create" in denied.text
        denied = member.delete(f"/os-assisted-volume-snapshots/{snapshot_id}",
                               params={"delete_info": json.dumps({"volume_id": volume_id})})
        assert denied.status_code == 403, denied.text
    cloud.sdk(ADMIN).block_storage.delete_volume(loose.id, ignore_missing=True)


def test_only_admins_report_a_snapshot_and_only_while_it_is_being_made_or_deleted(cloud):
    """os-update_snapshot_status (the compute host's report to the volume service), as Cinder checks it."""
    conn = cloud.sdk(ADMIN)
    volume = conn.block_storage.wait_for_status(conn.block_storage.create_volume(size=1, name="avs-report"),
                                                "available", failures=["error"], interval=0.2, wait=60)
    snapshot = conn.block_storage.wait_for_status(conn.block_storage.create_snapshot(volume_id=volume.id),
                                                  "available", failures=["error"], interval=0.2, wait=60)
    path = f"/v3/{conn.current_project_id}/snapshots/{snapshot.id}/action"
    try:
        with cloud.http("block-storage") as api:
            refused = api.post(path, json={"os-update_snapshot_status": {"status": "creating", "progress": "90%"}})
            assert refused.status_code == 400, refused.text
            assert refused.json()["badRequest"]["message"] == \
                "Snapshot status available not allowed for update_snapshot_status"
            assert api.post(path, json={"os-update_snapshot_status": {}}).status_code == 400
            assert api.post(path, json={"os-other": {}}).status_code == 400
        with cloud.http("block-storage", DEMO) as member:
            denied = member.post(f"/v3/{cloud.sdk(DEMO).current_project_id}/snapshots/{snapshot.id}/action",
                                 json={"os-update_snapshot_status": {"status": "error"}})
            assert denied.status_code == 403, denied.text
    finally:
        conn.block_storage.delete_snapshot(snapshot)
        conn.block_storage.wait_for_delete(snapshot, interval=0.2, wait=60)
        conn.block_storage.delete_volume(volume)
