"""A volume attach cut short: the host's connection held (the fake driver's ``attach_volume`` waits at a gate,
as a host that died mid-attach) past ``[compute] volume_attach_timeout``, the conductor's reconcile pass
gives the reservation back -- the volume ``available``, the server without it -- instead of leaving it
``reserved``/``attaching`` for good; when the held host goes on it finds its attachment gone and undoes
its half (the instance action ends in Error), and the volume can be attached again."""
from __future__ import annotations

import uuid

import pytest

from tests.cloud import new_cloud, wait_for

DEMO = "kilonova-demo"


@pytest.fixture(scope="module")
def cloud():
    instance = new_cloud(hosts=1, config={
        "fake_driver": {"step_gates": "attach_volume", "step_gate_timeout": "60"},
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
    conn = cloud.sdk(DEMO)
    with cloud.http("block-storage", None) as volume_service:
        newest = volume_service.get("/").json()["versions"][0]["version"]
        if tuple(int(x) for x in newest.split(".")) < (3, 44):
            pytest.skip("the volume service has no attachments API (3.44)")
    server = conn.compute.create_server(name=f"vm-{uuid.uuid4().hex[:6]}", flavor_id="1",
                                        image_id=conn.image.find_image("kilonova-tiny").id,
                                        networks=[{"uuid": conn.network.find_network("private").id}])
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
