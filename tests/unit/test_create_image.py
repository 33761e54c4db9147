"""createImage: the API's body checks and image properties, and the compute agent's snapshot steps."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from kilonova.common.http import HTTPError
from kilonova.compute.agent.manager import ComputeManager
from kilonova.compute.api import create_image
from kilonova.compute.api.lookup import ServerRef
from kilonova.compute.virt.fake import FakeDriver
from kilonova.config import Config
from kilonova.image import qcow2

SERVER = {"uuid": "11111111-2222-3333-4444-555555555555", "project_id": "p-owner", "user_id": "u-owner",
          "image_ref": "img-source", "flavor": {"root_gb": 5, "memory_mb": 64, "vcpus": 1},
          "vm_state": "active", "task_state": None, "host": "h1", "hostname": "vm"}


# ---------------------------------------------------------------------- API side

@pytest.mark.parametrize("body", [
    {}, {"createImage": None}, {"createImage": {}}, {"createImage": {"name": ""}},
    {"createImage": {"name": "n" * 256}}, {"createImage": {"name": "trailing "}},
    {"createImage": {"name": "ok", "metadata": "k=v"}}, {"createImage": {"name": "ok", "metadata": {"k": None}}},
    {"createImage": {"name": "ok", "metadata": {"": "v"}}}, {"createImage": {"name": "ok", "extra": True}},
])
def test_bad_bodies_are_refused_with_400(body):
    with pytest.raises(HTTPError) as caught:
        create_image.parse_body(body)
    assert caught.value.status == 400


def test_good_body():
    assert create_image.parse_body({"createImage": {"name": "snap", "metadata": {"k": "v"}}}) == \
        ("snap", {"k": "v"})
    assert create_image.parse_body({"createImage": {"name": "snap"}}) == ("snap", {})


def test_snapshot_inherits_the_source_images_boot_properties_but_not_its_identity():
    source = {"id": "img-source", "name": "cirros", "status": "active", "owner": "someone", "size": 999,
              "disk_format": "raw", "container_format": "bare", "min_disk": 2, "min_ram": 128,
              "hw_disk_bus": "virtio", "kernel_id": "k1", "os_command_line": "console=ttyS0",
              "img_signature": "sig", "os_glance_importing_to_stores": "x", "instance_uuid": "older-server",
              "image_type": "image", "tags": ["t"], "locations": []}
    values = create_image.image_values(SERVER, source, "snap", {"purpose": "backup"}, "p-owner", "u-caller")
    assert values["name"] == "snap"
    assert values["hw_disk_bus"] == "virtio" and values["kernel_id"] == "k1"
    assert values["os_command_line"] == "console=ttyS0" and values["purpose"] == "backup"
    assert values["image_type"] == "snapshot" and values["instance_uuid"] == SERVER["uuid"]
    assert values["base_image_ref"] == "img-source" and values["user_id"] == "u-caller"
    assert values["min_disk"] == 5 and values["min_ram"] == 128  # the flavor's root disk is larger than min_disk
    for key in ("img_signature", "os_glance_importing_to_stores", "disk_format", "container_format", "size",
                "status", "id", "tags", "locations", "owner"):
        assert key not in values, key


def test_admin_snapshot_of_another_projects_server_is_owned_by_that_project():
    values = create_image.image_values(SERVER, {}, "snap", {}, "p-admin", "u-admin")
    assert values["owner"] == "p-owner" and values["visibility"] == "private"
    assert values["min_disk"] == 5 and values["min_ram"] == 0 and values["base_image_ref"] == "img-source"


class _Cell:
    is_cell0 = False


@pytest.mark.parametrize("changes, fragment", [
    ({"vm_state": "building", "host": None}, "vm_state building"),
    ({"vm_state": "error"}, "vm_state error"),
    ({"vm_state": "deleted"}, "vm_state deleted"),
    ({"task_state": "deleting"}, "task_state deleting"),
    ({"task_state": "image_snapshot"}, "task_state image_snapshot"),
    ({"task_state": "rebooting"}, "task_state rebooting"),
])
def test_states_upstream_refuses_are_409(changes, fragment):
    ref = ServerRef({**SERVER, **changes}, _Cell())
    with pytest.raises(HTTPError) as caught:
        create_image._check_state(ref)
    assert caught.value.status == 409 and fragment in caught.value.message


def test_scheduling_server_is_409():
    with pytest.raises(HTTPError) as caught:
        create_image._check_state(ServerRef({**SERVER, "vm_state": "building", "host": None}, None))
    assert caught.value.status == 409


@pytest.mark.parametrize("vm_state", ["active", "stopped", "paused", "suspended"])
def test_states_that_may_be_snapshotted(vm_state):
    create_image._check_state(ServerRef({**SERVER, "vm_state": vm_state}, _Cell()))


# ---------------------------------------------------------------------- agent side

class StubConductor:
    def __init__(self, instance: dict):
        self.instance = dict(instance)
        self.task_states: list = []
        self.faults: list[str] = []

    async def call(self, method: str, **kwargs):
        if method == "instance_update":
            expected = kwargs.get("expected_task_state")
            if expected is not None and self.instance["task_state"] not in expected:
                from kilonova.common.rpc import RemoteError
                raise RemoteError("UnexpectedTaskState", "conflict")
            self.instance.update(kwargs["values"])
            self.task_states.append(kwargs["values"].get("task_state"))
            return dict(self.instance)
        if method == "add_fault":
            self.faults.append(kwargs["message"])
            return None
        raise AssertionError(method)


class StubImages:
    """The image service's answers to what a snapshot does: PATCH, PUT data, GET, DELETE."""

    def __init__(self, fail_upload: bool = False):
        self.images = {"img-1": {"id": "img-1", "status": "queued"}}
        self.data: dict[str, bytes] = {}
        self.fail_upload = fail_upload
        self.deleted: list[str] = []

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        image_id = path.split("/")[3]
        if image_id not in self.images:
            return httpx.Response(404)
        if method == "GET":
            return httpx.Response(200, json=self.images[image_id])
        if method == "DELETE":
            self.deleted.append(image_id)
            del self.images[image_id]
            return httpx.Response(204)
        if method == "PATCH":
            for op in kwargs["json"]:
                self.images[image_id][op["path"].strip("/")] = op["value"]
            return httpx.Response(200, json=self.images[image_id])
        if method == "PUT":
            if self.fail_upload:
                self.images[image_id]["status"] = "queued"
                return httpx.Response(500, text="store is full")
            self.data[image_id] = kwargs["content"]
            self.images[image_id]["status"] = "active"
            return httpx.Response(204)
        raise AssertionError(method)

    async def get(self, path, **kwargs):
        return await self.request("GET", path, **kwargs)

    async def put(self, path, **kwargs):
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path, **kwargs):
        return await self.request("DELETE", path, **kwargs)


