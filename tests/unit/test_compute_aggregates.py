"""os-aggregates, availability zones from aggregates, their Placement mirror, and the scheduler's zone of a host."""
import json

import httpx
import pytest

from kilonova.compute.db import aggregates, compute_nodes, mappings, services
from kilonova.compute.scheduler.manager import NoValidHost, SchedulerManager
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures

RESOURCES = {"vcpus": 8, "memory_mb": 16384, "local_gb": 100, "hypervisor_type": "fake",
             "cpu_info": json.dumps({"supported_instances": [["x86_64", "fake", "hvm"]]})}


class FakePlacement:
    """Providers named after hosts, their aggregates with generations; ``conflicts`` 409s to answer first."""

    def __init__(self, names):
        self.providers = {name: {"uuid": f"rp-{name}", "aggregates": [], "generation": 1} for name in names}
        self.conflicts = 0
        self.puts = 0

    def _by_uuid(self, uuid):
        return next(p for p in self.providers.values() if p["uuid"] == uuid)

    async def get(self, path, params=None):
        if path == "/resource_providers":
            found = [{"uuid": p["uuid"], "name": n} for n, p in self.providers.items() if n == params["name"]]
            return httpx.Response(200, json={"resource_providers": found})
        provider = self._by_uuid(path.split("/")[2])
        return httpx.Response(200, json={"aggregates": provider["aggregates"],
                                         "resource_provider_generation": provider["generation"]})

    async def put(self, path, json):
        self.puts += 1
        provider = self._by_uuid(path.split("/")[2])
        if self.conflicts:
            self.conflicts -= 1
            provider["generation"] += 1
            return httpx.Response(409, json={"errors": [{"code": "placement.concurrent_update"}]})
        assert json["resource_provider_generation"] == provider["generation"]
        provider["aggregates"] = json["aggregates"]
        provider["generation"] += 1
        return httpx.Response(200, json={"aggregates": json["aggregates"]})


@pytest.fixture
def hosts(stub):
    db = stub.cells.default.db
    for name in ("compute1", "compute2", "compute3"):
        service = db.run_sync(services.report, name, "nova-compute", "compute")
        db.run_sync(compute_nodes.upsert, name, name, dict(RESOURCES, hypervisor_hostname=name), service["id"])
    stub.api_db.run_sync(mappings.map_host, "compute1", stub.cells.default.uuid)
    db.run_sync(services.report, "controller", "nova-conductor", "conductor")
    stub.placement = FakePlacement(["compute1", "compute2"])
    return stub.placement


async def _create(api, name, az=None, **kw):
    body = {"aggregate": {"name": name, **({"availability_zone": az} if az else {})}}
    response = await api.post("/os-aggregates", body, **kw)
    assert response.status_code == 200, response.text
    return response.json()["aggregate"]


async def _action(api, agg_id, action, value, **kw):
    return await api.post(f"/os-aggregates/{agg_id}/action", {action: value}, **kw)


async def test_crud_and_microversion_2_41(api, stub):
    created = await _create(api, "agg1", "az1")
    assert set(created) == {"availability_zone", "created_at", "deleted", "deleted_at", "id", "name", "updated_at"}
    assert created["availability_zone"] == "az1" and created["deleted"] is False and created["updated_at"] is None
    assert isinstance(created["id"], int) and "T" in created["created_at"]
    with_uuid = await _create(api, "agg2", version="2.41")
    assert len(with_uuid["uuid"]) == 36 and with_uuid["availability_zone"] is None
    shown = (await api.get(f"/os-aggregates/{created['id']}")).json()["aggregate"]
    assert shown["hosts"] == [] and shown["metadata"] == {"availability_zone": "az1"} and "uuid" not in shown
    listed = (await api.get("/os-aggregates", version="2.41")).json()["aggregates"]
    assert [a["name"] for a in listed] == ["agg1", "agg2"] and listed[1]["uuid"] == with_uuid["uuid"]
    updated = await api.put(f"/os-aggregates/{created['id']}", {"aggregate": {"name": " renamed ",
                                                                              "availability_zone": "az9"}})
    body = updated.json()["aggregate"]
    assert body["name"] == "renamed" and body["availability_zone"] == "az9" and body["updated_at"]
    assert body["metadata"] == {"availability_zone": "az9"}
    deleted = await api.delete(f"/os-aggregates/{created['id']}")
    assert deleted.status_code == 200 and deleted.content == b""
    missing = await api.get(f"/os-aggregates/{created['id']}")
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == f"Aggregate {created['id']} could not be found."


