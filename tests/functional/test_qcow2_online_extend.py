"""Extending an attached qcow2 file volume (``[volume] volume_format = qcow2``), as Cinder's NFS driver does it
with ``os-extend_volume_completion`` (3.71): the volume waits ``extending`` with ``extend_new_size`` in its
metadata, the server's host grows the guest's disk to that size and answers; the volume is then ``in-use`` at
its new size and its file has it. Driven with the real ``cinder`` CLI; the completion's refusals as Cinder's.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.cloud import Cloud, wait_for

GIB = 1024 ** 3
DEMO = "kilonova-demo"


@pytest.fixture(scope="module")
def qcow2_cloud():
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-test-"))
    instance = Cloud(workdir, hosts=1, config={"volume": {"volume_format": "qcow2"}})
    instance.start(timeout=120)
    yield instance
    instance.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _volume(cloud, volume_id: str) -> dict:
    return cloud.openstack("volume", "show", volume_id, fmt_json=True)


def _file_size(cloud, volume_id: str) -> int:
    info = json.loads((cloud.state_dir / "volumes" / f"volume-{volume_id}.info").read_text())
    shown = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output", "json",
                            str(cloud.state_dir / "volumes" / info["active"])], capture_output=True, text=True,
                           check=True)
    return json.loads(shown.stdout)["virtual-size"]


@pytest.fixture(scope="module")
def attached(qcow2_cloud):
    cloud = qcow2_cloud
    name = f"oe-{uuid.uuid4().hex[:6]}"
    server = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                             "private", "--wait", name, fmt_json=True)
    volume = cloud.openstack("volume", "create", "--size", "1", f"{name}-vol", fmt_json=True)
    wait_for(lambda: _volume(cloud, volume["id"])["status"] == "available", "the volume", timeout=60)
    cloud.openstack("server", "add", "volume", server["id"], volume["id"])
    wait_for(lambda: _volume(cloud, volume["id"])["status"] == "in-use", "the attach", timeout=60)
    yield server["id"], volume["id"]
    cloud.openstack("server", "delete", "--wait", server["id"])


def test_an_attached_qcow2_volume_is_grown_by_its_host(qcow2_cloud, attached):
    cloud, (server_id, volume_id) = qcow2_cloud, attached
    assert _file_size(cloud, volume_id) == 1 * GIB
    cloud.cinder("--os-volume-api-version", "3.42", "extend", volume_id, "2")
    shown = wait_for(lambda: (v := _volume(cloud, volume_id))["status"] == "in-use" and v["size"] == 2 and v,
                     "the host's completion", timeout=60)
    assert "extend_new_size" not in shown["properties"]
    assert _file_size(cloud, volume_id) == 2 * GIB   # grown by the host, not by the volume service
    with cloud.http("compute") as api:
        console = api.post(f"/servers/{server_id}/action", json={"os-getConsoleOutput": {}}).json()["output"]
    assert f"volume {volume_id} extended to 2 GiB" in console


def test_the_completion_is_refused_unless_an_extend_waits_for_it(qcow2_cloud, attached):
    cloud, (_server_id, volume_id) = qcow2_cloud, attached
    project = _volume(cloud, volume_id)["os-vol-tenant-attr:tenant_id"]
    body = {"os-extend_volume_completion": {"error": False}}
    with cloud.http("block-storage") as admin:
        path = f"/v3/{project}/volumes/{volume_id}/action"
        idle = admin.post(path, json=body, headers={"OpenStack-API-Version": "volume 3.71"})
        assert idle.status_code == 400, idle.text
        assert "is not waiting for the completion of an extend" in idle.json()["badRequest"]["message"]
        old = admin.post(path, json=body, headers={"OpenStack-API-Version": "volume 3.70"})
        assert old.status_code == 400
        assert old.json()["badRequest"]["message"] == "There is no such action: os-extend_volume_completion"
    mine = cloud.openstack("volume", "create", "--size", "1", f"oe-demo-{uuid.uuid4().hex[:6]}", cloud=DEMO,
                           fmt_json=True)
    try:
        with cloud.http("block-storage", DEMO) as member:   # the compute service's call: admins' only
            denied = member.post(f"/v3/{cloud.sdk(DEMO).current_project_id}/volumes/{mine['id']}/action",
                                 json=body, headers={"OpenStack-API-Version": "volume 3.71"})
        assert denied.status_code == 403, denied.text
    finally:
        wait_for(lambda: _volume(cloud, mine["id"])["status"] == "available", "the demo volume", timeout=60)
        cloud.openstack("volume", "delete", mine["id"], cloud=DEMO)
