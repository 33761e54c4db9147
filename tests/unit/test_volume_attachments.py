"""Cinder's attachments API (3.27+) in-process: reserve, connect with a connector, complete, delete; the
volume's status and ``attachments`` through each step, multiattach types, Cinder's errors, project
isolation, microversion gates, and attachments left half done by a stopped process."""
import uuid
from datetime import timedelta

import httpx
import pytest

from kilonova.volume import attach_repo, repo
from kilonova.volume.models import VolumeAttachment, utcnow
from tests.unit.test_volume_api import ADMIN, ALICE, BOB, create, fault, settle, svc  # noqa: F401 (fixture)

MV = {"OpenStack-API-Version": "volume 3.71"}
CONNECTOR = {"host": "compute1", "ip": "127.0.0.1", "initiator": "iqn.1993-08.org.debian:01:kilonova",
             "platform": "x86_64", "os_type": "linux", "multipath": False, "mountpoint": "/dev/vdb"}


@pytest.fixture(scope="module")
async def api(svc):  # noqa: F811
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://vol.test") as c:
        yield c


def server() -> str:
    return str(uuid.uuid4())


async def volume_of(api, volume_id, headers=ALICE, project="p-alice"):
    return (await api.get(f"/v3/{project}/volumes/{volume_id}", headers={**MV, **headers})).json()["volume"]


async def attach(api, volume_id, instance, connector=CONNECTOR, headers=ALICE, project="p-alice", **extra):
    body = {"attachment": {"volume_uuid": volume_id, "instance_uuid": instance, **extra}}
    if connector is not None:
        body["attachment"]["connector"] = connector
    return await api.post(f"/v3/{project}/attachments", json=body, headers={**headers, **MV})


