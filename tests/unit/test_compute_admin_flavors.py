"""/v2.1/flavors through the compute API app: shapes per microversion, policy, validation, access, specs."""
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures


async def test_list_and_show_shapes_per_microversion(api):
    listed = (await api.get("/flavors")).json()["flavors"]
    assert [f["id"] for f in listed] == ["1", "2", "3", "4", "5"]
    assert set(listed[0]) == {"id", "name", "links"}
    assert listed[0]["links"][0] == {"rel": "self", "href": "http://compute/v2.1/flavors/1"}
    assert "description" in (await api.get("/flavors", version="2.55")).json()["flavors"][0]
    shown = (await api.get("/flavors/1")).json()["flavor"]
    assert shown == {"id": "1", "name": "m1.tiny", "ram": 512, "disk": 1, "swap": "", "vcpus": 1,
                     "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False,
                     "os-flavor-access:is_public": True, "rxtx_factor": 1.0, "links": shown["links"]}
    assert (await api.get("/flavors/1", version="2.55")).json()["flavor"]["description"] is None
    missing = await api.get("/flavors/nope")
    assert missing.status_code == 404
    assert missing.json() == {"itemNotFound": {"code": 404, "message": "Flavor nope could not be found."}}


async def test_filters_sorting_and_paging(api):
    detail = (await api.get("/flavors/detail", params={"minRam": "4096", "minDisk": "80"})).json()["flavors"]
    assert [f["name"] for f in detail] == ["m1.large", "m1.xlarge"]
    by_ram = (await api.get("/flavors", params={"sort_key": "memory_mb", "sort_dir": "desc"})).json()["flavors"]
    assert by_ram[0]["name"] == "m1.xlarge"
    page = (await api.get("/flavors", params={"limit": "2"})).json()
    assert [f["id"] for f in page["flavors"]] == ["1", "2"]
    assert page["flavors_links"][0]["rel"] == "next" and "marker=2" in page["flavors_links"][0]["href"]
    rest = (await api.get("/flavors", params={"limit": "2", "marker": "4"})).json()
    assert [f["id"] for f in rest["flavors"]] == ["5"] and "flavors_links" not in rest
    for params in ({"marker": "zz"}, {"minRam": "x"}, {"sort_key": "bogus"}, {"limit": "-1"}, {"is_public": "x"}):
        assert (await api.get("/flavors", params=params)).status_code == 400, params


async def test_create_validation_duplicates_and_policy(api):
    body = {"flavor": {"name": "custom", "ram": 256, "vcpus": 2, "disk": 3, "id": "auto"}}
    denied = await api.post("/flavors", body, token="demo-token")
    assert denied.status_code == 403 and "forbidden" in denied.json()
    created = await api.post("/flavors", body)
    assert created.status_code == 200
    flavor = created.json()["flavor"]
    assert len(flavor["id"]) == 36 and flavor["ram"] == 256 and flavor["os-flavor-access:is_public"] is True
    dup = await api.post("/flavors", body)
    assert dup.status_code == 409
    assert dup.json()["conflictingRequest"]["message"] == "Flavor with name custom already exists."
    dup_id = await api.post("/flavors", {"flavor": {"name": "other", "ram": 1, "vcpus": 1, "disk": 0, "id": "1"}})
    assert dup_id.status_code == 409
    for bad in ({"name": "x", "ram": 0, "vcpus": 1, "disk": 0}, {"name": "x", "ram": 1, "vcpus": "a", "disk": 0},
                {"name": "x", "ram": 1, "vcpus": 1}, {"name": "", "ram": 1, "vcpus": 1, "disk": 0},
                {"name": "x", "ram": "0", "vcpus": 1, "disk": 0},
                {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "description": "not before 2.55"}):
        assert (await api.post("/flavors", {"flavor": bad})).status_code == 400, bad
    described = await api.post("/flavors", {"flavor": {"name": "d", "ram": 1, "vcpus": 1, "disk": 0, "id": 77,
                                                       "description": "hello"}}, version="2.55")
    assert described.json()["flavor"]["description"] == "hello" and described.json()["flavor"]["id"] == "77"
    assert (await api.put("/flavors/77", {"flavor": {"description": "x"}})).status_code == 404
    updated = await api.put("/flavors/77", {"flavor": {"description": "new"}}, version="2.55")
    assert updated.json()["flavor"]["description"] == "new"
    assert (await api.delete("/flavors/77", token="demo-token")).status_code == 403
    assert (await api.delete("/flavors/77")).status_code == 202
    assert (await api.delete("/flavors/77")).status_code == 404


