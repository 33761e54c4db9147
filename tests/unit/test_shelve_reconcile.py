"""The shelving reconcile pass (kilonova/compute/conductor/tasks/unshelve.py) on states a crash leaves behind:
a shelve, an offload or an unshelve nobody finishes, and an offloaded server still holding a claim. Real
SQLite cell database and Placement app, the real conductor; compute hosts recorded, not run."""
from __future__ import annotations

from datetime import datetime

import httpx
import pytest
import sqlalchemy as sa

from kilonova.common.testing import FakeValidator, service_env
from kilonova.compute.conductor.tasks import shelved_image_sweep, unshelve
from kilonova.compute.db import instances, shelved_images
from kilonova.compute.db.cell_models import ShelvedImage
from kilonova.image.service import ImageService
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_recovery import (HOST, Recorder, claims, conductor, current, faults, heartbeat,  # noqa: F401
                                      network, provider, server)
from tests.unit.test_scheduler import placement  # noqa: F401 - fixture


@pytest.fixture
def hosts():
    return Recorder()


DEMO = {"X-Auth-Token": "demo"}


@pytest.fixture
async def images(tmp_path):
    """The image service's app; the conductor talks to it as the service user, the test as the owner."""
    validator = FakeValidator({"svc": ("nova", "service", ["admin", "member", "reader"]),
                               "demo": ("demo", "demo", ["member", "reader"])})
    svc = ImageService(service_env(tmp_path / "image"), validator=validator)
    svc.prepare()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://image",
                                 headers={"X-Auth-Token": "svc"}) as http:
        yield http
    svc.db.close()


@pytest.fixture
def sweeper(stub, placement, network, hosts, images):  # noqa: F811
    stub.conf.set("compute", "shelve_timeout", "60")
    manager = conductor(stub, placement, network, hosts)
    manager.images = images
    return manager


async def test_a_shelve_nobody_finishes_is_cleared_keeps_its_claim_and_drops_its_image(  # noqa: F811
        stub, placement, provider, sweeper, images):
    snapshot = await images.post("/v2/images", json={"name": "vm-shelved", "disk_format": "qcow2",
                                                     "container_format": "bare"}, headers=DEMO)
    assert snapshot.status_code == 201, snapshot.text
    image_id = snapshot.json()["id"]
    instance = await server(stub, placement, provider, vm_state="active", task_state="shelving_image_uploading",
                            system_metadata={"image_base_image_ref": "image", "shelved_image_id": image_id})
    assert await unshelve.reconcile_shelving(sweeper) == 1
    now = current(stub, instance["uuid"])
    assert (now["vm_state"], now["task_state"], now["host"]) == ("active", None, HOST)
    assert now["system_metadata"] == {"image_base_image_ref": "image"}
    assert list(await claims(placement, instance["uuid"])) == [provider]
    assert faults(stub, instance["uuid"]) == 1
    # Only the dead host knew the half-made snapshot: the pass deleted it.
    assert (await images.get(f"/v2/images/{image_id}", headers=DEMO)).status_code == 404
    assert await unshelve.reconcile_shelving(sweeper) == 0


async def test_an_unshelve_nobody_finishes_is_offloaded_again_holding_nothing(stub, placement, provider,  # noqa: F811
                                                                               sweeper):
    for task_state in ("unshelving", "spawning"):
        instance = await server(stub, placement, provider, vm_state="shelved_offloaded", task_state=task_state)
        assert await unshelve.reconcile_shelving(sweeper) == 1
        now = current(stub, instance["uuid"])
        assert (now["vm_state"], now["task_state"], now["host"], now["node"]) == \
            ("shelved_offloaded", None, None, None)
        assert await claims(placement, instance["uuid"]) == {}
        assert faults(stub, instance["uuid"]) == 1


async def test_a_recent_unshelve_is_left_alone(stub, placement, provider, sweeper):  # noqa: F811
    instance = await server(stub, placement, provider, vm_state="shelved_offloaded", task_state="spawning",
                            updated_at=datetime.utcnow().isoformat())
    assert await unshelve.reconcile_shelving(sweeper) == 0
    assert current(stub, instance["uuid"])["task_state"] == "spawning"
    assert list(await claims(placement, instance["uuid"])) == [provider]


async def test_a_build_spawning_is_not_this_pass_s(stub, placement, provider, sweeper):  # noqa: F811
    instance = await server(stub, placement, provider, vm_state="building", task_state="spawning")
    assert await unshelve.reconcile_shelving(sweeper) == 0
    assert current(stub, instance["uuid"])["vm_state"] == "building"


async def test_an_offload_whose_host_is_up_is_asked_again(stub, placement, provider, sweeper, hosts):  # noqa: F811
    heartbeat(stub, HOST, seconds_ago=1)
    instance = await server(stub, placement, provider, vm_state="shelved", task_state="shelving_offloading")
    assert await unshelve.reconcile_shelving(sweeper) == 1
    assert [(host, method) for host, method, _ in hosts.casts] == [(HOST, "shelve_offload_instance")]
    assert current(stub, instance["uuid"])["task_state"] == "shelving_offloading"  # the host finishes it