async def test_reserve_connect_complete_delete(api, svc):  # noqa: F811
    volume = await create(api, svc, name="att")
    url = "/v3/p-alice/attachments"
    instance = server()
    reserved = await attach(api, volume["id"], instance, connector=None)
    assert reserved.status_code == 200, reserved.text
    att = reserved.json()["attachment"]
    assert att["status"] == "reserved" and att["instance"] == instance and att["connection_info"] == {}
    assert (await volume_of(api, volume["id"]))["status"] == "reserved"
    # a second server cannot have a volume that is not multiattach
    taken = fault(await attach(api, volume["id"], server(), connector=None), 400, "badRequest")
    assert taken.startswith(f"Invalid volume: Volume {volume['id']} status must be available or downloading")
    updated = await api.put(f"{url}/{att['id']}", json={"attachment": {"connector": CONNECTOR}},
                            headers={**ALICE, **MV})
    assert updated.status_code == 200, updated.text
    info = updated.json()["attachment"]["connection_info"]
    assert info["driver_volume_type"] == "local"
    assert info["data"]["device_path"] == str(svc.backend.path(volume["id"])) and info["data"]["access_mode"] == "rw"
    assert updated.json()["attachment"]["status"] == "attaching"
    shown = await volume_of(api, volume["id"])
    assert shown["status"] == "attaching" and shown["attachments"] == []
    assert (await api.post(f"{url}/{att['id']}/action", json={"os-complete": None},
                           headers={**ALICE, **MV})).status_code == 204
    shown = await volume_of(api, volume["id"])
    assert shown["status"] == "in-use"
    assert [(a["server_id"], a["attachment_id"], a["device"], a["host_name"]) for a in shown["attachments"]] == \
        [(instance, att["id"], "/dev/vdb", "compute1")]
    got = (await api.get(f"{url}/{att['id']}", headers={**ALICE, **MV})).json()["attachment"]
    assert got["status"] == "attached" and got["attached_at"] and got["detached_at"] == ""
    listed = (await api.get(url, headers={**ALICE, **MV})).json()["attachments"]
    assert {"id": att["id"], "status": "attached", "instance": instance, "volume_id": volume["id"]} in listed
    filtered = (await api.get(f"{url}/detail", params={"instance_id": server()}, headers={**ALICE, **MV})).json()
    assert filtered["attachments"] == []
    # attached: neither deletable nor attachable elsewhere, and another project sees nothing
    assert "current status: in-use" in fault(await api.delete(f"/v3/p-alice/volumes/{volume['id']}",
                                                              headers=ALICE), 400, "badRequest")
    fault(await attach(api, volume["id"], server()), 400, "badRequest")
    fault(await api.get(f"/v3/p-bob/attachments/{att['id']}", headers={**BOB, **MV}), 404, "itemNotFound")
    fault(await api.delete(f"/v3/p-bob/attachments/{att['id']}", headers={**BOB, **MV}), 404, "itemNotFound")
    fault(await attach(api, volume["id"], server(), headers=BOB, project="p-bob"), 404, "itemNotFound")
    assert att["id"] not in [a["id"] for a in (await api.get("/v3/p-bob/attachments", headers={**BOB, **MV})
                                               ).json()["attachments"]]
    assert att["id"] in [a["id"] for a in (await api.get("/v3/p-admin/attachments?all_tenants=1",
                                                         headers={**ADMIN, **MV})).json()["attachments"]]
    deleted = await api.delete(f"{url}/{att['id']}", headers={**ALICE, **MV})
    assert deleted.status_code == 200 and deleted.json() == {"attachments": []}
    shown = await volume_of(api, volume["id"])
    assert shown["status"] == "available" and shown["attachments"] == []
    fault(await api.get(f"{url}/{att['id']}", headers={**ALICE, **MV}), 404, "itemNotFound")
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_create_with_connector_and_multiattach_type(api, svc):  # noqa: F811
    made = await api.post("/v3/p-admin/types", json={"volume_type": {
        "name": "shared", "extra_specs": {"multiattach": "<is> True"}}}, headers=ADMIN)
    volume = await create(api, svc, name="multi", volume_type="shared")
    assert volume["multiattach"] is True
    first, second = server(), server()
    one = (await attach(api, volume["id"], first, mode="ro")).json()["attachment"]
    assert one["status"] == "attaching" and one["connection_info"]["data"]["access_mode"] == "ro"
    await api.post(f"/v3/p-alice/attachments/{one['id']}/action", json={"os-complete": None},
                   headers={**ALICE, **MV})
    two = await attach(api, volume["id"], second)
    assert two.status_code == 200, two.text
    two = two.json()["attachment"]
    await api.post(f"/v3/p-alice/attachments/{two['id']}/action", json={"os-complete": None},
                   headers={**ALICE, **MV})
    shown = await volume_of(api, volume["id"])
    assert shown["status"] == "in-use" and {a["server_id"] for a in shown["attachments"]} == {first, second}
    left = (await api.delete(f"/v3/p-alice/attachments/{one['id']}", headers={**ALICE, **MV})).json()
    assert left == {"attachments": [{"id": two["id"], "status": "attached", "instance": second,
                                     "volume_id": volume["id"]}]}
    assert (await volume_of(api, volume["id"]))["status"] == "in-use"
    await api.delete(f"/v3/p-alice/attachments/{two['id']}", headers={**ALICE, **MV})
    assert (await volume_of(api, volume["id"]))["status"] == "available"
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
    await api.delete(f"/v3/p-admin/types/{made.json()['volume_type']['id']}", headers=ADMIN)


