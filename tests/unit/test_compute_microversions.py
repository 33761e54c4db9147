"""Microversions 2.61 and later at their boundaries: below N a field is refused or absent, from N it is there.

Servers are written straight into the harness's two cell databases (cell0 and cell1) and the API
database, as the conductor would leave them, so lists really merge across cells.
"""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timedelta

import pytest

from kilonova.compute.db import build_requests, flavors, instances, mappings
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_compute_admin_hosts import hosts  # noqa: F401 - fixture

FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0,
          "swap": 0, "extra_specs": {}}
IMAGE = "0b6f3c55-2d4e-4a7b-9c1d-5e8f7a6b4c3d"
START = datetime.utcnow() - timedelta(hours=1)


def add_server(stub, name: str, *, cell=None, minutes: int = 0, **values) -> dict:
    """A demo-project server in ``cell`` (cell1 by default), created ``minutes`` after START."""
    cell = cell or stub.cells.default
    created = START + timedelta(minutes=minutes)
    server = {"uuid": str(uuidlib.uuid4()), "display_name": name, "project_id": "demo-project",
              "user_id": "demo-user", "flavor": FLAVOR, "image_ref": IMAGE, "vm_state": "active",
              "power_state": 1, "host": "h1", "node": "h1", "availability_zone": "nova",
              "security_groups": ["default"],  # as every create records them
              "created_at": created.isoformat(timespec="microseconds"), **values}

    def record(session):
        build_requests.create(session, server, {"flavor": FLAVOR})
        build_requests.delete(session, server["uuid"])
        mappings.set_instance_cell(session, server["uuid"], cell.uuid)

    stub.api_db.run_sync(record)
    cell.db.run_sync(instances.create, server)
    return server


def add_build_request(stub, name: str, minutes: int) -> dict:
    created = START + timedelta(minutes=minutes)
    server = {"uuid": str(uuidlib.uuid4()), "display_name": name, "project_id": "demo-project",
              "user_id": "demo-user", "flavor": FLAVOR, "image_ref": IMAGE, "vm_state": "building",
              "task_state": "scheduling", "power_state": 0, "created_at": created.isoformat(timespec="microseconds")}
    stub.api_db.run_sync(build_requests.create, server, {"flavor": FLAVOR})
    return server


async def names(api, path="/servers", version="2.69", token="demo-token", **params):
    response = await api.get(path, token=token, version=version, params=params)
    assert response.status_code == 200, response.text
    return [s["name"] for s in response.json()["servers"]]


# ---------------------------------------------------------------- 2.61 flavor extra_specs

async def test_2_61_flavors_show_their_extra_specs(api, stub):
    stub.api_db.run_sync(flavors.set_extra_specs, "1", {"hw:cpu_policy": "shared"})
    assert "extra_specs" not in (await api.get("/flavors/1", version="2.60")).json()["flavor"]
    shown = (await api.get("/flavors/1", version="2.61", token="demo-token")).json()["flavor"]
    assert shown["extra_specs"] == {"hw:cpu_policy": "shared"}
    detail = (await api.get("/flavors/detail", version="2.61")).json()["flavors"]
    assert next(f for f in detail if f["id"] == "1")["extra_specs"] == {"hw:cpu_policy": "shared"}
    assert all("extra_specs" not in f for f in (await api.get("/flavors", version="2.61")).json()["flavors"])
    created = await api.post("/flavors", {"flavor": {"name": "f61", "ram": 64, "vcpus": 1, "disk": 0}},
                             version="2.61")
    assert created.status_code == 200, created.text
    assert created.json()["flavor"]["extra_specs"] == {}
    updated = await api.put("/flavors/1", {"flavor": {"description": "tiny"}}, version="2.61")
    assert updated.json()["flavor"]["extra_specs"] == {"hw:cpu_policy": "shared"}


# ---------------------------------------------------------------- 2.63 / 2.67 create fields

