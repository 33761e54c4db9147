"""Volumes on servers (os-volume_attachments) through the real `openstack` CLI, openstacksdk and HTTP: attach,
list, show, detach, the volume service's view (status, attachments), the guest's, instance actions,
microversions (tag, delete_on_termination, attachment_id), swap and update, a server delete, and the
bad-input cases (an in-use volume, the wrong server, another project's volume, states, policy)."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.cloud import wait_for

DEMO = "kilonova-demo"


def _v(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


def _cli(cloud, *args, **kwargs):
    return cloud.openstack(*args, cloud=DEMO, **kwargs)


_CONNECTIONS: dict = {}


def _sdk(cloud, name: str = DEMO):
    """One openstacksdk connection per cloud name for the module (each login costs a token)."""
    if (id(cloud), name) not in _CONNECTIONS:
        _CONNECTIONS[(id(cloud), name)] = cloud.sdk(name)
    return _CONNECTIONS[(id(cloud), name)]


def _volume(cloud, size: int = 1, cloud_name: str = DEMO):
    conn = _sdk(cloud, cloud_name)
    volume = conn.block_storage.create_volume(size=size, name=f"vol-{uuid.uuid4().hex[:6]}")
    return conn.block_storage.wait_for_status(volume, "available", failures=["error"], interval=0.2, wait=60)


def _status(cloud, volume_id: str, wanted: str, cloud_name: str = DEMO):
    conn = _sdk(cloud, cloud_name)
    return wait_for(lambda: (v := conn.block_storage.get_volume(volume_id)).status == wanted and v,
                    f"volume {volume_id} {wanted}", timeout=30)


def _server(cloud, name: str) -> dict:
    conn = _sdk(cloud)
    server = conn.compute.create_server(name=name, flavor_id="1", image_id=conn.image.find_image("kilonova-tiny").id,
                                        networks=[{"uuid": conn.network.find_network("private").id}])
    conn.compute.wait_for_server(server, interval=0.2, wait=60)
    return {"id": server.id, "name": name}


def _console(cloud, server_id: str) -> str:
    return _sdk(cloud).compute.get_server_console_output(server_id)["output"]


@pytest.fixture(scope="module", autouse=True)
def attachments_api(cloud):
    """The volume service must offer the attachments API with os-complete (3.44) that these calls use."""
    with cloud.http("block-storage", None) as volume:
        document = volume.get("/").json()["versions"][0]
    major, minor = (int(x) for x in document["version"].split("."))
    if (major, minor) < (3, 44):
        pytest.skip(f"the volume service offers microversions up to {document['version']}: the attachments "
                    "API with os-complete (3.44) is missing")


@pytest.fixture(scope="module")
def vm(cloud):
    server = _server(cloud, f"vm-vol-{uuid.uuid4().hex[:6]}")
    yield server
    _sdk(cloud).compute.delete_server(server["id"], ignore_missing=True)


@pytest.fixture(scope="module")
def other_vm(cloud):
    server = _server(cloud, f"vm-vol2-{uuid.uuid4().hex[:6]}")
    yield server
    _sdk(cloud).compute.delete_server(server["id"], ignore_missing=True)


def test_add_list_and_remove_volume_with_cli(cloud, vm):
    volume = _volume(cloud)
    try:
        _cli(cloud, "server", "add", "volume", vm["name"], volume.name)
        in_use = _status(cloud, volume.id, "in-use")
        assert [a["server_id"] for a in in_use.attachments] == [vm["id"]]
        listed = _cli(cloud, "server", "volume", "list", vm["name"], fmt_json=True)
        assert [(v["Volume ID"], v["Device"], v["Server ID"]) for v in listed] == [(volume.id, "/dev/vdb", vm["id"])]
        shown = _sdk(cloud).compute.get_server(vm["id"])
        assert [v["id"] for v in shown.attached_volumes] == [volume.id]
        assert f"/dev/vdb: volume {volume.id} attached" in _console(cloud, vm["id"])
        _cli(cloud, "server", "remove", "volume", vm["name"], volume.name)
        available = _status(cloud, volume.id, "available")
        assert available.attachments == []
        assert list(_sdk(cloud).compute.volume_attachments(vm["id"])) == []
        assert f"/dev/vdb: volume {volume.id} detached" in _console(cloud, vm["id"])
        actions = [a.action for a in _sdk(cloud).compute.server_actions(vm["id"])]
        assert "attach_volume" in actions and "detach_volume" in actions
    finally:
        _sdk(cloud).block_storage.delete_volume(volume.id, ignore_missing=True)


def test_microversions_tag_delete_on_termination_and_update(cloud, vm):
    volume = _volume(cloud)
    try:
        with cloud.http("compute", DEMO) as compute:
            url = f"/servers/{vm['id']}/os-volume_attachments"
            made = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id, "tag": "data",
                                                                "delete_on_termination": True}}, headers=_v("2.79"))
            assert made.status_code == 200, made.text
            assert made.json()["volumeAttachment"] == {"id": volume.id, "serverId": vm["id"], "volumeId": volume.id,
                                                       "device": "/dev/vdb", "tag": "data",
                                                       "delete_on_termination": True}
            _status(cloud, volume.id, "in-use")
            old = compute.get(f"{url}/{volume.id}", headers=_v("2.1")).json()["volumeAttachment"]
            assert old == {"id": volume.id, "serverId": vm["id"], "volumeId": volume.id, "device": "/dev/vdb"}
            new = compute.get(f"{url}/{volume.id}", headers=_v("2.89")).json()["volumeAttachment"]
            attachment_id = _sdk(cloud).block_storage.get_volume(volume.id).attachments[0]["attachment_id"]
            assert new["attachment_id"] == attachment_id and "id" not in new and len(new["bdm_uuid"]) == 36
            assert (new["tag"], new["delete_on_termination"]) == ("data", True)
            # The tag needs 2.49, delete_on_termination 2.79: unknown before, a 400.
            for version, extra in (("2.48", {"tag": "x"}), ("2.78", {"delete_on_termination": True})):
                refused = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id, **extra}},
                                       headers=_v(version))
                assert refused.status_code == 400, refused.text
            # 2.85: PUT changes delete_on_termination; the device and tag are not mutable.
            put = compute.put(f"{url}/{volume.id}", json={"volumeAttachment": {
                "volumeId": volume.id, "delete_on_termination": False}}, headers=_v("2.85"))
            assert put.status_code == 202, put.text
            assert compute.get(f"{url}/{volume.id}", headers=_v("2.79")).json()["volumeAttachment"][
                "delete_on_termination"] is False
            fixed = compute.put(f"{url}/{volume.id}", json={"volumeAttachment": {
                "volumeId": volume.id, "device": "/dev/vdq"}}, headers=_v("2.85"))
            assert fixed.status_code == 400 and "The device property is not mutable" in fixed.text
            # Before 2.85 a PUT is a swap: an admin's only (403 to the project's member).
            swap = compute.put(f"{url}/{volume.id}", json={"volumeAttachment": {"volumeId": volume.id}})
            assert swap.status_code == 403, swap.text
        _cli(cloud, "server", "remove", "volume", vm["name"], volume.id)
        _status(cloud, volume.id, "available")
        with cloud.http("compute", DEMO) as compute:  # 2.101: the attach is accepted (202), then done
            accepted = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id}}, headers=_v("2.101"))
            assert accepted.status_code == 202 and accepted.json()["volumeAttachment"]["volumeId"] == volume.id
        _status(cloud, volume.id, "in-use")
        _cli(cloud, "server", "remove", "volume", vm["name"], volume.id)
        _status(cloud, volume.id, "available")
    finally:
        _sdk(cloud).block_storage.delete_volume(volume.id, ignore_missing=True)


def test_bad_input(cloud, vm, other_vm):
    volume, admins = _volume(cloud), _volume(cloud, cloud_name="kilonova")
    try:
        with cloud.http("compute", DEMO) as compute:
            url = f"/servers/{vm['id']}/os-volume_attachments"
            unknown = str(uuid.uuid4())
            missing = compute.post(url, json={"volumeAttachment": {"volumeId": unknown}})
            assert missing.status_code == 404 and f"Volume {unknown} could not be found." in missing.text
            # Another project's volume: the caller cannot see it, a 404 as upstream's.
            theirs = compute.post(url, json={"volumeAttachment": {"volumeId": admins.id}})
            assert theirs.status_code == 404, theirs.text
            bad_device = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id, "device": "vdb"}})
            assert bad_device.status_code == 400, bad_device.text
            assert compute.post(url, json={"volumeAttachment": {}}).status_code == 400
            assert compute.post(url, json={"volumeAttachment": {"volumeId": "not-a-uuid"}}).status_code == 400
            made = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id, "device": "/dev/vdc"}})
            assert made.status_code == 200 and made.json()["volumeAttachment"]["device"] == "/dev/vdc"
            _status(cloud, volume.id, "in-use")
            # The same volume again: 400; on another server: in use, the volume service's 400.
            again = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id}})
            assert again.status_code == 400 and "already attached" in again.text
            elsewhere = compute.post(f"/servers/{other_vm['id']}/os-volume_attachments",
                                     json={"volumeAttachment": {"volumeId": volume.id}})
            assert elsewhere.status_code == 400, elsewhere.text
            # A device the server already uses: 409.
            second = _volume(cloud)
            try:
                taken = compute.post(url, json={"volumeAttachment": {"volumeId": second.id, "device": "/dev/vdc"}})
                assert taken.status_code == 409 and "/dev/vdc" in taken.text
            finally:
                _sdk(cloud).block_storage.delete_volume(second.id, ignore_missing=True)
            # Detach from the wrong server, or one that is not attached: 404.
            wrong = compute.delete(f"/servers/{other_vm['id']}/os-volume_attachments/{volume.id}")
            assert wrong.status_code == 404
            assert f"Instance {other_vm['id']} is not attached to volume {volume.id}" in wrong.text
            assert compute.get(f"/servers/{other_vm['id']}/os-volume_attachments/{volume.id}").status_code == 404
            assert compute.delete(f"{url}/{unknown}").status_code == 404
            # Deleting an attached volume is the volume service's 400.
            in_use = _sdk(cloud).block_storage
            with pytest.raises(Exception):
                in_use.delete_volume(volume.id)
            assert compute.delete(f"{url}/{volume.id}").status_code == 202
        _status(cloud, volume.id, "available")
    finally:
        _sdk(cloud).block_storage.delete_volume(volume.id, ignore_missing=True)
        _sdk(cloud, "kilonova").block_storage.delete_volume(admins.id, ignore_missing=True)


def test_state_rules_and_swap(cloud, vm):
    volume, replacement = _volume(cloud), _volume(cloud, size=2)
    conn = _sdk(cloud)
    try:
        conn.compute.lock_server(vm["id"])
        with cloud.http("compute", DEMO) as compute:
            url = f"/servers/{vm['id']}/os-volume_attachments"
            locked = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id}})
            assert locked.status_code == 409 and "is locked" in locked.text
        conn.compute.unlock_server(vm["id"])
        conn.compute.pause_server(vm["id"])
        conn.compute.wait_for_server(conn.compute.get_server(vm["id"]), status="PAUSED", interval=0.2, wait=30)
        conn.compute.create_volume_attachment(vm["id"], volume_id=volume.id)   # a paused server takes it
        _status(cloud, volume.id, "in-use")
        conn.compute.unpause_server(vm["id"])
        conn.compute.wait_for_server(conn.compute.get_server(vm["id"]), status="ACTIVE", interval=0.2, wait=30)
        # An admin swaps it for a larger one: the new one in its place, the old one available again.
        with cloud.http("compute") as admin:
            swapped = admin.put(f"/servers/{vm['id']}/os-volume_attachments/{volume.id}",
                                json={"volumeAttachment": {"volumeId": replacement.id}})
            assert swapped.status_code == 202, swapped.text
        _status(cloud, volume.id, "available")
        _status(cloud, replacement.id, "in-use")
        assert [a.volume_id for a in conn.compute.volume_attachments(vm["id"])] == [replacement.id]
        assert f"swapped to volume {replacement.id}" in _console(cloud, vm["id"])
        assert "swap_volume" in [a.action for a in conn.compute.server_actions(vm["id"])]
        conn.compute.delete_volume_attachment(vm["id"], replacement.id)
        _status(cloud, replacement.id, "available")
    finally:
        for v in (volume, replacement):
            conn.block_storage.delete_volume(v.id, ignore_missing=True)


def test_server_delete_detaches_and_deletes_on_termination(cloud):
    server = _server(cloud, f"vm-vold-{uuid.uuid4().hex[:6]}")
    kept, gone = _volume(cloud), _volume(cloud)
    conn = _sdk(cloud)
    try:
        conn.compute.create_volume_attachment(server["id"], volume_id=kept.id)
        _cli(cloud, "server", "add", "volume", "--enable-delete-on-termination", "--os-compute-api-version", "2.79",
             server["name"], gone.id)
        _status(cloud, kept.id, "in-use")
        _status(cloud, gone.id, "in-use")
        conn.compute.delete_server(server["id"])
        conn.compute.wait_for_delete(conn.compute.get_server(server["id"]), interval=0.2, wait=60)
        _status(cloud, kept.id, "available")
        wait_for(lambda: conn.block_storage.find_volume(gone.id) is None, "the delete_on_termination volume gone")
    finally:
        for v in (kept, gone):
            conn.block_storage.delete_volume(v.id, ignore_missing=True)


# ---------------------------------------------------------------- block_device_mapping_v2 at create

def _boot(compute, name: str, mappings: list[dict], image_ref: str = "", networks="none", version="2.67"):
    body = {"server": {"name": name, "flavorRef": "1", "imageRef": image_ref, "networks": networks,
                       "block_device_mapping_v2": mappings}}
    return compute.post("/servers", json=body, headers=_v(version))


def test_boot_from_an_existing_volume(cloud):
    conn = _sdk(cloud)
    volume = _volume(cloud)
    try:
        with cloud.http("compute", DEMO) as compute:
            made = _boot(compute, f"bfv-{uuid.uuid4().hex[:6]}", [{
                "uuid": volume.id, "source_type": "volume", "destination_type": "volume", "boot_index": 0}])
            assert made.status_code == 202, made.text
            server_id = made.json()["server"]["id"]
            server = conn.compute.wait_for_server(conn.compute.get_server(server_id), interval=0.2, wait=60)
            # No image, the volume as its root disk, in use by it; no local root disk claimed in Placement.
            assert not server.image.get("id") and [v["id"] for v in server.attached_volumes] == [volume.id]
            assert _status(cloud, volume.id, "in-use").attachments[0]["server_id"] == server_id
            assert f"from volume {volume.id}" in _console(cloud, server_id)
            attachment = compute.get(f"/servers/{server_id}/os-volume_attachments/{volume.id}").json()
            assert attachment["volumeAttachment"]["device"] == "/dev/vda"
            with cloud.http("placement") as placement:
                claimed = placement.get(f"/allocations/{server_id}").json()["allocations"]
            assert [sorted(a["resources"]) for a in claimed.values()] == [["MEMORY_MB", "VCPU"]]
            root = compute.delete(f"/servers/{server_id}/os-volume_attachments/{volume.id}")
            assert root.status_code == 400 and "Cannot detach a root device volume" in root.text
            image_id = conn.image.find_image("kilonova-tiny").id
            rebuild = compute.post(f"/servers/{server_id}/action", json={"rebuild": {"imageRef": image_id}})
            assert rebuild.status_code == 400, rebuild.text
            assert "Unable to rebuild with a different image for a volume-backed server." in rebuild.text
            # From 2.93 upstream reimages the root volume: refused here with the reason, whatever the image.
            reimage = compute.post(f"/servers/{server_id}/action", json={"rebuild": {"imageRef": image_id}},
                                   headers={"OpenStack-API-Version": "compute 2.93"})
            assert reimage.status_code == 400 and "microversion 2.93" in reimage.text
        conn.compute.delete_server(server_id)
        conn.compute.wait_for_delete(server, interval=0.2, wait=60)
        _status(cloud, volume.id, "available")   # not delete_on_termination: kept
    finally:
        conn.block_storage.delete_volume(volume.id, ignore_missing=True)


def test_blank_volume_at_create_goes_with_the_server(cloud):
    conn = _sdk(cloud)
    image_id = conn.image.find_image("kilonova-tiny").id
    with cloud.http("compute", DEMO) as compute:
        made = _boot(compute, f"bdm-{uuid.uuid4().hex[:6]}", [
            {"uuid": image_id, "source_type": "image", "destination_type": "local", "boot_index": 0},
            {"source_type": "blank", "destination_type": "volume", "volume_size": 1, "boot_index": -1,
             "delete_on_termination": True}], image_ref=image_id)
        assert made.status_code == 202, made.text
    server = conn.compute.wait_for_server(conn.compute.get_server(made.json()["server"]["id"]), interval=0.2,
                                          wait=60)
    (attached,) = server.attached_volumes
    assert attached["delete_on_termination"] is True and server.image["id"] == image_id
    assert _status(cloud, attached["id"], "in-use").size == 1
    assert f"/dev/vdb: volume {attached['id']} attached" in _console(cloud, server.id)
    conn.compute.delete_server(server.id)
    conn.compute.wait_for_delete(server, interval=0.2, wait=60)
    wait_for(lambda: conn.block_storage.find_volume(attached["id"]) is None, "the server's blank volume deleted")


def test_bad_block_device_mappings(cloud, vm):
    conn = _sdk(cloud)
    image_id = conn.image.find_image("kilonova-tiny").id
    in_use = _volume(cloud)
    try:
        conn.compute.create_volume_attachment(vm["id"], volume_id=in_use.id)
        _status(cloud, in_use.id, "in-use")
        unknown = str(uuid.uuid4())
        cases = [
            ([{"uuid": unknown, "source_type": "volume", "destination_type": "volume", "boot_index": 0}], "",
             f"Block Device Mapping is Invalid: failed to get volume {unknown}."),
            ([{"uuid": in_use.id, "source_type": "volume", "destination_type": "volume", "boot_index": 0}], "",
             f"volume '{in_use.id}' status must be 'available'"),
            ([{"uuid": image_id, "source_type": "image", "destination_type": "volume", "boot_index": 0}], "",
             "Images with destination_type 'volume' need to have a non-zero size specified"),
            ([{"source_type": "blank", "destination_type": "volume", "volume_size": 1, "boot_index": 1}], image_id,
             "Boot sequence for the instance and image/block device mapping combination is not valid."),
            ([], "", "Boot sequence for the instance and image/block device mapping combination is not valid."),
            ([{"source_type": "blank", "destination_type": "local", "volume_size": 1, "boot_index": -1}], image_id,
             "extra local, ephemeral or swap disks are not supported yet"),
        ]
        with cloud.http("compute", DEMO) as compute:
            for mappings, image_ref, words in cases:
                refused = _boot(compute, "bad-bdm", mappings, image_ref=image_ref)
                assert refused.status_code == 400 and words in refused.json()["badRequest"]["message"], refused.text
        assert not [s for s in conn.compute.servers() if s.name == "bad-bdm"]
        conn.compute.delete_volume_attachment(vm["id"], in_use.id)
        _status(cloud, in_use.id, "available")
    finally:
        conn.block_storage.delete_volume(in_use.id, ignore_missing=True)


def test_boot_from_volume_with_the_cli(cloud):
    """``openstack server create --boot-from-volume``: a volume made from the image by the volume service."""
    conn = _sdk(cloud)
    try:
        probe = conn.block_storage.create_volume(size=1, image_id=conn.image.find_image("kilonova-tiny").id)
    except Exception as exc:  # noqa: BLE001 - the volume service's refusal says what it lacks
        pytest.skip(f"the volume service cannot make a volume from an image yet: {exc}")
    # made from the image after the 202 (downloading): deletable once it is available or in error
    conn.block_storage.wait_for_status(probe, "available", failures=["error"], interval=0.2, wait=60)
    conn.block_storage.delete_volume(probe.id, ignore_missing=True)
    name = f"bfv-cli-{uuid.uuid4().hex[:6]}"
    created = _cli(cloud, "server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                   "--boot-from-volume", "1", "--network", "private", name, fmt_json=True)
    server = conn.compute.wait_for_server(conn.compute.get_server(created["id"]), interval=0.2, wait=120)
    (root,) = server.attached_volumes
    volume = _status(cloud, root["id"], "in-use")
    assert volume.is_bootable and volume.size == 1
    conn.compute.delete_server(server.id)
    conn.compute.wait_for_delete(server, interval=0.2, wait=60)
    _status(cloud, root["id"], "available")  # the CLI's default: the boot volume is kept
    conn.block_storage.delete_volume(root["id"], ignore_missing=True)


def test_os_volumes_and_os_snapshots_proxies_until_2_35(cloud, vm):
    with cloud.http("compute", DEMO) as compute:
        made = compute.post("/os-volumes", json={"volume": {"size": 1, "display_name": "proxied",
                                                             "display_description": "via nova"}})
        assert made.status_code == 200, made.text
        volume = made.json()["volume"]
        assert (volume["size"], volume["displayName"], volume["displayDescription"], volume["attachments"]) == \
            (1, "proxied", "via nova", [{}])
        assert made.headers["Location"].endswith(f"/os-volumes/{volume['id']}")
        _status(cloud, volume["id"], "available")
        listed = compute.get("/os-volumes/detail").json()["volumes"]
        assert volume["id"] in [v["id"] for v in listed]
        assert [v["id"] for v in compute.get("/os-volumes", params={"limit": 1}).json()["volumes"]].__len__() == 1
        _sdk(cloud).compute.create_volume_attachment(vm["id"], volume_id=volume["id"])
        _status(cloud, volume["id"], "in-use")
        shown = compute.get(f"/os-volumes/{volume['id']}").json()["volume"]
        assert shown["status"] == "in-use" and shown["attachments"] == [
            {"id": volume["id"], "volumeId": volume["id"], "serverId": vm["id"], "device": "/dev/vdb"}]
        # force is upstream's strict boolean: 't' is refused by the schema, before the volume service is asked.
        assert compute.post("/os-snapshots", json={"snapshot": {"volume_id": volume["id"], "force": "t"}}
                            ).status_code == 400
        snap = compute.post("/os-snapshots", json={"snapshot": {"volume_id": volume["id"], "force": True,
                                                                 "display_name": "snap"}})
        assert snap.status_code == 200, snap.text
        snapshot = snap.json()["snapshot"]
        assert (snapshot["volumeId"], snapshot["displayName"], snapshot["size"]) == (volume["id"], "snap", 1)
        assert snapshot["id"] in [s["id"] for s in compute.get("/os-snapshots").json()["snapshots"]]
        wait_for(lambda: compute.get(f"/os-snapshots/{snapshot['id']}").json()["snapshot"]["status"] == "available",
                 "the snapshot available")
        assert compute.delete(f"/os-snapshots/{snapshot['id']}").status_code == 202
        wait_for(lambda: compute.get(f"/os-snapshots/{snapshot['id']}").status_code == 404, "the snapshot gone")
        # Gone from 2.36, as upstream's proxies; another project's volume is the volume service's 404.
        assert compute.get("/os-volumes", headers=_v("2.36")).status_code == 404
        assert compute.get(f"/os-volumes/{uuid.uuid4()}").status_code == 404
        assert compute.post("/os-volumes", json={"volume": {}}).status_code == 400
        _sdk(cloud).compute.delete_volume_attachment(vm["id"], volume["id"])
        _status(cloud, volume["id"], "available")
        assert compute.delete(f"/os-volumes/{volume['id']}").status_code == 202
        wait_for(lambda: compute.get(f"/os-volumes/{volume['id']}").status_code == 404, "the volume gone")


def test_a_server_that_cannot_be_placed_gives_its_volumes_back(cloud):
    conn, admin = _sdk(cloud), _sdk(cloud, "kilonova")
    flavor = admin.compute.create_flavor(name=f"nowhere-{uuid.uuid4().hex[:6]}", ram=64, vcpus=1, disk=1)
    admin.compute.create_flavor_extra_specs(flavor, {"trait:CUSTOM_NO_HOST_HAS_IT": "required"})
    existing = _volume(cloud)
    try:
        with cloud.http("compute", DEMO) as compute:
            body = {"server": {"name": "unplaceable", "flavorRef": flavor.id, "imageRef": "", "networks": "none",
                               "block_device_mapping_v2": [
                                   {"uuid": existing.id, "source_type": "volume", "destination_type": "volume",
                                    "boot_index": 0},
                                   {"source_type": "blank", "destination_type": "volume", "volume_size": 1,
                                    "boot_index": -1}]}}
            made = compute.post("/servers", json=body, headers=_v("2.67"))
            assert made.status_code == 202, made.text
        server = conn.compute.wait_for_server(conn.compute.get_server(made.json()["server"]["id"]), status="ERROR",
                                              interval=0.2, wait=60)
        assert "No valid host" in server.fault["message"]
        # The volume it was given is free again; the blank one made for it is gone.
        _status(cloud, existing.id, "available")
        wait_for(lambda: not [v for v in conn.block_storage.volumes() if v.name == "unplaceable-volume"],
                 "the blank volume made for it deleted")
        conn.compute.delete_server(server.id)
    finally:
        conn.block_storage.delete_volume(existing.id, ignore_missing=True)
        admin.compute.delete_flavor(flavor.id)


def test_a_multiattach_volume_needs_2_60(cloud, vm):
    admin, conn = _sdk(cloud, "kilonova"), _sdk(cloud)
    vtype = admin.block_storage.create_type(name=f"multi-{uuid.uuid4().hex[:6]}",
                                            extra_specs={"multiattach": "<is> True"})
    volume = conn.block_storage.wait_for_status(conn.block_storage.create_volume(size=1, volume_type=vtype.name),
                                                "available", interval=0.2, wait=60)
    try:
        with cloud.http("compute", DEMO) as compute:
            url = f"/servers/{vm['id']}/os-volume_attachments"
            old = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id}}, headers=_v("2.59"))
            assert old.status_code == 400 and "starting with compute API version 2.60" in old.text
            new = compute.post(url, json={"volumeAttachment": {"volumeId": volume.id}}, headers=_v("2.60"))
            assert new.status_code == 200, new.text
        _status(cloud, volume.id, "in-use")
        conn.compute.delete_volume_attachment(vm["id"], volume.id)
        _status(cloud, volume.id, "available")
    finally:
        conn.block_storage.delete_volume(volume.id, ignore_missing=True)
        wait_for(lambda: conn.block_storage.find_volume(volume.id) is None, "the volume gone")
        admin.block_storage.delete_type(vtype)


def test_volumes_follow_a_shelved_server(cloud):
    conn = _sdk(cloud)
    server = _server(cloud, f"vm-shelve-{uuid.uuid4().hex[:6]}")
    first, second = _volume(cloud), _volume(cloud)
    try:
        conn.compute.create_volume_attachment(server["id"], volume_id=first.id)
        _status(cloud, first.id, "in-use")
        conn.compute.shelve_server(server["id"])   # offloaded at once (shelved_offload_time 0)
        conn.compute.wait_for_server(conn.compute.get_server(server["id"]), status="SHELVED_OFFLOADED",
                                     interval=0.2, wait=60)
        # Off its host the volume stays the server's, connected nowhere (reserved), as upstream.
        _status(cloud, first.id, "reserved")
        with cloud.http("compute", DEMO) as compute:
            url = f"/servers/{server['id']}/os-volume_attachments"
            before = compute.post(url, json={"volumeAttachment": {"volumeId": second.id}}, headers=_v("2.19"))
            assert before.status_code == 409 and "vm_state shelved_offloaded" in before.text
            made = compute.post(url, json={"volumeAttachment": {"volumeId": second.id}}, headers=_v("2.20"))
            assert made.status_code == 200, made.text
        assert {a.volume_id for a in conn.compute.volume_attachments(server["id"])} == {first.id, second.id}
        conn.compute.unshelve_server(server["id"])
        conn.compute.wait_for_server(conn.compute.get_server(server["id"]), status="ACTIVE", interval=0.2, wait=60)
        _status(cloud, first.id, "in-use")
        _status(cloud, second.id, "in-use")
        console = _console(cloud, server["id"])
        assert f"volume {first.id} attached" in console and f"volume {second.id} attached" in console
        for volume in (first, second):
            conn.compute.delete_volume_attachment(server["id"], volume.id)
            _status(cloud, volume.id, "available")
    finally:
        conn.compute.delete_server(server["id"], ignore_missing=True)
        for volume in (first, second):
            wait_for(lambda v=volume: conn.block_storage.get_volume(v.id).status == "available", "detached")
            conn.block_storage.delete_volume(volume.id, ignore_missing=True)


def test_the_audit_finds_attachments_nova_and_the_volume_service_disagree_on(cloud, vm):
    conn = _sdk(cloud)
    attached, stray_volume = _volume(cloud), _volume(cloud)
    try:
        conn.compute.create_volume_attachment(vm["id"], volume_id=attached.id)
        _status(cloud, attached.id, "in-use")
        clean = cloud.manage("volume_attachment", "audit", check=False)
        assert attached.id not in clean.stdout and vm["id"] not in clean.stdout, clean.stdout
        # An attachment made behind Nova's back, for a server that does not have it.
        nobody = str(uuid.uuid4())
        with cloud.http("block-storage", DEMO) as volumes:
            made = volumes.post(f"/v3/{conn.current_project_id}/attachments",
                                headers={"OpenStack-API-Version": "volume 3.44"},
                                json={"attachment": {"volume_uuid": stray_volume.id, "instance_uuid": nobody}})
            assert made.status_code == 200, made.text
            stray = made.json()["attachment"]["id"]
            found = cloud.manage("volume_attachment", "audit", check=False)
            assert found.returncode == 3, found.stdout
            assert f"attachment {stray} of volume {stray_volume.id} (reserved) names server {nobody}, which does " \
                   "not hold it" in found.stdout
            assert vm["id"] not in found.stdout
            assert volumes.delete(f"/v3/{conn.current_project_id}/attachments/{stray}",
                                  headers={"OpenStack-API-Version": "volume 3.44"}).status_code == 200
        assert stray not in cloud.manage("volume_attachment", "audit", check=False).stdout
        conn.compute.delete_volume_attachment(vm["id"], attached.id)
        _status(cloud, attached.id, "available")
    finally:
        for volume in (attached, stray_volume):
            conn.block_storage.delete_volume(volume.id, ignore_missing=True)


def test_an_attached_volume_extended_grows_in_the_guest(cloud, vm):
    """The volume service extends an in-use volume (3.42) and tells Nova (volume-extended); the guest sees it."""
    conn = _sdk(cloud)
    volume = _volume(cloud)
    try:
        conn.compute.create_volume_attachment(vm["id"], volume_id=volume.id)
        _status(cloud, volume.id, "in-use")
        with cloud.http("block-storage", DEMO) as volumes:
            extended = volumes.post(f"/v3/{conn.current_project_id}/volumes/{volume.id}/action",
                                    json={"os-extend": {"new_size": 2}},
                                    headers={"OpenStack-API-Version": "volume 3.42"})
            assert extended.status_code == 202, extended.text
        wait_for(lambda: f"volume {volume.id} extended to 2 GiB" in _console(cloud, vm["id"]),
                 "the guest told of the new size")
        assert _status(cloud, volume.id, "in-use").size == 2
        conn.compute.delete_volume_attachment(vm["id"], volume.id)
        _status(cloud, volume.id, "available")
    finally:
        conn.block_storage.delete_volume(volume.id, ignore_missing=True)


def test_an_image_of_a_volume_backed_server_boots_a_copy(cloud):
    """createImage of a volume-backed server: a snapshot of its volume and an image pointing at it (no data);
    a server booted from that image gets a volume made from the snapshot as its root disk."""
    conn = _sdk(cloud)
    volume = _volume(cloud)
    made_ids: dict[str, str] = {}
    try:
        with cloud.http("compute", DEMO) as compute:
            made = _boot(compute, f"bfv-img-{uuid.uuid4().hex[:6]}", [{
                "uuid": volume.id, "source_type": "volume", "destination_type": "volume", "boot_index": 0}])
            server = conn.compute.wait_for_server(conn.compute.get_server(made.json()["server"]["id"]),
                                                  interval=0.2, wait=60)
            snap = compute.post(f"/servers/{server.id}/action", json={"createImage": {"name": "bfv-snap"}},
                                headers=_v("2.45"))
            assert snap.status_code == 202, snap.text
            made_ids["image"] = snap.json()["image_id"]
            image = conn.image.get_image(made_ids["image"])
            assert image.status == "active" and image.size == 0
            (mapping,) = json.loads(image.properties["block_device_mapping"])
            assert (mapping["source_type"], mapping["boot_index"], mapping["volume_size"]) == ("snapshot", 0, 1)
            made_ids["snapshot"] = mapping["snapshot_id"]
            assert conn.block_storage.get_snapshot(mapping["snapshot_id"]).volume_id == volume.id
            assert [a.action for a in conn.compute.server_actions(server.id)].count("createImage") == 1
            copy = compute.post("/servers", json={"server": {"name": "bfv-copy", "flavorRef": "1",
                                                             "imageRef": made_ids["image"], "networks": "none"}},
                                headers=_v("2.37"))
            assert copy.status_code == 202, copy.text
        booted = conn.compute.wait_for_server(conn.compute.get_server(copy.json()["server"]["id"]), interval=0.2,
                                              wait=60)
        (root,) = booted.attached_volumes
        made_ids["copy_volume"] = root["id"]
        copied = _status(cloud, root["id"], "in-use")
        assert copied.snapshot_id == made_ids["snapshot"] and root["id"] != volume.id
        for s in (booted, server):
            conn.compute.delete_server(s.id)
            conn.compute.wait_for_delete(s, interval=0.2, wait=60)
    finally:
        conn.image.delete_image(made_ids.get("image"), ignore_missing=True) if made_ids.get("image") else None
        for volume_id in (made_ids.get("copy_volume"),):
            if volume_id:
                wait_for(lambda: conn.block_storage.get_volume(volume_id).status != "in-use", "detached")
                conn.block_storage.delete_volume(volume_id, ignore_missing=True)
        if made_ids.get("snapshot"):
            conn.block_storage.delete_snapshot(made_ids["snapshot"], ignore_missing=True)
            wait_for(lambda: conn.block_storage.find_snapshot(made_ids["snapshot"]) is None, "the snapshot gone")
        wait_for(lambda: conn.block_storage.get_volume(volume.id).status == "available", "the volume detached")
        conn.block_storage.delete_volume(volume.id, ignore_missing=True)