async def test_an_offload_whose_host_is_down_is_finished_here(stub, placement, provider, sweeper, hosts):  # noqa: F811
    heartbeat(stub, HOST, seconds_ago=3600)
    instance = await server(stub, placement, provider, vm_state="shelved", task_state="shelving_offloading")
    assert await unshelve.reconcile_shelving(sweeper) == 1
    now = current(stub, instance["uuid"])
    assert (now["vm_state"], now["task_state"], now["host"]) == ("shelved_offloaded", None, None)
    assert await claims(placement, instance["uuid"]) == {} and hosts.casts == []


async def test_an_offloaded_server_never_keeps_a_claim(stub, placement, provider, sweeper):  # noqa: F811
    """A crash between the record saying offloaded and the claim's release: the next pass releases it."""
    instance = await server(stub, placement, provider, vm_state="shelved_offloaded", task_state=None)
    assert await unshelve.reconcile_shelving(sweeper) == 1
    assert await claims(placement, instance["uuid"]) == {}
    # One being unshelved keeps the claim its scheduling made.
    unshelving = await server(stub, placement, provider, vm_state="shelved_offloaded", task_state="unshelving",
                              updated_at=datetime.utcnow().isoformat())
    assert await unshelve.reconcile_shelving(sweeper) == 0
    assert list(await claims(placement, unshelving["uuid"])) == [provider]


# ------------------------------------------------------------------------------------------------ the image sweep

async def _snapshot(images, name: str = "vm-shelved") -> str:
    made = await images.post("/v2/images", json={"name": name, "disk_format": "qcow2", "container_format": "bare"},
                             headers=DEMO)
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _recorded(stub, image_id: str, instance_uuid: str) -> None:
    stub.cells.default.db.run_sync(shelved_images.record, image_id, instance_uuid)


def _ledger(stub) -> set[str]:
    return set(stub.cells.default.db.run_sync(lambda s: s.scalars(sa.select(ShelvedImage.image_id)).all(),
                                              write=False))


async def _exists(images, image_id: str) -> bool:
    return (await images.get(f"/v2/images/{image_id}", headers=DEMO)).status_code == 200


async def test_a_shelve_snapshot_whose_deletion_was_cut_short_is_swept(stub, placement, provider,  # noqa: F811
                                                                      sweeper, images):
    """The conductor cleared a shelve (or a host unshelved the server) and died before deleting the image: the
    image is in the ledger, the server no longer names it; the sweep deletes it and forgets it."""
    leaked = await _snapshot(images)
    instance = await server(stub, placement, provider, vm_state="active", system_metadata={})
    _recorded(stub, leaked, instance["uuid"])
    assert await shelved_image_sweep.sweep_shelved_images(sweeper) == 1
    assert not await _exists(images, leaked)
    assert _ledger(stub) == set()
    assert await shelved_image_sweep.sweep_shelved_images(sweeper) == 0


async def test_the_sweep_keeps_every_image_a_server_refers_to_or_kilonova_did_not_make_for_a_shelve(  # noqa: F811
        stub, placement, provider, sweeper, images):
    # A shelved server's snapshot, and an older one of the same server while it is still shelved.
    current_image, older = await _snapshot(images), await _snapshot(images)
    shelved = await server(stub, placement, provider, vm_state="shelved_offloaded",
                           system_metadata={"shelved_image_id": current_image})
    _recorded(stub, current_image, shelved["uuid"])
    _recorded(stub, older, shelved["uuid"])
    # A snapshot another server was booted from since.
    booted_from = await _snapshot(images)
    unshelved = await server(stub, placement, provider, vm_state="active")
    _recorded(stub, booted_from, unshelved["uuid"])
    stub.cells.default.db.run_sync(instances.update, unshelved["uuid"], {"image_ref": booted_from})
    # A user's own snapshot named like a shelve's: not in the ledger.
    users = await _snapshot(images, "vm-shelved")
    assert await shelved_image_sweep.sweep_shelved_images(sweeper) == 0
    for image_id in (current_image, older, booted_from, users):
        assert await _exists(images, image_id)
    assert _ledger(stub) == {current_image, older, booted_from}


async def test_a_deleted_servers_snapshot_is_swept_and_a_gone_image_only_forgotten(  # noqa: F811
        stub, placement, provider, sweeper, images):
    leaked, gone = await _snapshot(images), await _snapshot(images)
    deleted = await server(stub, placement, provider, vm_state="shelved_offloaded",
                           system_metadata={"shelved_image_id": leaked})
    _recorded(stub, leaked, deleted["uuid"])
    stub.cells.default.db.run_sync(instances.soft_delete, deleted["uuid"])
    finished = await server(stub, placement, provider, vm_state="active")
    _recorded(stub, gone, finished["uuid"])
    assert (await images.delete(f"/v2/images/{gone}", headers=DEMO)).status_code == 204
    assert await shelved_image_sweep.sweep_shelved_images(sweeper) == 1
    assert not await _exists(images, leaked)
    assert _ledger(stub) == set()
