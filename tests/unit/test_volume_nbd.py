"""A compute host on another machine gets its volume over NBD: the service starts qemu-nbd for the
volume's first remote connection, the data is read back through the export with qemu-img (QEMU's own
NBD client), the export stops with the last remote attachment, and a restart serves a connected volume
again on the port its connection_info names."""
import os
import shutil
import subprocess
import uuid

import httpx
import pytest

from tests.unit.test_volume_api import ALICE, create, settle, svc  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not shutil.which("qemu-nbd") or not shutil.which("qemu-img"),
                                reason="qemu-nbd and qemu-img (qemu-utils) are needed to export volumes")
MV = {**ALICE, "OpenStack-API-Version": "volume 3.71"}
REMOTE = {"host": "far-compute", "ip": "192.0.2.77", "mountpoint": "/dev/vdc"}
MARKER = b"kilonova-over-nbd"


@pytest.fixture(scope="module")
async def api(svc):  # noqa: F811
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://vol.test") as c:
        yield c


def read_through(export: str, tmp_path) -> bytes:
    copy = tmp_path / f"copy-{uuid.uuid4().hex}"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", export, str(copy)], check=True,
                   capture_output=True, timeout=60)
    with open(copy, "rb") as handle:
        handle.seek(8192)
        return handle.read(len(MARKER))


async def attach(api, volume_id):
    made = await api.post("/v3/p-alice/attachments", json={"attachment": {
        "volume_uuid": volume_id, "instance_uuid": str(uuid.uuid4()), "connector": REMOTE}}, headers=MV)
    assert made.status_code == 200, made.text
    return made.json()["attachment"]


async def test_remote_hosts_get_an_nbd_export(api, svc, tmp_path):  # noqa: F811
    volume = await create(api, svc, name="remote")
    with open(svc.backend.path(volume["id"]), "r+b") as handle:
        handle.seek(8192)
        handle.write(MARKER)
    first = await attach(api, volume["id"])
    info = first["connection_info"]
    assert info["driver_volume_type"] == "nbd" and info["data"]["name"] == volume["id"]
    assert info["data"]["host"] == svc.exports.address
    assert read_through(info["data"]["export"], tmp_path) == MARKER
    # a second attachment of a multiattach-less volume is refused before anything is exported again
    second = await api.post("/v3/p-alice/attachments", json={"attachment": {
        "volume_uuid": volume["id"], "instance_uuid": str(uuid.uuid4()), "connector": REMOTE}}, headers=MV)
    assert second.status_code == 400
    # a restart after qemu-nbd died: served again, on the same port
    pid, port = svc.exports.recorded()[volume["id"]]
    os.kill(pid, 9)
    svc.exports._procs.clear()
    await svc.after_start()
    assert svc.exports.recorded()[volume["id"]][1] == port == info["data"]["port"]
    assert read_through(info["data"]["export"], tmp_path) == MARKER
    deleted = await api.delete(f"/v3/p-alice/attachments/{first['id']}", headers=MV)
    assert deleted.status_code == 200
    assert volume["id"] not in svc.exports.recorded()
    with pytest.raises(subprocess.CalledProcessError):
        read_through(info["data"]["export"], tmp_path)
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_legacy_initialize_connection_exports_too(api, svc, tmp_path):  # noqa: F811
    volume = await create(api, svc, name="remote-legacy")
    url = f"/v3/p-alice/volumes/{volume['id']}/action"
    info = (await api.post(url, json={"os-initialize_connection": {"connector": REMOTE}}, headers=ALICE)).json()
    assert info["connection_info"]["driver_volume_type"] == "nbd"
    assert volume["id"] in svc.exports.recorded()
    assert (await api.post(url, json={"os-terminate_connection": {"connector": REMOTE}}, headers=ALICE)
            ).status_code == 202
    assert volume["id"] not in svc.exports.recorded()
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_an_attachment_connected_again_from_the_volume_host_stops_its_export(api, svc, tmp_path):  # noqa: F811
    """An evacuated server's attachment updated with its new host's connector (this machine): the NBD
    export its old remote host had stops."""
    volume = await create(api, svc, name="evacuated")
    first = await attach(api, volume["id"])
    assert volume["id"] in svc.exports.recorded()
    local = {"host": "near-compute", "ip": "127.0.0.1", "mountpoint": "/dev/vdc"}
    updated = await api.put(f"/v3/p-alice/attachments/{first['id']}", json={"attachment": {"connector": local}},
                            headers=MV)
    assert updated.status_code == 200, updated.text
    assert updated.json()["attachment"]["connection_info"]["driver_volume_type"] == "local"
    assert volume["id"] not in svc.exports.recorded()
    assert (await api.delete(f"/v3/p-alice/attachments/{first['id']}", headers=MV)).status_code == 200
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