async def test_validation_and_errors(api, stub):
    agg = await _create(api, "agg1")
    duplicate = await api.post("/os-aggregates", {"aggregate": {"name": "agg1"}})
    assert duplicate.status_code == 409
    assert duplicate.json()["conflictingRequest"]["message"] == "Aggregate agg1 already exists."
    for bad in ({"aggregate": {"name": " lead"}}, {"aggregate": {"name": ""}}, {"aggregate": {}},
                {"aggregate": {"name": "x", "availability_zone": "a:b"}}, {"aggregate": {"name": "x", "y": 1}},
                {"name": "x"}):
        assert (await api.post("/os-aggregates", bad)).status_code == 400, bad
    assert (await api.put(f"/os-aggregates/{agg['id']}", {"aggregate": {}})).status_code == 400
    assert (await api.put(f"/os-aggregates/{agg['id']}", {"aggregate": {"availability_zone": None}})
            ).status_code == 400
    await _create(api, "agg2")
    assert (await api.put(f"/os-aggregates/{agg['id']}", {"aggregate": {"name": "agg2"}})).status_code == 409
    assert (await api.get("/os-aggregates/abc")).status_code == 400
    assert (await api.delete("/os-aggregates/99999999999999999999")).status_code == 404
    assert (await api.put("/os-aggregates/7", {"aggregate": {"name": "z"}})).status_code == 404
    assert (await _action(api, agg["id"], "bogus", {})).status_code == 400
    assert (await _action(api, 7, "set_metadata", {"metadata": {}})).status_code == 404
    assert (await _action(api, agg["id"], "set_metadata", {"metadata": {"k": "v" * 256}})).status_code == 400


async def test_admin_only(api, stub):
    agg = await _create(api, "agg1")
    demo = {"token": "demo-token"}
    assert (await api.get("/os-aggregates", **demo)).status_code == 403
    assert (await api.post("/os-aggregates", {"aggregate": {"name": "x"}}, **demo)).status_code == 403
    assert (await api.get(f"/os-aggregates/{agg['id']}", **demo)).status_code == 403
    assert (await api.put(f"/os-aggregates/{agg['id']}", {"aggregate": {"name": "y"}}, **demo)).status_code == 403
    assert (await api.delete(f"/os-aggregates/{agg['id']}", **demo)).status_code == 403
    refused = await _action(api, agg["id"], "add_host", {"host": "compute1"}, **demo)
    assert refused.status_code == 403
    assert "os_compute_api:os-aggregates:add_host" in refused.json()["forbidden"]["message"]


async def test_hosts_metadata_and_placement_mirror(api, hosts):
    agg = await _create(api, "agg1", version="2.41")
    assert (await _action(api, agg["id"], "add_host", {"host": "nowhere"})).status_code == 404
    added = await _action(api, agg["id"], "add_host", {"host": "compute1"})
    assert added.status_code == 200 and added.json()["aggregate"]["hosts"] == ["compute1"]
    assert hosts.providers["compute1"]["aggregates"] == [agg["uuid"]]
    again = await _action(api, agg["id"], "add_host", {"host": "compute1"})
    assert again.status_code == 409 and "already has host compute1" in again.text
    hosts.conflicts = 1  # a concurrent provider update: the mirror retries with the new generation
    assert (await _action(api, agg["id"], "add_host", {"host": "compute2"})).status_code == 200
    assert hosts.providers["compute2"]["aggregates"] == [agg["uuid"]] and hosts.puts == 3
    # compute3 has a service record but no provider: the mirror is skipped, the API call succeeds
    assert (await _action(api, agg["id"], "add_host", {"host": "compute3"})).status_code == 200
    removed = await _action(api, agg["id"], "remove_host", {"host": "compute1"})
    assert removed.json()["aggregate"]["hosts"] == ["compute2", "compute3"]
    assert hosts.providers["compute1"]["aggregates"] == []
    gone = await _action(api, agg["id"], "remove_host", {"host": "compute1"})
    assert gone.status_code == 404
    assert gone.json()["itemNotFound"]["message"] == f"Cannot remove host compute1 in aggregate {agg['id']}"

    meta = await _action(api, agg["id"], "set_metadata", {"metadata": {"ssd": "true", "gpu": "1"}})
    assert meta.json()["aggregate"]["metadata"] == {"ssd": "true", "gpu": "1"}
    meta = await _action(api, agg["id"], "set_metadata", {"metadata": {"gpu": None, "missing": None,
                                                                       "availability_zone": "az1"}})
    body = meta.json()["aggregate"]
    assert body["metadata"] == {"ssd": "true", "availability_zone": "az1"} and body["availability_zone"] == "az1"
    empty = await _action(api, agg["id"], "set_metadata", {"metadata": {"availability_zone": None}})
    assert empty.status_code == 400 and "does not support empty named availability zone" in empty.text

    refused = await api.delete(f"/os-aggregates/{agg['id']}")
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == (
        f"Cannot remove host from aggregate {agg['id']}. Reason: Host aggregate is not empty.")


