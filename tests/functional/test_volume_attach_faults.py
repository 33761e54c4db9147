"""A volume attach cut short: the host's connection held (the fake driver's ``attach_volume`` waits at a gate,
as a host that died mid-attach) past ``[compute] volume_attach_timeout``, the conductor's reconcile pass
gives the reservation back -- the volume ``available``, the server without it -- instead of leaving it
``reserved``/``attaching`` for good; when the held host goes on it finds its attachment gone and undoes
its half (the instance action ends in Error), and the volume can be attached again. A build that fails on
its host gives back the volumes it had connected (available), keeps them the server's, and its delete
deletes the one made for it."""
from __future__ import annotations

import uuid

import pytest

from tests.cloud import new_cloud, wait_for

DEMO = "kilonova-demo"


@pytest.fixture(scope="module")
def cloud():
    instance = new_cloud(hosts=2, config={
        # compute2 fails every spawn; compute1 holds the attach at its gate.
        "fake_driver": {"step_gates": "attach_volume", "step_gate_timeout": "60", "fail_spawn_hosts": "compute2"},
        "compute": {"volume_attach_timeout": "2"},
        "conductor": {"reconcile_interval": "1"},
    })
    instance.start()
    yield instance
    instance.stop()


def _status(conn, volume_id: str, wanted: str):
    return wait_for(lambda: (v := conn.block_storage.get_volume(volume_id)).status == wanted and v,
                    f"volume {volume_id} {wanted}", timeout=30)


def test_an_attach_cut_short_gives_the_volume_back(cloud):
    conn = cloud.sdk()
    with cloud.http("block-storage", None) as volume_service:
        newest = volume_service.get("/").json()["versions"][0]["version"]
        if tuple(int(x) for x in newest.split(".")) < (3, 44):
            pytest.skip("the volume service has no attachments API (3.44)")
    server = conn.compute.create_server(name=f"vm-{uuid.uuid4().hex[:6]}", flavor_id="1",
                                        image_id=conn.image.find_image("kilonova-tiny").id,
                                        networks=[{"uuid": conn.network.find_network("private").id}],
                                        availability_zone="nova:compute1")
    conn.compute.wait_for_server(server, interval=0.2, wait=60)
    volume = conn.block_storage.wait_for_status(conn.block_storage.create_volume(size=1), "available",
                                                interval=0.2, wait=60)
    conn.compute.create_volume_attachment(server.id, volume_id=volume.id)
    # The host holds the attach; past the deadline the reconcile pass gives the reservation back.
    _status(conn, volume.id, "available")
    wait_for(lambda: not list(conn.compute.volume_attachments(server.id)), "the server's mapping gone")
    # The host goes on: its attachment is gone, it undoes what it did; the action says it failed.
    gates = cloud.state_dir / "step-gates"
    gates.mkdir(exist_ok=True)
    (gates / "attach_volume").touch()
    wait_for(lambda: [a for a in conn.compute.server_actions(server.id) if a.action == "attach_volume"
                      and a.message == "Error"], "the attach_volume action ended in Error")
    assert conn.block_storage.get_volume(volume.id).status == "available"
    said = [line for line in conn.compute.get_server_console_output(server.id)["output"].splitlines()
            if volume.id in line]
    assert said and said[-1].endswith("detached"), said  # the guest had it for a moment, then not
    # And it can be attached again.
    (gates / "attach_volume").touch()
    conn.compute.create_volume_attachment(server.id, volume_id=volume.id)
    _status(conn, volume.id, "in-use")
    conn.compute.delete_server(server.id)
    conn.compute.wait_for_delete(server, interval=0.2, wait=60)
    _status(conn, volume.id, "available")
    conn.block_storage.delete_volume(volume.id)


def test_a_failed_build_gives_its_volumes_back(cloud):
    conn = cloud.sdk()
    kept = conn.block_storage.wait_for_status(conn.block_storage.create_volume(size=1), "available",
                                              interval=0.2, wait=60)
    image = conn.image.find_image("kilonova-tiny").id
    with cloud.http("compute") as compute:
        made = compute.post("/servers", headers={"OpenStack-API-Version": "compute 2.67"}, json={"server": {
            "name": "fails", "flavorRef": "1", "imageRef": image, "networks": "none",
            "availability_zone": "nova:compute2",   # a forced host: no alternate to retry on
            "block_device_mapping_v2": [
                {"uuid": image, "source_type": "image", "destination_type": "local", "boot_index": 0},
                {"uuid": kept.id, "source_type": "volume", "destination_type": "volume", "boot_index": -1},
                {"source_type": "blank", "destination_type": "volume", "volume_size": 1, "boot_index": -1,
                 "delete_on_termination": True}]}})
        assert made.status_code == 202, made.text
    server = conn.compute.wait_for_server(conn.compute.get_server(made.json()["server"]["id"]), status="ERROR",
                                          interval=0.2, wait=60)
    # Its volumes are connected nowhere (available) but still its own; its delete deletes the blank one.
    blank = next(v["id"] for v in server.attached_volumes if v["id"] != kept.id)
    assert {v["id"] for v in server.attached_volumes} == {kept.id, blank}
    _status(conn, kept.id, "available")
    _status(conn, blank, "available")
    conn.compute.delete_server(server.id)
    conn.compute.wait_for_delete(server, interval=0.2, wait=60)
    wait_for(lambda: conn.block_storage.find_volume(blank) is None, "the blank volume deleted with its server")
    assert conn.block_storage.get_volume(kept.id).status == "available"
    conn.block_storage.delete_volume(kept.id)
