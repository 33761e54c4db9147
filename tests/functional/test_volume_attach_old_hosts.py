"""A compute host of a release before volumes (``[upgrade_levels] compute = 1.3``, as a host not yet upgraded):
an attach is refused with a 409 saying so, and the volume it had reserved is available again."""
from __future__ import annotations

import shutil
import uuid

import pytest

from tests.cloud import new_cloud, wait_for


@pytest.fixture(scope="module")
def cloud():
    instance = new_cloud(hosts=1, config={"upgrade_levels": {"compute": "1.3"}})
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(instance.workdir, ignore_errors=True)


def test_an_attach_to_a_host_without_volumes_is_refused_and_gives_the_volume_back(cloud):
    conn = cloud.sdk()
    server = conn.compute.create_server(name=f"old-{uuid.uuid4().hex[:6]}", flavor_id="1",
                                        image_id=conn.image.find_image("kilonova-tiny").id,
                                        networks=[{"uuid": conn.network.find_network("private").id}])
    conn.compute.wait_for_server(server, interval=0.2, wait=60)
    volume = conn.block_storage.wait_for_status(conn.block_storage.create_volume(size=1), "available",
                                                interval=0.2, wait=60)
    with cloud.http("compute") as compute:
        refused = compute.post(f"/servers/{server.id}/os-volume_attachments",
                               json={"volumeAttachment": {"volumeId": volume.id}})
    assert refused.status_code == 409 and "does not support attach_volume yet" in refused.text, refused.text
    wait_for(lambda: conn.block_storage.get_volume(volume.id).status == "available", "the volume given back")
    assert list(conn.compute.volume_attachments(server.id)) == []
    assert [a.message for a in conn.compute.server_actions(server.id) if a.action == "attach_volume"] == ["Error"]
    conn.compute.delete_server(server.id)
    conn.compute.wait_for_delete(server, interval=0.2, wait=60)
    conn.block_storage.delete_volume(volume.id)
