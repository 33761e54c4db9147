"""Volume actions in-process: the attach calls before the attachments API, force delete and cascade,
reset-status, bootable and read-only flags, extend while attached (3.42) with the server told; the
backend's capacity check (Cinder's scheduler) and its user message; an image written into a volume."""
import subprocess
import uuid

import httpx
import pytest

from kilonova.volume import repo
from kilonova.volume.images import ImageError
from tests.unit.test_volume_api import ADMIN, ALICE, BOB, create, fault, settle, svc  # noqa: F401 (fixture)

MV = {"OpenStack-API-Version": "volume 3.71"}
CONNECTOR = {"host": "compute1", "ip": "127.0.0.1", "mountpoint": "/dev/vdb"}


@pytest.fixture(scope="module")
async def api(svc):  # noqa: F811
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://vol.test") as c:
        yield c


def act(api, volume_id, body, headers=ALICE, project="p-alice"):
    return api.post(f"/v3/{project}/volumes/{volume_id}/action", json=body, headers=headers)


async def status(api, volume_id, headers=ALICE, project="p-alice"):
    return (await api.get(f"/v3/{project}/volumes/{volume_id}", headers={**headers, **MV})).json()["volume"]


async def test_legacy_attach_and_detach(api, svc):  # noqa: F811
    volume = await create(api, svc, name="legacy")
    vid, server = volume["id"], str(uuid.uuid4())
    assert (await act(api, vid, {"os-reserve": None})).status_code == 202
    assert (await status(api, vid))["status"] == "attaching"
    fault(await act(api, vid, {"os-reserve": None}), 400, "badRequest")
    info = await act(api, vid, {"os-initialize_connection": {"connector": CONNECTOR}})
    assert info.status_code == 200 and info.json()["connection_info"]["driver_volume_type"] == "local"
    fault(await act(api, vid, {"os-initialize_connection": {}}), 400, "badRequest")
    for bad in ({"os-attach": {"mountpoint": "/dev/vdb"}}, {"os-attach": {"instance_uuid": server}},
                {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb", "mode": "xx"}}):
        fault(await act(api, vid, bad), 400, "badRequest")
    assert (await act(api, vid, {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb",
                                               "host_name": "compute1"}})).status_code == 202
    shown = await status(api, vid)
    assert shown["status"] == "in-use" and [a["server_id"] for a in shown["attachments"]] == [server]
    assert (await act(api, vid, {"os-begin_detaching": None})).status_code == 202
    assert (await status(api, vid))["status"] == "detaching"
    assert (await act(api, vid, {"os-roll_detaching": None})).status_code == 202
    assert (await status(api, vid))["status"] == "in-use"
    assert (await act(api, vid, {"os-terminate_connection": {"connector": CONNECTOR}})).status_code == 202
    assert (await act(api, vid, {"os-detach": {"attachment_id": shown["attachments"][0]["attachment_id"]}})
            ).status_code == 202
    shown = await status(api, vid)
    assert shown["status"] == "available" and shown["attachments"] == []
    fault(await act(api, vid, {"os-begin_detaching": None}), 400, "badRequest")
    fault(await act(api, vid, {"os-reserve": None}, BOB, "p-bob"), 404, "itemNotFound")
    assert (await api.delete(f"/v3/p-alice/volumes/{vid}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_admin_actions_flags_and_deletes(api, svc):  # noqa: F811
    volume = await create(api, svc, name="admin-acts")
    vid = volume["id"]
    fault(await act(api, vid, {"os-reset_status": {"status": "error"}}), 403, "forbidden")
    fault(await act(api, vid, {"os-force_delete": {}}), 403, "forbidden")
    fault(await act(api, vid, {"os-reset_status": {"status": "bogus"}}, ADMIN, "p-admin"), 400, "badRequest")
    fault(await act(api, vid, {"os-reset_status": {}}, ADMIN, "p-admin"), 400, "badRequest")
    assert (await act(api, vid, {"os-set_bootable": {"bootable": True}})).status_code == 200
    assert (await status(api, vid))["bootable"] == "true"
    fault(await act(api, vid, {"os-set_bootable": {"bootable": "maybe"}}), 400, "badRequest")
    assert (await act(api, vid, {"os-update_readonly_flag": {"readonly": True}})).status_code == 202
    made = await api.post("/v3/p-alice/attachments", json={"attachment": {
        "volume_uuid": vid, "instance_uuid": str(uuid.uuid4()), "connector": CONNECTOR}}, headers={**ALICE, **MV})
    assert made.json()["attachment"]["connection_info"]["data"]["access_mode"] == "ro"
    # attached: neither delete nor a forced one; reset to detached drops the attachment
    await api.post(f"/v3/p-alice/attachments/{made.json()['attachment']['id']}/action",
                   json={"os-complete": None}, headers={**ALICE, **MV})
    fault(await act(api, vid, {"os-force_delete": {}}, ADMIN, "p-admin"), 400, "badRequest")
    assert (await act(api, vid, {"os-reset_status": {"status": "available", "attach_status": "detached"}},
                      ADMIN, "p-admin")).status_code == 202
    assert (await status(api, vid))["attachments"] == []
    # snapshots: only a cascade delete takes them along
    snap = await api.post("/v3/p-alice/snapshots", json={"snapshot": {"volume_id": vid}}, headers=ALICE)
    await settle(svc)
    fault(await api.delete(f"/v3/p-alice/volumes/{vid}", headers=ALICE), 400, "badRequest")
    await act(api, vid, {"os-reset_status": {"status": "error_deleting"}}, ADMIN, "p-admin")
    assert (await api.delete(f"/v3/p-alice/volumes/{vid}?cascade=true", headers=ALICE)).status_code == 400
    assert (await api.delete(f"/v3/p-admin/volumes/{vid}?cascade=true&force=true",
                             headers={**ADMIN, **MV})).status_code == 202
    await settle(svc)
    fault(await api.get(f"/v3/p-alice/snapshots/{snap.json()['snapshot']['id']}", headers=ALICE), 404,
          "itemNotFound")
    assert not svc.backend.path(vid).exists()


class Compute:
    """What the compute API was sent (os-server-external-events)."""

    def __init__(self):
        self.sent = []

    async def post(self, path, json):
        self.sent.append((path, json))
        return httpx.Response(200, json={"events": json["events"]})


async def test_extend_in_use_tells_the_server(api, svc, monkeypatch):  # noqa: F811
    compute = Compute()
    monkeypatch.setattr(svc, "compute", compute)
    volume = await create(api, svc, name="grow")
    server = str(uuid.uuid4())
    att = (await api.post("/v3/p-alice/attachments", json={"attachment": {
        "volume_uuid": volume["id"], "instance_uuid": server, "connector": CONNECTOR}},
        headers={**ALICE, **MV})).json()["attachment"]
    await api.post(f"/v3/p-alice/attachments/{att['id']}/action", json={"os-complete": None},
                   headers={**ALICE, **MV})
    old = {**ALICE, "OpenStack-API-Version": "volume 3.41"}
    fault(await act(api, volume["id"], {"os-extend": {"new_size": 2}}, old), 400, "badRequest")
    assert (await act(api, volume["id"], {"os-extend": {"new_size": 2}}, {**ALICE, **MV})).status_code == 202
    await settle(svc)
    shown = await status(api, volume["id"])
    assert (shown["status"], shown["size"]) == ("in-use", 2)
    assert svc.backend.size_gb(volume["id"]) == 2
    assert compute.sent == [("/v2.1/os-server-external-events", {"events": [
        {"name": "volume-extended", "server_uuid": server, "tag": volume["id"]}]})]
    await api.delete(f"/v3/p-alice/attachments/{att['id']}", headers={**ALICE, **MV})
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_a_volume_the_backend_cannot_hold_errors_with_cinders_message(api, svc):  # noqa: F811
    assert (await api.put("/v3/p-admin/os-quota-sets/p-admin", json={"quota_set": {"gigabytes": -1}},
                          headers=ADMIN)).status_code == 200
    made = await api.post("/v3/p-admin/volumes", json={"volume": {"size": 2 ** 31 - 1}}, headers=ADMIN)
    assert made.status_code == 202, made.text
    await settle(svc)
    vid = made.json()["volume"]["id"]
    assert (await status(api, vid, ADMIN, "p-admin"))["status"] == "error"
    assert not svc.backend.path(vid).exists()
    messages = (await api.get("/v3/p-admin/messages", headers={**ADMIN, **MV})).json()["messages"]
    mine = [m for m in messages if m["resource_uuid"] == vid]
    assert [(m["event_id"], m["user_message"]) for m in mine] == [
        ("VOLUME_VOLUME_001_003", "schedule allocate volume: Could not find any available weighted backend.")]
    fault(await api.get("/v3/p-admin/messages", headers=ADMIN), 404, "itemNotFound")   # 3.0
    fault(await api.get(f"/v3/p-bob/messages/{mine[0]['id']}", headers={**BOB, **MV}), 404, "itemNotFound")
    assert (await api.delete(f"/v3/p-admin/messages/{mine[0]['id']}", headers={**ADMIN, **MV})).status_code == 204
    assert (await api.delete(f"/v3/p-admin/volumes/{vid}", headers=ADMIN)).status_code == 202
    await settle(svc)


def _qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_images_are_written_raw_and_checked(svc, tmp_path):  # noqa: F811
    backend = svc.backend
    vid = str(uuid.uuid4())
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as handle:
        handle.truncate(64 << 20)
        handle.seek(1 << 20)
        handle.write(b"kilonova-image-marker")
    _qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(backend.image_path(vid)))
    backend.write_image(vid, 1, "qcow2")
    with open(backend.path(vid), "rb") as handle:
        handle.seek(1 << 20)
        assert handle.read(21) == b"kilonova-image-marker"
    assert backend.size_gb(vid) == 1
    backend.delete(vid)
    # declared raw but qcow2 inside: refused, as Cinder does since CVE-2024-32498 (never probed, never written)
    _qemu_img("create", "-f", "qcow2", str(backend.image_path(vid)), "2G")
    with pytest.raises(ImageError, match="does not match disk_format raw"):
        backend.write_image(vid, 1, "raw")
    assert not backend.path(vid).exists()
    # a 2 GiB image does not fit 1 GiB
    _qemu_img("create", "-f", "qcow2", str(backend.image_path(vid)), "2G")
    with pytest.raises(ImageError, match="doesn't fit"):
        backend.write_image(vid, 1, "qcow2")
    _qemu_img("create", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(backend.image_path(vid)))
    with pytest.raises(ImageError, match="backing_file"):
        backend.write_image(vid, 1, "qcow2")
    backend.delete(vid)
    assert not backend.path(vid).exists() and not backend.image_path(vid).exists()


async def test_upload_to_image_refusals_and_a_cut_upload(api, svc):  # noqa: F811
    volume = await create(api, svc, name="to-image")
    vid = volume["id"]
    for bad in ({"os-volume_upload_image": {}}, {"os-volume_upload_image": {"image_name": "x", "disk_format": "iso"}},
                {"os-volume_upload_image": {"image_name": "x", "disk_format": "ploop"}}):
        fault(await act(api, vid, bad), 400, "badRequest")
    await svc.db.write(repo.set_status, vid, "in-use")
    assert "status must be available" in fault(await act(api, vid, {"os-volume_upload_image": {"image_name": "x"}}),
                                               400, "badRequest")
    await svc.db.write(repo.set_status, vid, "uploading")      # what a stopped process left
    await svc.after_start()
    assert (await status(api, vid))["status"] == "available"
    assert (await api.delete(f"/v3/p-alice/volumes/{vid}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_retype(api, svc):  # noqa: F811
    made = await api.post("/v3/p-admin/types", json={"volume_type": {
        "name": "retype-multi", "extra_specs": {"multiattach": "<is> True"}}}, headers=ADMIN)
    volume = await create(api, svc, name="retyped")
    vid = volume["id"]
    fault(await act(api, vid, {"os-retype": {}}), 400, "badRequest")
    fault(await act(api, vid, {"os-retype": {"new_type": "nope"}}), 404, "itemNotFound")
    fault(await act(api, vid, {"os-retype": {"new_type": "__DEFAULT__"}}), 400, "badRequest")   # the same type
    assert (await act(api, vid, {"os-retype": {"new_type": "retype-multi", "migration_policy": "never"}})
            ).status_code == 202
    shown = await status(api, vid)
    assert shown["volume_type"] == "retype-multi" and shown["multiattach"] is True
    await svc.db.write(repo.set_status, vid, "in-use")
    fault(await act(api, vid, {"os-retype": {"new_type": "__DEFAULT__"}}), 400, "badRequest")   # multiattach
    await svc.db.write(repo.set_status, vid, "available")
    assert (await act(api, vid, {"os-retype": {"new_type": "__DEFAULT__"}})).status_code == 202
    assert (await api.delete(f"/v3/p-alice/volumes/{vid}", headers=ALICE)).status_code == 202
    await settle(svc)
    await api.delete(f"/v3/p-admin/types/{made.json()['volume_type']['id']}", headers=ADMIN)