async def test_private_flavors_and_access(api):
    body = {"flavor": {"name": "private", "ram": 64, "vcpus": 1, "disk": 0, "id": "p1",
                       "os-flavor-access:is_public": False}}
    assert (await api.post("/flavors", body)).status_code == 200
    assert "p1" not in [f["id"] for f in (await api.get("/flavors")).json()["flavors"]]
    assert "p1" in [f["id"] for f in (await api.get("/flavors", params={"is_public": "None"})).json()["flavors"]]
    assert [f["id"] for f in (await api.get("/flavors", params={"is_public": "false"})).json()["flavors"]] == ["p1"]
    assert (await api.get("/flavors/p1", token="demo-token")).status_code == 404
    add = {"addTenantAccess": {"tenant": "demo-project"}}
    assert (await api.post("/flavors/p1/action", add, token="demo-token")).status_code == 403
    added = await api.post("/flavors/p1/action", add)
    assert added.json() == {"flavor_access": [{"flavor_id": "p1", "tenant_id": "demo-project"}]}
    assert (await api.post("/flavors/p1/action", add)).status_code == 409
    assert (await api.get("/flavors/p1", token="demo-token")).status_code == 200
    assert "p1" in [f["id"] for f in (await api.get("/flavors", token="demo-token")).json()["flavors"]]
    assert (await api.get("/flavors/p1/os-flavor-access")).json()["flavor_access"][0]["tenant_id"] == "demo-project"
    assert (await api.get("/flavors/1/os-flavor-access")).status_code == 404
    assert (await api.post("/flavors/1/action", add, version="2.7")).status_code == 409
    remove = {"removeTenantAccess": {"tenant": "demo-project"}}
    assert (await api.post("/flavors/p1/action", remove)).json() == {"flavor_access": []}
    assert (await api.post("/flavors/p1/action", remove)).status_code == 404
    assert (await api.post("/flavors/p1/action", {"bogus": {}})).status_code == 400


async def test_extra_specs(api):
    created = await api.post("/flavors/1/os-extra_specs", {"extra_specs": {"hw:cpu_policy": "shared", "n": 2}})
    assert created.status_code == 200 and created.json() == {"extra_specs": {"hw:cpu_policy": "shared", "n": 2}}
    assert (await api.get("/flavors/1/os-extra_specs", token="demo-token")).json() == {
        "extra_specs": {"hw:cpu_policy": "shared", "n": "2"}}
    assert (await api.get("/flavors/1/os-extra_specs/n")).json() == {"n": "2"}
    shown = (await api.get("/flavors/1", version="2.61", token="demo-token")).json()["flavor"]
    assert list(shown["extra_specs"].items()) == [("hw:cpu_policy", "shared"), ("n", "2")]
    assert "extra_specs" not in (await api.get("/flavors/1", version="2.60")).json()["flavor"]
    assert (await api.put("/flavors/1/os-extra_specs/n", {"n": "3"})).json() == {"n": "3"}
    assert (await api.put("/flavors/1/os-extra_specs/n", {"m": "3"})).status_code == 400
    assert (await api.put("/flavors/1/os-extra_specs/n", {"n": "3", "m": "1"})).status_code == 400
    assert (await api.post("/flavors/1/os-extra_specs", {"extra_specs": {"bad/key": "x"}})).status_code == 400
    assert (await api.post("/flavors/1/os-extra_specs", {"extra_specs": {"a": "b"}},
                           token="demo-token")).status_code == 403
    assert (await api.delete("/flavors/1/os-extra_specs/n")).status_code == 200
    assert (await api.get("/flavors/1/os-extra_specs/n")).status_code == 404
    assert (await api.delete("/flavors/1/os-extra_specs/n")).status_code == 404
    assert (await api.get("/flavors/nope/os-extra_specs")).status_code == 404
