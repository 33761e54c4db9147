"""A shelve whose compute host cannot be reached (the API's rollback): 409, the server as it was, with no
``shelved_image_id`` left in its system metadata, and the snapshot the API made discarded. Compute API app
on real SQLite databases; the image service and the compute RPC are stand-ins that record what they get."""
from __future__ import annotations

import httpx
import pytest

from kilonova.common.rpc import NoSuchTarget
from kilonova.compute.db import instances, shelved_images
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_instance_actions_api import SERVER, _server

IMAGE = "0e7a8b2c-1d3f-4a5b-8c6d-7e8f9a0b1c2d"


class _Images:
    """The image service: makes the snapshot image, and records the deletes."""

    def __init__(self):
        self.deleted: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"id": IMAGE, "name": "vm-shelved", "status": "queued"})
        if request.method == "DELETE":
            self.deleted.append(request.url.path.rsplit("/", 1)[-1])
            return httpx.Response(204)
        return httpx.Response(404)


class _Unreachable:
    async def cast(self, method: str, **kwargs) -> None:
        raise NoSuchTarget(f"no compute host consumes {method}")


@pytest.fixture
def images(stub):  # noqa: F811
    recorder = _Images()
    stub.image = httpx.AsyncClient(base_url="http://image", transport=httpx.MockTransport(recorder))
    stub.compute_rpc = lambda host: _Unreachable()
    return recorder


async def test_a_shelve_rolled_back_for_an_unreachable_host_leaves_no_shelved_image_id(api, stub, images):  # noqa: F811
    _server(stub, SERVER)
    stub.cells.default.db.run_sync(instances.update, SERVER, {"system_metadata": {"image_base_image_ref": "base"}})
    reply = await api.post(f"/servers/{SERVER}/action", {"shelve": None})
    assert reply.status_code == 409, reply.text
    assert reply.json()["conflictingRequest"]["message"] == "Compute host compute1 could not be reached."
    now = stub.cells.default.db.run_sync(instances.get, SERVER, write=False)
    assert (now["vm_state"], now["task_state"]) == ("active", None)
    assert "shelved_image_id" not in now["system_metadata"]
    assert images.deleted == [IMAGE]
    # Recorded when the shelve began; no server refers to it now, so the sweep may forget it.
    assert stub.cells.default.db.run_sync(shelved_images.unreferenced, write=False) == [
        {"image_id": IMAGE, "instance_uuid": SERVER}]