@pytest.mark.parametrize("field, value, first", [
    ("trusted_image_certificates", ["cert-1"], "2.63"),
    ("block_device_mapping_v2", [{"boot_index": 0, "uuid": IMAGE, "source_type": "image",
                                  "destination_type": "volume", "volume_size": 1, "volume_type": "ssd"}], "2.67"),
])
async def test_create_refuses_a_field_before_its_microversion(api, field, value, first):
    major, minor = first.split(".")
    before = f"{major}.{int(minor) - 1}"
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": IMAGE, "networks": "none", field: value}}
    refused = await api.post("/servers", body, token="demo-token", version=before)
    assert refused.status_code == 400, refused.text
    assert "Additional properties are not allowed" in refused.json()["badRequest"]["message"]


async def test_trusted_certificates_are_checked_as_upstream(api):
    # Nova names the innermost field: the list, or for a bad item its index
    for certs, field in (([], "trusted_image_certificates"), (["a", "a"], "trusted_image_certificates"),
                         (["x"] * 51, "trusted_image_certificates"), ([""], "0")):
        body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": IMAGE, "networks": "none",
                           "trusted_image_certificates": certs}}
        refused = await api.post("/servers", body, token="demo-token", version="2.63")
        assert refused.status_code == 400, refused.text
        assert f"Invalid input for field/attribute {field}. " in refused.json()["badRequest"]["message"]


async def test_2_63_trusted_certificates_show_in_show_and_detail(api, stub):
    plain = add_server(stub, "plain")
    signed = add_server(stub, "signed", minutes=1, system_metadata={"trusted_image_certificates": ["c1", "c2"]})
    for version, expected in (("2.62", None), ("2.63", ["c1", "c2"])):
        shown = (await api.get(f"/servers/{signed['uuid']}", token="demo-token", version=version)).json()["server"]
        if expected is None:
            assert "trusted_image_certificates" not in shown
        else:
            assert shown["trusted_image_certificates"] == expected
    detail = (await api.get("/servers/detail", token="demo-token", version="2.63")).json()["servers"]
    assert {s["id"]: s["trusted_image_certificates"] for s in detail} == {signed["uuid"]: ["c1", "c2"],
                                                                         plain["uuid"]: None}


# ---------------------------------------------------------------- PUT /servers before 2.75

async def test_update_answers_the_short_server_before_2_75(api, stub):
    server = add_server(stub, "vm", key_name="k1", network_info=[{
        "network_label": "private", "mac_address": "fa:16:3e:00:00:01",
        "fixed_ips": [{"ip_address": "10.0.0.5", "version": 4}]}])
    response = await api.put(f"/servers/{server['uuid']}", {"server": {"name": "vm2"}}, version="2.69")
    assert response.status_code == 200, response.text
    body = response.json()["server"]
    assert body["name"] == "vm2" and body["locked"] is False and "trusted_image_certificates" in body
    for absent in ("key_name", "OS-EXT-STS:vm_state", "OS-EXT-SRV-ATTR:host", "security_groups",
                   "OS-EXT-AZ:availability_zone", "os-extended-volumes:volumes_attached"):
        assert absent not in body
    assert body["addresses"] == {"private": [{"version": 4, "addr": "10.0.0.5"}]}
    shown = (await api.get(f"/servers/{server['uuid']}", version="2.69")).json()["server"]
    assert shown["key_name"] == "k1" and shown["name"] == "vm2"


# ---------------------------------------------------------------- 2.66 changes-before

async def test_2_66_changes_before_filters_and_includes_deleted(api, stub):
    old = add_server(stub, "old")
    new = add_server(stub, "new", minutes=1)
    gone = add_server(stub, "gone", minutes=2)
    cell = stub.cells.default
    now = datetime.utcnow()
    for server, updated in ((old, now - timedelta(minutes=30)), (new, now - timedelta(minutes=5)),
                            (gone, now - timedelta(minutes=20))):
        cell.db.run_sync(lambda s, u=server["uuid"], t=updated: s.execute(
            instances._TABLE.update().where(instances._TABLE.c.uuid == u).values(updated_at=t)))
    cell.db.run_sync(instances.soft_delete, gone["uuid"])
    cell.db.run_sync(lambda s: s.execute(instances._TABLE.update().where(
        instances._TABLE.c.uuid == gone["uuid"]).values(updated_at=now - timedelta(minutes=20))))
    cutoff = (now - timedelta(minutes=10)).isoformat() + "Z"
    # Before 2.66 the parameter is not known and changes nothing.
    assert await names(api, version="2.65", **{"changes-before": cutoff}) == ["new", "old"]
    assert await names(api, version="2.66", **{"changes-before": cutoff}) == ["gone", "old"]
    since = (now - timedelta(minutes=25)).isoformat() + "Z"
    assert await names(api, version="2.66", **{"changes-since": since, "changes-before": cutoff}) == ["gone"]
    detail = (await api.get("/servers/detail", token="demo-token", version="2.66",
                            params={"changes-before": cutoff})).json()["servers"]
    assert {s["name"]: s["status"] for s in detail} == {"gone": "DELETED", "old": "ACTIVE"}
    backwards = await api.get("/servers", token="demo-token", version="2.66",
                              params={"changes-since": cutoff, "changes-before": since})
    assert backwards.status_code == 400
    assert "changes-since must be less than or equal to changes-before" in backwards.text
    garbage = await api.get("/servers", token="demo-token", version="2.66", params={"changes-before": "soon"})
    assert garbage.status_code == 400 and "changes-before" in garbage.text