async def test_a_host_is_never_in_two_zones(api, hosts):
    az1 = await _create(api, "agg1", "az1")
    az2 = await _create(api, "agg2", "az2")
    plain = await _create(api, "plain")
    assert (await _action(api, az1["id"], "add_host", {"host": "compute1"})).status_code == 200
    conflict = await _action(api, az2["id"], "add_host", {"host": "compute1"})
    assert conflict.status_code == 409
    assert conflict.json()["conflictingRequest"]["message"] == (
        f"Cannot add host to aggregate {az2['id']}. Reason: One or more hosts already in availability "
        "zone(s) ['az1'].")
    assert (await _action(api, plain["id"], "add_host", {"host": "compute1"})).status_code == 200
    moving = await _action(api, plain["id"], "set_metadata", {"metadata": {"availability_zone": "az2"}})
    assert moving.status_code == 400 and "Cannot update metadata of aggregate" in moving.text
    assert (await api.put(f"/os-aggregates/{plain['id']}", {"aggregate": {"availability_zone": "az2"}})
            ).status_code == 400
    same = await api.put(f"/os-aggregates/{plain['id']}", {"aggregate": {"availability_zone": "az1"}})
    assert same.status_code == 200


async def test_zones_come_from_aggregates(api, hosts, stub):
    agg = await _create(api, "agg1", "az1")
    await _action(api, agg["id"], "add_host", {"host": "compute1"})
    await _create(api, "empty", "az-empty")
    zones = (await api.get("/os-availability-zone", token="demo-token")).json()["availabilityZoneInfo"]
    assert [(z["zoneName"], z["zoneState"]["available"]) for z in zones] == [("az1", True), ("nova", True)]
    detail = {z["zoneName"]: z["hosts"] for z in
              (await api.get("/os-availability-zone/detail")).json()["availabilityZoneInfo"]}
    assert set(detail["az1"]) == {"compute1"} and set(detail["nova"]) == {"compute2", "compute3"}
    listed = (await api.get("/os-services")).json()["services"]
    assert {s["host"]: s["zone"] for s in listed if s["binary"] == "nova-compute"} == {
        "compute1": "az1", "compute2": "nova", "compute3": "nova"}
    assert next(s["zone"] for s in listed if s["binary"] == "nova-conductor") == "internal"
    assert stub.api_db.run_sync(aggregates.zone_hosts) == {"az1": ["compute1"]}
    assert stub.api_db.run_sync(aggregates.host_availability_zone, "compute2", "nova") == "nova"
    hypervisors = (await api.get("/os-hypervisors")).json()["hypervisors"]
    assert len(hypervisors) == 3


async def test_deleting_a_compute_service_forgets_its_host(api, hosts, stub):
    agg = await _create(api, "agg1", "az1", version="2.41")
    await _action(api, agg["id"], "add_host", {"host": "compute1"})
    assert hosts.providers["compute1"]["aggregates"] == [agg["uuid"]]
    service = next(s for s in (await api.get("/os-services", version="2.53")).json()["services"]
                   if s["host"] == "compute1")
    assert (await api.delete(f"/os-services/{service['id']}", version="2.53")).status_code == 204
    assert (await api.get(f"/os-aggregates/{agg['id']}")).json()["aggregate"]["hosts"] == []
    assert hosts.providers["compute1"]["aggregates"] == []
    assert stub.api_db.run_sync(lambda s: mappings.get_host_mapping(s, "compute1") is None)
    assert (await _action(api, agg["id"], "add_host", {"host": "compute1"})).status_code == 404


class CandidatePlacement:
    """Allocation candidates on every compute node, and claims that always succeed."""

    def __init__(self, node_uuids):
        self.node_uuids = node_uuids

    async def get(self, path, params=None):
        requests = [{"allocations": {uuid: {"resources": {"VCPU": 1}}}} for uuid in self.node_uuids]
        summaries = {uuid: {"resources": {"VCPU": {"capacity": 8, "used": 0}}} for uuid in self.node_uuids}
        return httpx.Response(200, json={"allocation_requests": requests, "provider_summaries": summaries})

    async def put(self, path, json):
        return httpx.Response(204)


async def test_scheduler_takes_each_hosts_zone_from_aggregates(api, hosts, stub):
    agg = await _create(api, "agg1", "az1")
    await _action(api, agg["id"], "add_host", {"host": "compute2"})
    nodes = stub.cells.default.db.run_sync(lambda s: [n.uuid for n, _ in compute_nodes.list_with_services(s)])
    manager = SchedulerManager(stub.conf, CandidatePlacement(nodes), stub.cells)
    spec = {"flavor": {"vcpus": 1, "memory_mb": 0, "root_gb": 0}, "project_id": "p", "user_id": "u",
            "availability_zone": "az1"}
    [selection] = await manager.select_destinations(spec, ["11111111-1111-1111-1111-111111111111"])
    assert selection[0]["host"] == "compute2" and selection[0]["availability_zone"] == "az1"
    assert len(selection) == 1  # no alternate outside the zone
    anywhere = await manager.select_destinations(dict(spec, availability_zone=None), ["i2"])
    assert len(anywhere[0]) == 3
    with pytest.raises(NoValidHost) as info:
        await manager.select_destinations(dict(spec, availability_zone="az2"), ["i3"])
    assert "AvailabilityZoneFilter removed 3 of 3 hosts" in str(info.value)