def _agent(tmp_path, images: StubImages, task_state: str = "image_snapshot_pending"):
    conf = Config.load(state_dir=tmp_path)
    driver = FakeDriver("h1", conf, images)
    conductor = StubConductor({**SERVER, "task_state": task_state})
    manager = ComputeManager("h1", driver, conductor, placement=None, network=None, conf=conf, images=images)
    asyncio.run(driver.spawn(SERVER, {}, []))
    return manager, conductor, driver


def test_snapshot_uploads_a_qcow2_and_walks_the_task_states(tmp_path):
    images = StubImages()
    manager, conductor, driver = _agent(tmp_path, images)
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1"))
    assert conductor.task_states == ["image_snapshot", "image_pending_upload", "image_uploading", None]
    assert images.images["img-1"]["status"] == "active"
    assert images.images["img-1"]["disk_format"] == "qcow2"
    assert qcow2.virtual_size(images.data["img-1"]) == 5 << 30
    assert not conductor.faults and not images.deleted
    assert "Snapshot to image img-1" in asyncio.run(driver.get_console_output(SERVER))


def test_failed_upload_deletes_the_image_resets_the_task_and_records_a_fault(tmp_path):
    images = StubImages(fail_upload=True)
    manager, conductor, _ = _agent(tmp_path, images)
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1"))
    assert images.deleted == ["img-1"]
    assert conductor.instance["task_state"] is None and conductor.instance["vm_state"] == "active"
    assert len(conductor.faults) == 1 and "store is full" in conductor.faults[0]


def test_server_deleted_before_the_agent_started_discards_the_image(tmp_path):
    images = StubImages()
    manager, conductor, _ = _agent(tmp_path, images, task_state="deleting")
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1"))
    assert images.deleted == ["img-1"]
    assert conductor.instance["task_state"] == "deleting" and not conductor.faults


def test_guest_gone_from_the_hypervisor_fails_cleanly(tmp_path):
    images = StubImages()
    manager, conductor, driver = _agent(tmp_path, images)
    asyncio.run(driver.destroy(SERVER))
    asyncio.run(manager.snapshot_instance(conductor.instance, "img-1"))
    assert images.deleted == ["img-1"] and conductor.instance["task_state"] is None
    assert conductor.faults and "not running" in conductor.faults[0]