# ---------------------------------------------------------------- sort_key / sort_dir

@pytest.fixture
def spread(stub):
    """Five servers over cell0, cell1 and a build request, names out of creation order."""
    cell0 = stub.cells.cell0
    made = [add_server(stub, "delta", minutes=0, host="h2"), add_server(stub, "alpha", cell=cell0, minutes=1,
                                                                        host=None, vm_state="error"),
            add_server(stub, "echo", minutes=2, host="h1"), add_server(stub, "bravo", cell=cell0, minutes=3,
                                                                       host=None, vm_state="error"),
            add_build_request(stub, "charlie", minutes=4)]
    return {server["display_name"]: server for server in made}


async def test_default_order_is_newest_first_across_cells_and_build_requests(api, spread):
    assert await names(api) == ["charlie", "bravo", "echo", "alpha", "delta"]


async def test_sort_by_name_merges_cells_and_pages_with_a_marker(api, spread):
    assert await names(api, sort_key="display_name", sort_dir="asc") == \
        ["alpha", "bravo", "charlie", "delta", "echo"]
    assert await names(api, sort_key="display_name", sort_dir="desc") == \
        ["echo", "delta", "charlie", "bravo", "alpha"]
    first = await api.get("/servers", token="demo-token", version="2.69",
                          params={"sort_key": "display_name", "sort_dir": "asc", "limit": 2})
    page = first.json()
    assert [s["name"] for s in page["servers"]] == ["alpha", "bravo"]
    assert "sort_key=display_name" in page["servers_links"][0]["href"]
    marker = page["servers"][-1]["id"]
    assert await names(api, sort_key="display_name", sort_dir="asc", limit=2, marker=marker) == ["charlie", "delta"]
    assert await names(api, sort_key="display_name", sort_dir="asc", limit=2,
                       marker=spread["delta"]["uuid"]) == ["echo"]


async def test_sort_with_nulls_and_several_keys(api, spread):
    # host: the build request and the cell0 servers have none, and none sorts first.
    order = await names(api, token="admin-token", all_tenants="1", sort_key=["host", "display_name"],
                        sort_dir=["asc", "desc"])
    assert order == ["charlie", "bravo", "alpha", "echo", "delta"]
    paged = await names(api, token="admin-token", all_tenants="1", sort_key=["host", "display_name"],
                        sort_dir=["asc", "desc"], marker=spread["alpha"]["uuid"])
    assert paged == ["echo", "delta"]
    # One direction for two keys: the second key takes the first direction.
    assert await names(api, sort_key=["vm_state", "display_name"], sort_dir="desc") == \
        ["bravo", "alpha", "charlie", "echo", "delta"]


