"""Per-microversion changes of Cinder's v3 API in-process: list filters and counts (3.34, 3.45, 3.60),
snapshot fields and in-use snapshots without ``force`` (3.41, 3.65, 3.66)."""
import httpx
import pytest

from kilonova.volume import repo
from tests.unit.test_volume_api import ALICE, create, fault, settle, svc  # noqa: F401 (fixture)


def at(version: str) -> dict:
    return {**ALICE, "OpenStack-API-Version": f"volume {version}"}


@pytest.fixture(scope="module")
async def api(svc):  # noqa: F811
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://vol.test") as c:
        yield c


async def test_list_filters_and_counts(api, svc):  # noqa: F811
    made = [await create(api, svc, name=name) for name in ("mv-alpha", "mv-beta", "other")]
    url = "/v3/p-alice/volumes/detail"
    like = (await api.get(url, params={"name~": "MV-"}, headers=at("3.34"))).json()["volumes"]
    assert sorted(v["name"] for v in like) == ["mv-alpha", "mv-beta"]
    ignored = (await api.get(url, params={"name~": "MV-"}, headers=at("3.33"))).json()["volumes"]
    assert len(ignored) >= 3
    counted = (await api.get(url, params={"with_count": "true", "limit": 1}, headers=at("3.45"))).json()
    assert counted["count"] >= 3 and len(counted["volumes"]) == 1
    assert "count" not in (await api.get(url, params={"with_count": "true"}, headers=at("3.44"))).json()
    first = made[0]["created_at"]
    later = (await api.get(url, params={"created_at": f"gt:{first}"}, headers=at("3.60"))).json()["volumes"]
    assert made[0]["id"] not in [v["id"] for v in later] and made[2]["id"] in [v["id"] for v in later]
    fault(await api.get(url, params={"created_at": "soon:2020-01-01"}, headers=at("3.60")), 400, "badRequest")
    fault(await api.get(url, params={"created_at": "gt:yesterday"}, headers=at("3.60")), 400, "badRequest")
    for volume in made:
        assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_snapshot_fields_and_in_use_snapshots(api, svc):  # noqa: F811
    volume = await create(api, svc, name="snap-mv")
    await svc.db.write(repo.set_status, volume["id"], "in-use")
    url = "/v3/p-alice/snapshots"
    body = {"snapshot": {"volume_id": volume["id"]}}
    fault(await api.post(url, json=body, headers=at("3.65")), 400, "badRequest")    # in-use needs force
    refused = await api.post(url, json={"snapshot": {**body["snapshot"], "force": False}}, headers=at("3.66"))
    assert "force" in fault(refused, 400, "badRequest")
    made = await api.post(url, json=body, headers=at("3.66"))
    assert made.status_code == 202, made.text
    snapshot = made.json()["snapshot"]
    assert snapshot["user_id"] == "alice-id" and snapshot["consumes_quota"] is True
    assert "user_id" not in (await api.get(f"{url}/{snapshot['id']}", headers=at("3.40"))).json()["snapshot"]
    await settle(svc)
    assert (await api.delete(f"{url}/{snapshot['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
    await svc.db.write(repo.set_status, volume["id"], "available")
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_summary_and_resource_filters(api, svc):  # noqa: F811
    made = [await create(api, svc, name=f"sum{i}", size=i + 1, metadata={"tier": f"t{i % 2}"}) for i in range(3)]
    summary = (await api.get("/v3/p-alice/volumes/summary", headers=at("3.36"))).json()["volume-summary"]
    assert summary["total_count"] == 3 and summary["total_size"] == 6
    assert sorted(summary["metadata"]["tier"]) == ["t0", "t1"]
    assert "metadata" not in (await api.get("/v3/p-alice/volumes/summary", headers=at("3.12"))).json()[
        "volume-summary"]
    fault(await api.get("/v3/p-alice/volumes/summary", headers=at("3.11")), 404, "itemNotFound")
    filters = (await api.get("/v3/p-alice/resource_filters?resource=volume", headers=at("3.33"))).json()
    assert [f["resource"] for f in filters["resource_filters"]] == ["volume"]
    assert "bootable" in filters["resource_filters"][0]["filters"]
    for volume in made:
        assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)


async def test_snapshot_metadata(api, svc):  # noqa: F811
    volume = await create(api, svc, name="snap-meta")
    url = "/v3/p-alice/snapshots"
    made = await api.post(url, json={"snapshot": {"volume_id": volume["id"], "metadata": {"a": "1"}}},
                          headers=ALICE)
    assert made.status_code == 202 and made.json()["snapshot"]["metadata"] == {"a": "1"}
    sid = made.json()["snapshot"]["id"]
    fault(await api.post(url, json={"snapshot": {"volume_id": volume["id"], "metadata": {"a": 1}}},
                         headers=ALICE), 400, "badRequest")
    await settle(svc)
    assert (await api.post(f"{url}/{sid}/metadata", json={"metadata": {"b": "2"}}, headers=ALICE)).json() == {
        "metadata": {"a": "1", "b": "2"}}
    assert (await api.get(f"{url}/{sid}/metadata/b", headers=ALICE)).json() == {"meta": {"b": "2"}}
    found = (await api.get(f"{url}/detail", params={"metadata": '{"b": "2"}'}, headers=at("3.22"))).json()
    assert [s["id"] for s in found["snapshots"]] == [sid]
    assert (await api.delete(f"{url}/{sid}/metadata/a", headers=ALICE)).status_code == 200
    fault(await api.get(f"{url}/{sid}/metadata/a", headers=ALICE), 404, "itemNotFound")
    fault(await api.get(f"/v3/p-bob/snapshots/{sid}/metadata", headers={"X-Auth-Token": "bob"}), 404,
          "itemNotFound")
    assert (await api.put(f"{url}/{sid}/metadata", json={"metadata": {"c": "3"}}, headers=ALICE)).json() == {
        "metadata": {"c": "3"}}
    assert (await api.delete(f"{url}/{sid}", headers=ALICE)).status_code == 202
    await settle(svc)
    assert (await api.delete(f"/v3/p-alice/volumes/{volume['id']}", headers=ALICE)).status_code == 202
    await settle(svc)