async def test_bad_requests_and_microversion_gates(api, svc):  # noqa: F811
    volume = await create(api, svc, name="gates")
    url = "/v3/p-alice/attachments"
    old = {**ALICE, "OpenStack-API-Version": "volume 3.26"}
    body = {"attachment": {"volume_uuid": volume["id"], "instance_uuid": server()}}
    fault(await api.post(url, json=body, headers=old), 404, "itemNotFound")
    fault(await api.get(url, headers=ALICE), 404, "itemNotFound")      # no header: 3.0
    # (no instance_uuid is a reservation for another service, e.g. an image store, as upstream since 3.54's schema)
    for bad in ({"attachment": {"instance_uuid": server()}},
                {"attachment": {"volume_uuid": "nope", "instance_uuid": server()}},
                {"attachment": {"volume_uuid": volume["id"], "instance_uuid": server(), "connector": "x"}},
                {"attachment": {"volume_uuid": volume["id"], "instance_uuid": server(), "mode": "rx"}},
                {"attachment": []}, {}):
        fault(await api.post(url, json=body if bad is None else bad, headers={**ALICE, **MV}), 400, "badRequest")
    fault(await attach(api, str(uuid.uuid4()), server()), 404, "itemNotFound")
    att = (await attach(api, volume["id"], server(), connector=None)).json()["attachment"]
    for bad in ({"attachment": {}}, {"attachment": {"connector": {}}}, {"attachment": {"connector": 5}}):
        fault(await api.put(f"{url}/{att['id']}", json=bad, headers={**ALICE, **MV}), 400, "badRequest")
    fault(await api.post(f"{url}/{att['id']}/action", json={"os-complete": None},
                         headers={**ALICE, "OpenStack-API-Version": "volume 3.43"}), 404, "itemNotFound")
    fault(await api.post(f"{url}/{att['id']}/action", json={"os-frob": None}, headers={**ALICE, **MV}),
          400, "badRequest")
    fault(await api.put(f"{url}/{uuid.uuid4()}", json={"attachment": {"connector": CONNECTOR}},
                        headers={**ALICE, **MV}), 404, "itemNotFound")
    # a reservation is removed without a connection; the volume is free again
    assert (await api.delete(f"{url}/{att['id']}", headers={**ALICE, **MV})).status_code == 200
    assert (await volume_of(api, volume["id"]))["status"] == "available"
    # an error volume takes no attachment
    await svc.db.write(repo.set_status, volume["id"], "error")
    assert "error state" in fault(await attach(api, volume["id"], server()), 400, "badRequest")
    await svc.db.write(repo.set_status, volume["id"], "available")
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_project_less_urls_and_volume_fields(api, svc):  # noqa: F811
    volume = await create(api, svc, name="fields")
    shown = (await api.get(f"/v3/volumes/{volume['id']}", headers={**ALICE, **MV})).json()["volume"]
    assert shown["volume_type_id"] == repo.DEFAULT_TYPE_ID and shown["shared_targets"] is False
    assert shown["group_id"] is None and shown["consumes_quota"] is True and "provider_id" not in shown
    base = await volume_of(api, volume["id"], headers={**ALICE, "OpenStack-API-Version": "volume 3.0"})
    assert "volume_type_id" not in base and "shared_targets" not in base
    admin = (await api.get(f"/v3/volumes/{volume['id']}", headers={**ADMIN, **MV})).json()["volume"]
    assert admin["provider_id"] is None and "cluster_name" in admin
    att = (await api.post("/v3/attachments", json={"attachment": {
        "volume_uuid": volume["id"], "instance_uuid": server()}}, headers={**ALICE, **MV})).json()["attachment"]
    assert (await api.delete(f"/v3/attachments/{att['id']}", headers={**ALICE, **MV})).status_code == 200
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_stuck_attachments_are_finished_or_removed(api, svc):  # noqa: F811
    """What a stopped process or a vanished client left: a detach cut short is finished at start; a
    connection never completed goes once ``attachment_timeout`` has passed; a reservation (no connector) and a
    completed attachment stay."""
    volumes = [await create(api, svc, name=f"stuck{i}") for i in range(4)]
    detaching, reserved, attaching, attached = (v["id"] for v in volumes)
    ids = {}
    for volume_id in (detaching, reserved, attaching, attached):
        connector = None if volume_id == reserved else CONNECTOR
        ids[volume_id] = (await attach(api, volume_id, server(), connector=connector)).json()["attachment"]["id"]
    await api.post(f"/v3/p-alice/attachments/{ids[attached]}/action", json={"os-complete": None},
                   headers={**ALICE, **MV})
    await svc.db.write(attach_repo.begin_detach, ids[detaching], None)
    assert (await volume_of(api, detaching))["status"] == "detaching"
    await svc.after_start()
    assert (await volume_of(api, detaching))["status"] == "available"
    fault(await api.get(f"/v3/p-alice/attachments/{ids[detaching]}", headers={**ALICE, **MV}), 404, "itemNotFound")
    assert (await volume_of(api, reserved))["status"] == "reserved"    # not yet past its deadline

    def age(session):
        for volume_id in (reserved, attaching, attached):
            session.get(VolumeAttachment, ids[volume_id]).updated_at = utcnow() - timedelta(
                seconds=svc.attachment_timeout + 1)
    await svc.db.write(age)
    await svc.reap_attachments()
    assert [(await volume_of(api, v))["status"] for v in (reserved, attaching, attached)] == \
        ["reserved", "available", "in-use"]
    for volume_id in (reserved, attached):
        await api.delete(f"/v3/p-alice/attachments/{ids[volume_id]}", headers={**ALICE, **MV})
    for volume_id in ids:
        assert (await api.delete(f"/v3/p-alice/volumes/{volume_id}", headers=ALICE)).status_code == 202
    await settle(svc)