async def test_invalid_sort_parameters_are_refused(api, spread):
    bad = await api.get("/servers", token="demo-token", version="2.69", params={"sort_key": "flavor"})
    assert bad.status_code == 400
    assert "Invalid input for query parameters sort_key. Value: flavor." in bad.json()["badRequest"]["message"]
    direction = await api.get("/servers", token="demo-token", version="2.69",
                              params={"sort_key": "display_name", "sort_dir": "up"})
    assert direction.status_code == 400 and "Unknown sort direction" in direction.text
    extra = await api.get("/servers", token="demo-token", version="2.69",
                          params={"sort_key": "display_name", "sort_dir": ["asc", "desc"]})
    assert extra.status_code == 400 and "Sort direction size exceeds sort key size" in extra.text
    host = await api.get("/servers", token="demo-token", version="2.69", params={"sort_key": "host"})
    assert host.status_code == 403 and "Only administrators can sort servers by host" in host.text
    # Keys upstream always ignored are still accepted (and ignored) before 2.75.
    assert await names(api, sort_key="vcpus") == ["charlie", "bravo", "echo", "alpha", "delta"]
    assert await names(api, sort_key=["vcpus", "display_name"], sort_dir=["desc", "asc"]) == \
        ["alpha", "bravo", "charlie", "delta", "echo"]


# ---------------------------------------------------------------- 2.71 server_groups, 2.73 locked_reason

async def test_2_71_server_groups_in_show_and_update_not_in_detail(api, stub):
    server = add_server(stub, "vm")
    path = f"/servers/{server['uuid']}"
    assert "server_groups" not in (await api.get(path, version="2.70")).json()["server"]
    assert (await api.get(path, version="2.71")).json()["server"]["server_groups"] == []
    updated = await api.put(path, {"server": {"name": "vm"}}, version="2.71")
    assert updated.json()["server"]["server_groups"] == []
    detail = (await api.get("/servers/detail", token="demo-token", version="2.71")).json()["servers"]
    assert "server_groups" not in detail[0]


async def test_2_73_lock_with_a_reason(api, stub):
    server = add_server(stub, "vm")
    path = f"/servers/{server['uuid']}"
    # Before 2.73 the lock body is not looked at and no reason is kept.
    lock = await api.post(path + "/action", {"lock": {"locked_reason": "ignored"}}, token="demo-token",
                          version="2.72")
    assert lock.status_code == 202, lock.text
    shown = (await api.get(path, token="demo-token", version="2.73")).json()["server"]
    assert shown["locked"] is True and shown["locked_reason"] is None
    assert "locked_reason" not in (await api.get(path, token="demo-token", version="2.72")).json()["server"]
    bad = await api.post(path + "/action", {"lock": {"reason": "x"}}, token="demo-token", version="2.73")
    assert bad.status_code == 400
    assert (await api.post(path + "/action", {"lock": {"locked_reason": "maintenance"}},
                           version="2.73")).status_code == 202
    detail = (await api.get("/servers/detail", token="demo-token", version="2.73")).json()["servers"]
    assert detail[0]["locked_reason"] == "maintenance"
    # The owner cannot lift an administrator's lock; the administrator can, and the reason goes with it.
    denied = await api.post(path + "/action", {"unlock": None}, token="demo-token", version="2.73")
    assert denied.status_code == 403
    assert (await api.post(path + "/action", {"unlock": None}, version="2.73")).status_code == 202
    shown = (await api.get(path, token="demo-token", version="2.73")).json()["server"]
    assert shown["locked"] is False and shown["locked_reason"] is None


async def test_2_73_locked_filter_and_sort_key(api, stub):
    add_server(stub, "free")
    held = add_server(stub, "held", minutes=1)
    await api.post(f"/servers/{held['uuid']}/action", {"lock": None}, token="demo-token", version="2.73")
    assert await names(api, version="2.72", locked="true") == ["held", "free"]
    assert await names(api, version="2.73", locked="true") == ["held"]
    assert await names(api, version="2.73", locked="0") == ["free"]
    bad = await api.get("/servers", token="demo-token", version="2.73", params={"locked": "maybe"})
    assert bad.status_code == 400 and "Unrecognized value 'maybe'" in bad.text
    # "locked" is ignored as a sort key before 2.73, a real one from 2.73.
    assert await names(api, version="2.72", sort_key="locked", sort_dir="desc") == ["held", "free"]
    assert await names(api, version="2.73", sort_key="locked", sort_dir="asc") == ["free", "held"]


# ---------------------------------------------------------------- 2.74 requested destination

