"""A crash of the cloud (``kilonova up`` killed) in the middle of attaches: after the restart no volume
stays ``attaching`` past ``[volume] attachment_timeout``; a reservation stays ``reserved`` (as in Cinder it
holds the volume until it is deleted) and can be deleted; a completed attachment stays ``in-use``; a volume
being made from an image when the crash came is written again and ends available."""
from __future__ import annotations

import shutil
import time
import uuid

import pytest

from tests.cloud import new_cloud

TIMEOUT = 4


@pytest.fixture
def small_cloud():
    cloud = new_cloud(hosts=1, config={"volume": {"attachment_timeout": str(TIMEOUT)}})
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def test_attachments_a_crash_leaves_are_settled_after_the_restart(small_cloud):
    conn = small_cloud.sdk("kilonova-demo")
    volumes = {}
    for name in ("reserved", "attaching", "attached"):
        volumes[name] = conn.block_storage.create_volume(size=1, name=name)
    image = conn.image.find_image("kilonova-tiny")
    volumes["from-image"] = conn.block_storage.create_volume(size=1, name="from-image", image_id=image.id)
    for volume in volumes.values():
        conn.block_storage.wait_for_status(volume, "available", wait=60, interval=0.2)
    connector = {"ip": "127.0.0.1", "host": "compute1", "mountpoint": "/dev/vdb"}
    reservation = conn.block_storage.create_attachment(volumes["reserved"].id, instance=str(uuid.uuid4()))
    conn.block_storage.create_attachment(volumes["attaching"].id, instance=str(uuid.uuid4()), connector=connector)
    done = conn.block_storage.create_attachment(volumes["attached"].id, instance=str(uuid.uuid4()),
                                                connector=connector)
    conn.block_storage.complete_attachment(done)
    # a volume being written from an image when the crash comes
    writing = conn.block_storage.create_volume(size=1, name="writing", image_id=image.id)

    small_cloud.proc.kill()   # a crash: nothing is finished on the way down
    small_cloud.proc.wait()
    small_cloud.proc = None
    started = time.monotonic()
    small_cloud.start()
    conn = small_cloud.sdk("kilonova-demo")
    deadline = started + TIMEOUT + 60
    while True:
        statuses = {name: conn.block_storage.get_volume(v.id).status for name, v in volumes.items()}
        statuses["writing"] = conn.block_storage.get_volume(writing.id).status
        if statuses == {"reserved": "reserved", "attaching": "available", "attached": "in-use",
                        "from-image": "available", "writing": "available"}:
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.5)
    assert [a.id for a in conn.block_storage.attachments(volume_id=volumes["attached"].id)] == [done.id]
    assert conn.block_storage.get_volume(writing.id).is_bootable is True
    # the reservation outlived the deadline (the attaching one, made after it, is gone), and goes when its
    # holder deletes it
    assert [a.id for a in conn.block_storage.attachments(volume_id=volumes["reserved"].id)] == [reservation.id]
    conn.block_storage.delete_attachment(reservation)
    conn.block_storage.wait_for_status(volumes["reserved"], "available", wait=30, interval=0.2)
