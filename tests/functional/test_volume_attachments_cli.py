"""Cinder's attachments API (3.27+) through the real `openstack` CLI and openstacksdk: reserve, connect
(local connection_info), complete, list/show, delete; the volume's status and attachments on the way;
Cinder's refusals (a second server on a volume that is not multiattach, deleting an attached volume);
project isolation; microversion negotiation."""
from __future__ import annotations

import uuid

import pytest
from openstack import exceptions as sdk_exc

from tests.projects import member_of_new_project


@pytest.fixture
def attach_server(cloud):
    """A server of the demo project, gone after the test (the distributed module counts servers)."""
    conn = cloud.sdk("kilonova-demo")
    image = conn.image.find_image("kilonova-tiny")
    flavor = conn.compute.find_flavor("m1.tiny")
    network = conn.network.find_network("private")
    made = conn.compute.create_server(name="att-vm", image_id=image.id, flavor_id=flavor.id,
                                      networks=[{"uuid": network.id}])
    made = conn.compute.wait_for_server(made, wait=60, interval=0.3)
    yield made
    conn.compute.delete_server(made)
    conn.compute.wait_for_delete(made, wait=60, interval=0.3)


def _cleanup(conn, volume) -> None:
    for attachment in conn.block_storage.attachments(volume_id=volume.id):
        conn.block_storage.delete_attachment(attachment)
    conn.block_storage.delete_volume(volume)


def _volume(conn, name: str):
    volume = conn.block_storage.create_volume(size=1, name=name)
    return conn.block_storage.wait_for_status(volume, "available", wait=30, interval=0.2)


def test_attach_complete_detach_with_cli(cloud, attach_server):
    conn = cloud.sdk("kilonova-demo")
    volume = _volume(conn, "att-cli")
    try:
        made = cloud.openstack("volume", "attachment", "create", "--connect", "--ip", "127.0.0.1", "--host",
                               "compute1", "--mountpoint", "/dev/vdb", "--mode", "rw", "--server", attach_server.id,
                               volume.id, cloud="kilonova-demo", fmt_json=True)
        assert made["Status"] == "attaching" and made["Volume ID"] == volume.id
        assert made["Instance ID"] == attach_server.id
        assert made["Properties"]["driver_volume_type"] == "local"
        path = cloud.state_dir / "volumes" / f"volume-{volume.id}"
        assert made["Properties"]["data"]["device_path"] == str(path)
        assert conn.block_storage.get_volume(volume.id).status == "attaching"
        cloud.openstack("volume", "attachment", "complete", made["ID"], cloud="kilonova-demo")
        shown = conn.block_storage.get_volume(volume.id)
        assert shown.status == "in-use"
        assert [(a["server_id"], a["device"], a["attachment_id"]) for a in shown.attachments] == \
            [(attach_server.id, "/dev/vdb", made["ID"])]
        listed = cloud.openstack("volume", "attachment", "list", "--volume-id", volume.id, cloud="kilonova-demo",
                                 fmt_json=True)
        assert [(a["ID"], a["Server ID"], a["Status"]) for a in listed] == [(made["ID"], attach_server.id, "attached")]
        everyone = cloud.openstack("volume", "attachment", "list", "--all-projects", fmt_json=True)
        assert made["ID"] in [a["ID"] for a in everyone]
        refused = cloud.openstack("volume", "delete", volume.id, cloud="kilonova-demo", check=False)
        assert refused.returncode != 0 and "in-use" in refused.stderr
        cloud.openstack("volume", "attachment", "delete", made["ID"], cloud="kilonova-demo")
        assert conn.block_storage.get_volume(volume.id).status == "available"
        gone = cloud.openstack("volume", "attachment", "show", made["ID"], cloud="kilonova-demo", check=False)
        assert gone.returncode != 0 and "could not be found" in gone.stderr
    finally:
        _cleanup(conn, volume)


def test_reserve_update_and_refusals_with_sdk(cloud, attach_server):
    conn = cloud.sdk("kilonova-demo")
    admin = cloud.sdk()
    volume = _volume(conn, "att-sdk")
    try:
        reserved = conn.block_storage.create_attachment(volume.id, instance=attach_server.id)
        assert reserved.status == "reserved" and conn.block_storage.get_volume(volume.id).status == "reserved"
        with pytest.raises(sdk_exc.BadRequestException) as taken:
            conn.block_storage.create_attachment(volume.id, instance=str(uuid.uuid4()))
        assert "Invalid volume" in str(taken.value) and "status must be available" in str(taken.value)
        updated = conn.block_storage.update_attachment(reserved, connector={
            "ip": "127.0.0.1", "host": "compute2", "mountpoint": "/dev/vdc", "multipath": False})
        assert updated.connection_info["data"]["access_mode"] == "rw"
        conn.block_storage.complete_attachment(reserved)
        assert conn.block_storage.get_attachment(reserved.id).status == "attached"
        with pytest.raises(sdk_exc.BadRequestException):
            conn.block_storage.delete_volume(volume, force=False)
        # another project sees neither the attachment nor the volume
        other = member_of_new_project(cloud, "att-other")[2]
        with pytest.raises(sdk_exc.NotFoundException):
            other.block_storage.get_attachment(reserved.id)
        with pytest.raises(sdk_exc.NotFoundException):
            other.block_storage.create_attachment(volume.id, instance=str(uuid.uuid4()))
        assert admin.block_storage.get_attachment(reserved.id).volume_id == volume.id   # admins see all
        conn.block_storage.delete_attachment(reserved)
        assert conn.block_storage.get_volume(volume.id).status == "available"
    finally:
        _cleanup(conn, volume)


def test_multiattach_type_with_cli(cloud, attach_server):
    cloud.openstack("volume", "type", "create", "--property", "multiattach=<is> True", "multiattach")
    conn = cloud.sdk("kilonova-demo")
    volume = None
    try:
        volume = conn.block_storage.create_volume(size=1, name="shared", volume_type="multiattach")
        volume = conn.block_storage.wait_for_status(volume, "available", wait=30, interval=0.2)
        assert volume.is_multiattach is True
        first = conn.block_storage.create_attachment(volume.id, instance=attach_server.id,
                                                     connector={"ip": "127.0.0.1", "host": "compute1"})
        conn.block_storage.complete_attachment(first)
        second = conn.block_storage.create_attachment(volume.id, instance=str(uuid.uuid4()),
                                                      connector={"ip": "127.0.0.1", "host": "compute2"})
        conn.block_storage.complete_attachment(second)
        shown = cloud.openstack("volume", "show", volume.id, cloud="kilonova-demo", fmt_json=True)
        assert shown["status"] == "in-use" and shown["multiattach"] is True and len(shown["attachments"]) == 2
        for attachment in (first, second):
            conn.block_storage.delete_attachment(attachment)
        assert conn.block_storage.get_volume(volume.id).status == "available"
    finally:
        if volume is not None:
            _cleanup(conn, volume)
            conn.block_storage.wait_for_delete(volume, wait=30, interval=0.2)
        cloud.openstack("volume", "type", "delete", "multiattach")