async def test_2_74_host_at_create_is_for_admins_and_must_exist(api, stub):
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": IMAGE, "networks": "none", "host": "compute1"}}
    refused = await api.post("/servers", body, version="2.73")
    assert refused.status_code == 400 and "Additional properties" in refused.text
    forbidden = await api.post("/servers", body, token="demo-token", version="2.74")
    assert forbidden.status_code == 403
    assert "compute:servers:create:requested_destination" in forbidden.json()["forbidden"]["message"]
    forced = await api.post("/servers", {"server": dict(body["server"], availability_zone="nova:compute1")},
                            version="2.74")
    assert forced.status_code == 400 and "mutually exclusive" in forced.text
    missing = await api.post("/servers", body, version="2.74")
    assert missing.status_code == 400, missing.text
    assert missing.json()["badRequest"]["message"] == "Compute host compute1 could not be found."
    node = dict(body["server"], host=None, hypervisor_hostname="node9")
    del node["host"]
    missing_node = await api.post("/servers", {"server": node}, version="2.74")
    assert missing_node.status_code == 400 and "node9 could not be found" in missing_node.text


# ---------------------------------------------------------------- 2.75 cleanups

async def test_2_75_unknown_query_parameters_are_refused(api, stub):
    add_server(stub, "vm")
    assert await names(api, version="2.74", colour="blue") == ["vm"]
    refused = await api.get("/servers/detail", token="demo-token", version="2.75", params={"colour": "blue"})
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == "Additional properties are not allowed ('colour' was unexpected)"
    ignored_key = await api.get("/servers", token="demo-token", version="2.75", params={"sort_key": "vcpus"})
    assert ignored_key.status_code == 400 and "sort_key" in ignored_key.text
    assert await names(api, version="2.75", sort_key="display_name", limit="5", locked="false") == ["vm"]


async def test_2_75_update_answers_the_full_server_and_flavor_swap_is_an_integer(api, stub):
    server = add_server(stub, "vm", key_name="k1")
    body = (await api.put(f"/servers/{server['uuid']}", {"server": {"name": "vm"}}, version="2.75")).json()["server"]
    assert body["key_name"] == "k1" and body["OS-EXT-STS:vm_state"] == "active"
    assert body["OS-EXT-SRV-ATTR:host"] == "h1" and "security_groups" in body
    assert (await api.get("/flavors/1", version="2.74")).json()["flavor"]["swap"] == ""
    assert (await api.get("/flavors/1", version="2.75")).json()["flavor"]["swap"] == 0


async def test_2_75_hypervisors_with_servers_always_have_the_field(api, hosts):
    async def hypervisors(version):
        response = await api.get("/os-hypervisors", version=version, params={"with_servers": "true"})
        return response.json()["hypervisors"]

    before = {h["hypervisor_hostname"]: h.get("servers") for h in await hypervisors("2.74")}
    after = {h["hypervisor_hostname"]: h.get("servers") for h in await hypervisors("2.75")}
    assert before["compute2"] is None and after["compute2"] == []
    assert before["compute1"] == after["compute1"] == [{"name": "vm1", "uuid": "11111111-1111-1111-1111-111111111111"}]


# ---------------------------------------------------------------- 2.78 topology, 2.81 image cache

async def test_2_78_server_topology(api, stub):
    server = add_server(stub, "vm")
    path = f"/servers/{server['uuid']}/topology"
    assert (await api.get(path, token="demo-token", version="2.77")).status_code == 404
    shown = await api.get(path, token="demo-token", version="2.78")
    assert shown.status_code == 200 and shown.json() == {"nodes": [], "pagesize_kb": None}
    assert (await api.get(f"/servers/{uuidlib.uuid4()}/topology", version="2.78")).status_code == 404


async def test_2_81_aggregate_image_cache_requests(api, stub):
    created = await api.post("/os-aggregates", {"aggregate": {"name": "agg1"}}, version="2.81")
    agg = created.json()["aggregate"]["id"]
    body = {"cache": [{"id": IMAGE}]}
    assert (await api.post(f"/os-aggregates/{agg}/images", body, version="2.80")).status_code == 404
    assert (await api.post(f"/os-aggregates/{agg}/images", body, version="2.81")).status_code == 202
    assert (await api.post(f"/os-aggregates/{agg}/images", body, token="demo-token",
                           version="2.81")).status_code == 403
    twice = await api.post(f"/os-aggregates/{agg}/images", {"cache": [{"id": IMAGE}] * 2}, version="2.81")
    assert twice.status_code == 400 and "Duplicate images" in twice.text
    assert (await api.post(f"/os-aggregates/{agg}/images", {"cache": []}, version="2.81")).status_code == 400
    assert (await api.post("/os-aggregates/999/images", body, version="2.81")).status_code == 404


