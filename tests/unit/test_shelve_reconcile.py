"""The shelving reconcile pass (kilonova/compute/conductor/tasks/unshelve.py) on states a crash leaves behind:
a shelve, an offload or an unshelve nobody finishes, and an offloaded server still holding a claim. Real
SQLite cell database and Placement app, the real conductor; compute hosts recorded, not run."""
from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.compute.conductor.tasks import unshelve
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
