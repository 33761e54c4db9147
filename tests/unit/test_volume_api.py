"""The volume service's Cinder v3 API driven in-process with a fake token validator: errors in Cinder's
body, project isolation, quotas, the status lifecycle over real files, and a failing backend."""
import asyncio
import os
import shutil

import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.volume import repo
from kilonova.volume.service import VolumeService

ADMIN = {"X-Auth-Token": "admin"}
ALICE = {"X-Auth-Token": "alice"}
BOB = {"X-Auth-Token": "bob"}
READER = {"X-Auth-Token": "reader"}


@pytest.fixture(scope="module")
async def svc(tmp_path_factory):
    validator = FakeValidator({"admin": ("admin", "p-admin", ["admin", "member", "reader"]),
                               "alice": ("alice", "p-alice", ["member", "reader"]),
                               "bob": ("bob", "p-bob", ["member", "reader"]),
                               "reader": ("rita", "p-alice", ["reader"])})
    service = VolumeService(service_env(tmp_path_factory.mktemp("volume")), validator=validator)
    service.prepare()
    yield service
    await service.stop()
    service.db.close()


@pytest.fixture(scope="module")
async def api(svc):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://vol.test") as c:
        yield c


def fault(response, status: int, name: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == [name] and body[name]["code"] == status
    return body[name]["message"]


async def settle(svc) -> None:
    while svc._tasks:
        await asyncio.gather(*list(svc._tasks))


async def create(api, svc, headers=ALICE, project="p-alice", **volume):
    response = await api.post(f"/v3/{project}/volumes", json={"volume": {"size": 1, **volume}}, headers=headers)
    assert response.status_code == 202, response.text
    await settle(svc)
    return (await api.get(f"/v3/{project}/volumes/{response.json()['volume']['id']}", headers=headers)).json()["volume"]


async def test_versions_and_microversions(api):
    root = await api.get("/")
    assert root.status_code == 300
    assert root.json()["versions"][0]["version"] == "3.71" and root.json()["versions"][0]["min_version"] == "3.0"
    assert (await api.get("/v3")).json()["versions"][0]["id"] == "v3.0"
    fault(await api.get("/v3/p-alice/volumes", headers={**ALICE, "OpenStack-API-Version": "volume 3.72"}),
          406, "computeFault")
    at = await api.get("/v3/p-alice/volumes", headers={**ALICE, "OpenStack-API-Version": "volume 3.27"})
    assert at.headers["OpenStack-API-Version"] == "volume 3.27" and at.headers["Vary"] == "OpenStack-API-Version"
    fault(await api.get("/v3/p-alice/volumes", headers={**ALICE, "OpenStack-API-Version": "volume 3.x"}),
          400, "badRequest")
    latest = await api.get("/v3/p-alice/volumes", headers={**ALICE, "OpenStack-API-Version": "volume latest"})
    assert latest.headers["OpenStack-API-Version"] == "volume 3.71"
    # 3.67: the project may be left out of the URL (not before)
    fault(await api.get("/v3/volumes", headers=ALICE), 404, "itemNotFound")
    assert (await api.get("/v3/volumes", headers={**ALICE, "OpenStack-API-Version": "volume 3.67"})).status_code == 200
    fault(await api.get("/v3/p-alice/volumes"), 401, "unauthorized")


async def test_bad_input_is_400_never_500(api):
    url = "/v3/p-alice/volumes"
    for body in ({"volume": {"size": -1}}, {"volume": {"size": True}}, {"volume": {"size": 1.5}},
                 {"volume": {"size": 1, "name": 5}}, {"volume": {"size": 1, "metadata": {"k": 1}}},
                 {"volume": {"size": 1, "metadata": []}}, {"volume": {"size": 1, "imageRef": "x", "snapshot_id": "y"}},
                 {"volume": {"size": 1, "backup_id": "x"}}, {"volume": {"size": 1, "multiattach": "perhaps"}},
                 {"volume": {"snapshot_id": "x", "source_volid": "y"}}, {"volume": {"snapshot_id": 5}},
                 {"volume": []}, [], "text"):
        fault(await api.post(url, json=body, headers=ALICE), 400, "badRequest")
    fault(await api.post(url, content=b"{not json", headers=ALICE), 400, "badRequest")
    for query in ({"limit": "x"}, {"limit": "-1"}, {"sort_dir": "sideways"}, {"sort_key": "secret"},
                  {"all_tenants": "maybe"}, {"metadata": "not a dict"}):
        fault(await api.get(f"{url}/detail", params=query, headers=ADMIN), 400, "badRequest")
    assert "Malformed request url" in fault(await api.get("/v3/p-bob/volumes", headers=ALICE), 400, "badRequest")
    fault(await api.get(f"{url}/nope", headers=ALICE), 404, "itemNotFound")
    fault(await api.post(url, json={"volume": {"size": 1}}, headers=READER), 403, "forbidden")


async def test_lifecycle_isolation_and_extend(api, svc):
    volume = await create(api, svc, name="v1", metadata={"a": "1"})
    assert volume["status"] == "available" and volume["bootable"] == "false" and volume["volume_type"] == "__DEFAULT__"
    path = svc.backend.path(volume["id"])
    assert os.path.getsize(path) == 1024 ** 3
    url = f"/v3/p-alice/volumes/{volume['id']}"
    fault(await api.get(f"/v3/p-bob/volumes/{volume['id']}", headers=BOB), 404, "itemNotFound")
    fault(await api.delete(f"/v3/p-bob/volumes/{volume['id']}", headers=BOB), 404, "itemNotFound")
    own = (await api.get("/v3/p-admin/volumes", headers=ADMIN)).json()["volumes"]
    assert volume["id"] not in [v["id"] for v in own]
    every = (await api.get("/v3/p-admin/volumes?all_tenants=1", headers=ADMIN)).json()["volumes"]
    assert volume["id"] in [v["id"] for v in every]
    assert "greater than current size" in fault(
        await api.post(f"{url}/action", json={"os-extend": {"new_size": 1}}, headers=ALICE), 400, "badRequest")
    fault(await api.post(f"{url}/action", json={"os-frobnicate": {}}, headers=ALICE), 400, "badRequest")
    assert (await api.post(f"{url}/action", json={"os-extend": {"new_size": 3}}, headers=ALICE)).status_code == 202
    await settle(svc)
    assert (await api.get(url, headers=ALICE)).json()["volume"]["size"] == 3
    assert os.path.getsize(path) == 3 * 1024 ** 3
    updated = await api.put(url, json={"volume": {"name": "v2", "metadata": {"b": "2"}}}, headers=ALICE)
    assert updated.json()["volume"]["name"] == "v2" and updated.json()["volume"]["metadata"] == {"b": "2"}
    found = (await api.get("/v3/p-alice/volumes/detail", params={"metadata": '{"b": "2"}'}, headers=ALICE)).json()
    assert [v["id"] for v in found["volumes"]] == [volume["id"]]
    await svc.db.write(repo.set_status, volume["id"], "in-use")   # as an attachment will leave it
    assert "current status: in-use" in fault(await api.delete(url, headers=ALICE), 400, "badRequest")
    fault(await api.post(f"{url}/action", json={"os-extend": {"new_size": 4}}, headers=ALICE), 400, "badRequest")
    await svc.db.write(repo.set_status, volume["id"], "available")
    assert (await api.delete(url, headers=ALICE)).status_code == 202
    await settle(svc)
    assert not path.exists()
    fault(await api.get(url, headers=ALICE), 404, "itemNotFound")


async def test_quota_and_paging(api, svc):
    assert (await api.put("/v3/p-admin/os-quota-sets/p-bob", json={"quota_set": {"volumes": 2, "gigabytes": 3}},
                          headers=ADMIN)).status_code == 200
    fault(await api.put("/v3/p-bob/os-quota-sets/p-bob", json={"quota_set": {"volumes": 20}}, headers=BOB),
          403, "forbidden")
    fault(await api.put("/v3/p-admin/os-quota-sets/p-bob", json={"quota_set": {"bogus": 1}}, headers=ADMIN),
          400, "badRequest")
    assert "gigabytes quota" in fault(await api.post("/v3/p-bob/volumes", json={"volume": {"size": 4}},
                                                     headers=BOB), 413, "overLimit")
    first = await create(api, svc, BOB, "p-bob", name="b1")
    second = await create(api, svc, BOB, "p-bob", name="b2")
    assert "'volumes'" in fault(await api.post("/v3/p-bob/volumes", json={"volume": {"size": 1}}, headers=BOB),
                                413, "overLimit")
    usage = (await api.get("/v3/p-bob/os-quota-sets/p-bob?usage=True", headers=BOB)).json()["quota_set"]
    assert usage["volumes"] == {"limit": 2, "in_use": 2, "reserved": 0} and usage["gigabytes"]["in_use"] == 2
    limits = (await api.get("/v3/p-bob/limits", headers=BOB)).json()["limits"]["absolute"]
    assert limits["maxTotalVolumes"] == 2 and limits["totalVolumesUsed"] == 2 and limits["totalGigabytesUsed"] == 2
    page = (await api.get("/v3/p-bob/volumes?limit=1&sort=name:asc", headers=BOB)).json()
    assert [v["name"] for v in page["volumes"]] == ["b1"] and "marker=" in page["volumes_links"][0]["href"]
    rest = (await api.get(f"/v3/p-bob/volumes?sort=name:asc&marker={first['id']}", headers=BOB)).json()
    assert [v["id"] for v in rest["volumes"]] == [second["id"]]
    fault(await api.get("/v3/p-bob/volumes?marker=nope", headers=BOB), 404, "itemNotFound")
    for volume in (first, second):
        assert (await api.delete(f"/v3/p-bob/volumes/{volume['id']}", headers=BOB)).status_code == 202
    await settle(svc)


async def test_volume_types(api, svc):
    made = await api.post("/v3/p-admin/types", json={"volume_type": {"name": "gold", "extra_specs": {"x": "1"}}},
                          headers=ADMIN)
    assert made.status_code == 200 and made.json()["volume_type"]["extra_specs"] == {"x": "1"}
    gold = made.json()["volume_type"]["id"]
    fault(await api.post("/v3/p-admin/types", json={"volume_type": {"name": "gold"}}, headers=ADMIN),
          409, "conflictingRequest")
    fault(await api.post("/v3/p-alice/types", json={"volume_type": {"name": "mine"}}, headers=ALICE),
          403, "forbidden")
    fault(await api.post("/v3/p-alice/volumes", json={"volume": {"size": 1, "volume_type": "nope"}},
                         headers=ALICE), 404, "itemNotFound")
    volume = await create(api, svc, volume_type="gold")
    assert volume["volume_type"] == "gold"
    fault(await api.delete(f"/v3/p-admin/types/{gold}", headers=ADMIN), 400, "badRequest")   # in use
    default = (await api.get("/v3/p-alice/types/default", headers=ALICE)).json()["volume_type"]
    fault(await api.delete(f"/v3/p-admin/types/{default['id']}", headers=ADMIN), 400, "badRequest")
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
    assert (await api.delete(f"/v3/p-admin/types/{gold}", headers=ADMIN)).status_code == 202


async def test_backend_failure_leaves_error_and_a_deletable_volume(api, svc):
    directory = svc.backend.directory
    shutil.rmtree(directory)
    directory.write_text("not a directory")   # every file under it now fails to be made
    try:
        volume = await create(api, svc, name="doomed")
        assert volume["status"] == "error"
    finally:
        directory.unlink()
        directory.mkdir()
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
    fault(await api.get(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE), 404, "itemNotFound")


async def test_restart_finishes_volumes_left_half_done(api, svc):
    """What a stopped process left: a volume still creating (no file yet), one whose extend had grown the
    file, one whose extend had not, one whose file is gone, one being deleted."""
    volumes = [await create(api, svc, name=f"r{i}") for i in range(5)]
    creating, grown, not_grown, lost, deleting = (v["id"] for v in volumes)
    svc.backend.delete(creating)
    await svc.db.write(repo.set_status, creating, "creating")
    svc.backend.extend(grown, 2)
    svc.backend.delete(lost)
    for volume_id in (grown, not_grown, lost):
        await svc.db.write(repo.set_status, volume_id, "extending")
    await svc.db.write(repo.set_status, deleting, "deleting")
    await svc.after_start()
    await settle(svc)
    shown = {v["id"]: (v["status"], v["size"]) for v in
             (await api.get("/v3/p-alice/volumes/detail", headers=ALICE)).json()["volumes"]}
    assert shown[creating] == ("available", 1) and svc.backend.size_gb(creating) == 1
    assert shown[grown] == ("available", 2) and shown[not_grown] == ("available", 1)
    assert shown[lost] == ("error_extending", 1)
    assert deleting not in shown and not svc.backend.path(deleting).exists()
    for volume_id in (creating, grown, not_grown, lost):
        assert (await api.delete(f"/v3/p-alice/volumes/{volume_id}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_snapshots(api, svc):
    volume = await create(api, svc, name="snapped")
    with open(svc.backend.path(volume["id"]), "r+b") as handle:   # a marker the snapshot must hold
        handle.seek(4096)
        handle.write(b"kilonova-marker")
    url = "/v3/p-alice/snapshots"
    fault(await api.post(url, json={"snapshot": {"name": "s"}}, headers=ALICE), 400, "badRequest")
    assert "'nope' is not valid under any of the given schemas" in fault(
        await api.post(url, json={"snapshot": {"volume_id": "nope"}}, headers=ALICE), 400, "badRequest")
    fault(await api.post(url, json={"snapshot": {"volume_id": "0e7a1f0e-0000-4000-8000-00000000000f"}},
                         headers=ALICE), 404, "itemNotFound")
    fault(await api.post("/v3/p-bob/snapshots", json={"snapshot": {"volume_id": volume["id"]}}, headers=BOB),
          404, "itemNotFound")
    made = await api.post(url, json={"snapshot": {"volume_id": volume["id"], "name": "s1"}}, headers=ALICE)
    assert made.status_code == 202, made.text
    await settle(svc)
    snapshot = (await api.get(f"{url}/{made.json()['snapshot']['id']}", headers=ALICE)).json()["snapshot"]
    assert snapshot["status"] == "available" and snapshot["size"] == 1 and snapshot["volume_id"] == volume["id"]
    with open(svc.backend.snapshot_path(snapshot["id"]), "rb") as handle:
        handle.seek(4096)
        assert handle.read(15) == b"kilonova-marker"
    assert os.stat(svc.backend.snapshot_path(snapshot["id"])).st_blocks * 512 < 1024 ** 2   # still sparse
    used = (await api.get("/v3/p-alice/os-quota-sets/p-alice?usage=True", headers=ALICE)).json()["quota_set"]
    assert used["snapshots"]["in_use"] == 1 and used["gigabytes"]["in_use"] == 2
    listed = (await api.get(f"{url}/detail", headers=ALICE)).json()["snapshots"]
    assert [s["name"] for s in listed] == ["s1"]
    fault(await api.get(f"/v3/p-bob/snapshots/{snapshot['id']}", headers=BOB), 404, "itemNotFound")
    renamed = await api.put(f"{url}/{snapshot['id']}", json={"snapshot": {"name": "s2"}}, headers=ALICE)
    assert renamed.json()["snapshot"]["name"] == "s2"
    fault(await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE), 400, "badRequest")
    # new volumes from the snapshot and from the volume hold the marker
    fault(await api.post("/v3/p-bob/volumes", json={"volume": {"snapshot_id": snapshot["id"]}}, headers=BOB),
          404, "itemNotFound")
    fault(await api.post("/v3/p-bob/volumes", json={"volume": {"source_volid": volume["id"]}}, headers=BOB),
          404, "itemNotFound")
    from_snapshot = await create(api, svc, snapshot_id=snapshot["id"], size=2)
    clone = await create(api, svc, source_volid=volume["id"], size=None)
    assert from_snapshot["snapshot_id"] == snapshot["id"] and from_snapshot["size"] == 2
    assert "cannot be smaller" in fault(await api.post("/v3/p-alice/volumes", json={"volume": {
        "source_volid": from_snapshot["id"], "size": 1}}, headers=ALICE), 400, "badRequest")
    assert clone["source_volid"] == volume["id"] and clone["size"] == 1
    for made in (from_snapshot, clone):
        assert made["status"] == "available"
        path = svc.backend.path(made["id"])
        assert os.path.getsize(path) == made["size"] * 1024 ** 3
        with open(path, "rb") as handle:
            handle.seek(4096)
            assert handle.read(15) == b"kilonova-marker"
        assert (await api.delete(f"/v3/p-alice/volumes/{made['id']}", headers=ALICE)).status_code == 202
    assert (await api.delete(f"{url}/{snapshot['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
    assert not svc.backend.snapshot_path(snapshot["id"]).exists()
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