# ---------------------------------------------------------------- 2.83 filters for everyone

async def test_2_83_more_filters_for_non_admins(api, stub):
    add_server(stub, "with-key", key_name="k1")
    add_server(stub, "no-key", minutes=1, vm_state="stopped", power_state=4)
    assert await names(api, version="2.82", key_name="k1") == ["no-key", "with-key"]
    assert await names(api, version="2.83", key_name="k1") == ["with-key"]
    assert await names(api, version="2.83", vm_state="stopped") == ["no-key"]
    assert await names(api, version="2.83", power_state="4") == ["no-key"]
    assert await names(api, version="2.83", user_id="someone-else") == []
    # Administrators could always use them.
    assert await names(api, token="admin-token", version="2.1", all_tenants="1", key_name="k1") == ["with-key"]


# ---------------------------------------------------------------- 2.86 extra spec validation

_REFUSED_SPECS = [
    ("hw:cpu_policy", "sometimes", "'sometimes' is not one of: dedicated, shared, mixed."),
    ("hw:numa_nodes", "0", "'0' is less than the min value of '1'."),
    ("hw:no_such_thing", "1", "extra spec 'hw:no_such_thing' does not appear to be a valid extra spec."),
    ("trait:NOT_A_TRAIT", "required", "extra spec 'trait:NOT_A_TRAIT' does not appear to be a valid extra spec."),
    ("resources1:CUSTOM_GPU", "many", "'many' is not a valid integer value."),
    ("hw_rng:allowed", "perhaps", "'perhaps' is not a valid boolean-like value."),
]


async def test_2_86_known_extra_specs_are_validated(api):
    for key, value, message in _REFUSED_SPECS:
        body = {"extra_specs": {key: value}}
        assert (await api.post("/flavors/1/os-extra_specs", body, version="2.85")).status_code == 200
        refused = await api.post("/flavors/1/os-extra_specs", body, version="2.86")
        assert refused.status_code == 400
        assert refused.json()["badRequest"]["message"] == "Validation failed; " + message
        item = await api.put(f"/flavors/1/os-extra_specs/{key}", {key: value}, version="2.86")
        assert item.status_code == 400


async def test_2_86_valid_and_unknown_namespace_specs_pass(api):
    specs = {"hw:cpu_policy": "dedicated", "hw:numa_cpus.0": "0-1", "trait:HW_CPU_X86_AVX2": "required",
             "resources:VCPU": "2", "trait_group1:CUSTOM_FAST": "forbidden", "quota:disk_read_bytes_sec": 10,
             "my_own:thing": "anything", "capabilities:cpu_info:arch": "x86_64", "hw:boot_menu": True}
    response = await api.post("/flavors/1/os-extra_specs", {"extra_specs": specs}, version="2.86")
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- 2.88 hypervisors

async def test_2_88_hypervisors_lose_usage_fields_and_gain_uptime(api, hosts):
    listed = (await api.get("/os-hypervisors/detail", version="2.87")).json()["hypervisors"]
    assert "vcpus" in listed[0] and "cpu_info" in listed[0] and "uptime" not in listed[0]
    node = listed[0]["id"]
    assert (await api.get("/os-hypervisors/statistics", version="2.87")).status_code == 200
    # The harness maps no host to a cell: upstream answers the uptime of such a host's hypervisor with a 404.
    assert (await api.get(f"/os-hypervisors/{node}/uptime", version="2.87")).status_code == 404
    shown = (await api.get(f"/os-hypervisors/{node}", version="2.88")).json()["hypervisor"]
    assert set(shown) == {"id", "hypervisor_hostname", "state", "status", "hypervisor_type", "hypervisor_version",
                          "host_ip", "service", "uptime"}
    assert shown["uptime"] is None
    assert (await api.get("/os-hypervisors/statistics", version="2.88")).status_code == 404
    assert (await api.get(f"/os-hypervisors/{node}/uptime", version="2.88")).status_code == 404


