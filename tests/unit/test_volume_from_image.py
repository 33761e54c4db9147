"""Volumes from images in-process, against a small stand-in for the image service (the real one is in
tests/functional/test_volume_images_cli.py): ``downloading`` while the data comes, reserved meanwhile for a
boot from volume, force-deleted meanwhile, and a download cut by a restart written again."""
import asyncio
import subprocess
import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kilonova.common.clients import ServiceClient
from kilonova.volume import repo
from kilonova.volume.images import ImageSource
from tests.unit.test_volume_api import ADMIN, ALICE, fault, settle, svc  # noqa: F401 (fixture)

IMAGE_ID = str(uuid.uuid4())
MARKER = b"image-in-process"
MV = {**ALICE, "OpenStack-API-Version": "volume 3.71"}


class Glance:
    """GET /v2/images/{id} and its /file; ``gate`` holds the data back until set."""

    def __init__(self, data: bytes):
        self.data = data
        self.gate = asyncio.Event()
        self.gate.set()
        self.app = Starlette(routes=[Route("/v2/images/{image_id}", self.show), Route("/v2/images", self.index),
                                     Route("/v2/images/{image_id}/file", self.file)])

    def image(self):
        return {"id": IMAGE_ID, "name": "tiny", "status": "active", "disk_format": "qcow2",
                "container_format": "bare", "size": len(self.data), "min_disk": 0, "min_ram": 0,
                "checksum": "x", "hw_disk_bus": "virtio"}

    async def show(self, request):
        if request.path_params["image_id"] != IMAGE_ID:
            return JSONResponse({}, status_code=404)
        return JSONResponse(self.image())

    async def index(self, request):
        return JSONResponse({"images": [self.image()] if request.query_params.get("name") == "tiny" else []})

    async def file(self, request):
        await self.gate.wait()
        return Response(self.data, media_type="application/octet-stream")


class Auth:
    async def token(self, refresh=False):
        return "service-token"


@pytest.fixture(scope="module")
def glance(svc, tmp_path_factory):  # noqa: F811
    raw = tmp_path_factory.mktemp("img") / "disk.raw"
    with open(raw, "wb") as handle:
        handle.truncate(1 << 20)
        handle.seek(512)
        handle.write(MARKER)
    qcow2 = raw.with_suffix(".qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    fake = Glance(qcow2.read_bytes())
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url="http://glance.test")
    svc.images = svc.creator.images = ImageSource(http, ServiceClient(http, Auth()))
    return fake


@pytest.fixture(scope="module")
async def api(svc):  # noqa: F811
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://vol.test") as c:
        yield c


async def shown(api, volume_id):
    return (await api.get(f"/v3/p-alice/volumes/{volume_id}", headers=MV)).json()["volume"]


async def test_by_name_and_the_data_written(api, svc, glance):  # noqa: F811
    made = await api.post("/v3/p-alice/volumes", json={"volume": {"size": 1, "imageRef": "tiny"}}, headers=ALICE)
    assert made.status_code == 202, made.text
    await settle(svc)
    volume = await shown(api, made.json()["volume"]["id"])
    assert volume["status"] == "available" and volume["bootable"] == "true"
    assert volume["volume_image_metadata"]["image_id"] == IMAGE_ID
    assert volume["volume_image_metadata"]["hw_disk_bus"] == "virtio"
    with open(svc.backend.path(volume["id"]), "rb") as handle:
        handle.seek(512)
        assert handle.read(len(MARKER)) == MARKER
    fault(await api.post("/v3/p-alice/volumes", json={"volume": {"size": 1, "imageRef": "nope"}}, headers=ALICE),
          400, "badRequest")
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_reserved_or_deleted_while_downloading(api, svc, glance):  # noqa: F811
    glance.gate.clear()
    first = (await api.post("/v3/p-alice/volumes", json={"volume": {"size": 1, "imageRef": IMAGE_ID}},
                            headers=ALICE)).json()["volume"]
    second = (await api.post("/v3/p-alice/volumes", json={"volume": {"size": 1, "imageRef": IMAGE_ID}},
                             headers=ALICE)).json()["volume"]
    for _ in range(100):
        if (await shown(api, second["id"]))["status"] == "downloading":
            break
        await asyncio.sleep(0.02)
    assert (await shown(api, first["id"]))["status"] == "downloading"
    fault(await api.delete(f"/v3/p-alice/volumes/{first['id']}", headers=ALICE), 400, "badRequest")
    reserved = await api.post("/v3/p-alice/attachments", json={"attachment": {
        "volume_uuid": first["id"], "instance_uuid": str(uuid.uuid4())}}, headers=MV)
    assert reserved.status_code == 200, reserved.text
    assert (await api.post(f"/v3/p-admin/volumes/{second['id']}/action", json={"os-force_delete": {}},
                           headers=ADMIN)).status_code == 202
    glance.gate.set()
    await settle(svc)
    volume = await shown(api, first["id"])
    assert (volume["status"], volume["bootable"]) == ("reserved", "true")
    assert not svc.backend.path(second["id"]).exists()
    await api.delete(f"/v3/p-alice/attachments/{reserved.json()['attachment']['id']}", headers=MV)
    assert (await api.delete(f"/v3/p-alice/volumes/{first['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_a_download_cut_by_a_restart_is_done_again(api, svc, glance):  # noqa: F811
    made = (await api.post("/v3/p-alice/volumes", json={"volume": {"size": 1, "imageRef": IMAGE_ID}},
                           headers=ALICE)).json()["volume"]
    await settle(svc)
    svc.backend.path(made["id"]).write_bytes(b"half")          # what a stopped process left
    await svc.db.write(repo.set_status, made["id"], "downloading")
    await svc.after_start()
    await settle(svc)
    volume = await shown(api, made["id"])
    assert volume["status"] == "available" and svc.backend.size_gb(made["id"]) == 1
    with open(svc.backend.path(made["id"]), "rb") as handle:
        handle.seek(512)
        assert handle.read(len(MARKER)) == MARKER
    assert (await api.delete(f"/v3/p-alice/volumes/{made['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