# ---------------------------------------------------------------- 2.90 hostname (and 2.94 beyond the maximum)

async def test_2_90_hostname_is_shown_to_everyone_and_can_be_changed(api, stub):
    server = add_server(stub, "vm", hostname="vm-host")
    path = f"/servers/{server['uuid']}"
    assert "OS-EXT-SRV-ATTR:hostname" not in (await api.get(path, token="demo-token", version="2.89")).json()["server"]
    shown = (await api.get(path, token="demo-token", version="2.90")).json()["server"]
    assert shown["OS-EXT-SRV-ATTR:hostname"] == "vm-host"
    refused = await api.put(path, {"server": {"hostname": "new-host"}}, token="demo-token", version="2.89")
    assert refused.status_code == 400
    changed = await api.put(path, {"server": {"hostname": "new-host"}}, token="demo-token", version="2.90")
    assert changed.status_code == 200 and changed.json()["server"]["OS-EXT-SRV-ATTR:hostname"] == "new-host"
    fqdn = await api.put(path, {"server": {"hostname": "new.example.org"}}, token="demo-token", version="2.90")
    assert fqdn.status_code == 400  # a single label until 2.94
    assert await names(api, version="2.89", hostname="new") == ["vm"] and \
        await names(api, version="2.90", hostname="other") == []


async def test_2_90_one_hostname_cannot_name_several_servers(api):
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": IMAGE, "networks": "none", "hostname": "vm1",
                       "min_count": 2}}
    refused = await api.post("/servers", body, token="demo-token", version="2.90")
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == "Unable to allocate a single hostname to multiple instances"


async def test_2_92_to_2_96_at_their_boundaries(api, stub):
    server = add_server(stub, "vm", system_metadata={"pinned_availability_zone": "nova"})
    shown = (await api.get(f"/servers/{server['uuid']}", token="demo-token", version="2.96")).json()["server"]
    assert shown["pinned_availability_zone"] == "nova"
    assert "pinned_availability_zone" not in (await api.get(f"/servers/{server['uuid']}", token="demo-token",
                                                            version="2.95")).json()["server"]
    fqdn = await api.put(f"/servers/{server['uuid']}", {"server": {"hostname": "vm.example.org"}},
                         token="demo-token", version="2.94")
    assert fqdn.status_code == 200
    generated = await api.post("/os-keypairs", {"keypair": {"name": "k1"}}, token="demo-token", version="2.92")
    assert generated.status_code == 400 and "public_key" in generated.text
    with_at = await api.post("/os-keypairs", {"keypair": {"name": "me@host.k"}}, token="demo-token", version="2.91")
    assert with_at.status_code == 400


async def test_2_98_and_2_100_of_a_server_created_before_they_were_recorded(api, stub):
    """A server whose system_metadata lacks its image's properties and its hints (made by an earlier
    release) shows them from its request spec, as upstream reads them."""
    import sqlalchemy as sa

    from kilonova.compute.db.api_models import RequestSpec

    server = add_server(stub, "old-vm")
    spec = {"flavor": FLAVOR, "image": {"id": IMAGE, "properties": {"os_distro": "old"}},
            "scheduler_hints": {"same_host": "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa"}}

    def record(session):
        if session.execute(sa.select(RequestSpec.id).where(RequestSpec.instance_uuid == server["uuid"])).first():
            session.execute(sa.update(RequestSpec).where(RequestSpec.instance_uuid == server["uuid"]).values(spec=spec))
        else:
            session.add(RequestSpec(instance_uuid=server["uuid"], spec=spec))
    stub.api_db.run_sync(record)
    shown = (await api.get(f"/servers/{server['uuid']}", token="demo-token", version="2.100")).json()["server"]
    assert shown["image"]["properties"] == {"os_distro": "old"}
    assert shown["scheduler_hints"] == {"same_host": ["6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa"]}
    listed = (await api.get("/servers/detail", token="demo-token", version="2.100")).json()["servers"]
    assert [s["scheduler_hints"] for s in listed if s["id"] == server["uuid"]] == [shown["scheduler_hints"]]
    assert "properties" not in (await api.get(f"/servers/{server['uuid']}", token="demo-token",
                                              version="2.97")).json()["server"]["image"]
