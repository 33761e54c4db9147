"""os-services, os-hypervisors and os-availability-zone over a cell with reporting hosts."""
import json
from datetime import datetime, timedelta

import pytest

from kilonova.compute.db import compute_nodes, services
from kilonova.compute.db.cell_models import Instance, Service
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures

RESOURCES = {"vcpus": 32, "memory_mb": 131072, "local_gb": 2048, "hypervisor_type": "fake",
             "hypervisor_version": 1000, "host_ip": "127.0.0.1", "cpu_info": json.dumps({"arch": "x86_64"})}


@pytest.fixture
def hosts(stub):
    db = stub.cells.default.db
    for host in ("compute1", "compute2"):
        service = db.run_sync(services.report, host, "nova-compute", "compute")
        db.run_sync(compute_nodes.upsert, host, host, dict(RESOURCES, hypervisor_hostname=host), service["id"])
    db.run_sync(compute_nodes.upsert, "compute1", "compute1", {"vcpus_used": 2, "memory_mb_used": 1024,
                                                               "running_vms": 1}, None)
    db.run_sync(services.report, "controller", "nova-scheduler", "scheduler")
    db.run_sync(services.report, "controller", "nova-conductor", "conductor")
    db.run_sync(lambda s: s.add(Instance(uuid="11111111-1111-1111-1111-111111111111", display_name="vm1",
                                         project_id="demo-project", user_id="demo-user", host="compute1",
                                         vm_state="active", flavor={"vcpus": 2, "memory_mb": 1024})))
    return db


async def test_service_list_per_microversion(api, hosts):
    listed = (await api.get("/os-services")).json()["services"]
    assert {(s["binary"], s["host"]) for s in listed} == {
        ("nova-compute", "compute1"), ("nova-compute", "compute2"),
        ("nova-scheduler", "controller"), ("nova-conductor", "controller")}
    compute1 = next(s for s in listed if s["host"] == "compute1")
    assert isinstance(compute1["id"], int) and compute1["zone"] == "nova" and "forced_down" not in compute1
    assert compute1["state"] == "up" and compute1["status"] == "enabled" and compute1["disabled_reason"] is None
    assert compute1["updated_at"].count(":") == 2 and "." in compute1["updated_at"]
    assert next(s for s in listed if s["binary"] == "nova-scheduler")["zone"] == "internal"
    assert "forced_down" in (await api.get("/os-services", version="2.11")).json()["services"][0]
    latest = (await api.get("/os-services", params={"binary": "nova-compute", "host": "compute2"},
                            version="2.53")).json()["services"]
    assert len(latest) == 1 and len(latest[0]["id"]) == 36
    assert (await api.get("/os-services", token="demo-token")).status_code == 403

    def age(session):
        for row in session.query(Service).filter_by(host="compute2"):
            row.updated_at = row.last_seen_up = datetime.utcnow() - timedelta(seconds=600)
    hosts.run_sync(age)
    states = {s["host"]: s["state"] for s in (await api.get("/os-services")).json()["services"]}
    assert states["compute2"] == "down" and states["compute1"] == "up"


async def test_legacy_service_actions(api, hosts):
    body = {"host": "compute1", "binary": "nova-compute", "disabled_reason": "maintenance"}
    disabled = await api.put("/os-services/disable-log-reason", body)
    assert disabled.json() == {"service": {"host": "compute1", "binary": "nova-compute", "status": "disabled",
                                           "disabled_reason": "maintenance"}}
    compute1 = next(s for s in (await api.get("/os-services")).json()["services"] if s["host"] == "compute1")
    assert compute1["status"] == "disabled" and compute1["disabled_reason"] == "maintenance"
    enabled = await api.put("/os-services/enable", {"host": "compute1", "binary": "nova-compute"})
    assert enabled.json()["service"]["status"] == "enabled"
    assert (await api.put("/os-services/force-down", {"host": "compute1", "binary": "nova-compute",
                                                      "forced_down": True})).status_code == 400
    forced = await api.put("/os-services/force-down", {"host": "compute1", "binary": "nova-compute",
                                                       "forced_down": True}, version="2.11")
    assert forced.json()["service"]["forced_down"] is True
    listed = (await api.get("/os-services", version="2.11")).json()["services"]
    assert next(s for s in listed if s["host"] == "compute1")["state"] == "down"
    assert (await api.put("/os-services/disable", {"host": "nope", "binary": "nova-compute"})).status_code == 404
    assert (await api.put("/os-services/disable", {"host": "controller", "binary": "nova-scheduler"})
            ).status_code == 400
    assert (await api.put("/os-services/bogus", {"host": "compute1", "binary": "nova-compute"})).status_code == 404
    assert (await api.put("/os-services/enable", {"host": "compute1", "binary": "nova-compute"},
                          token="demo-token")).status_code == 403


async def test_service_update_and_delete_by_uuid(api, hosts):
    listed = (await api.get("/os-services", version="2.53")).json()["services"]
    c2 = next(s for s in listed if s["host"] == "compute2")
    updated = await api.put(f"/os-services/{c2['id']}", {"status": "disabled", "disabled_reason": "r"},
                            version="2.53")
    assert updated.status_code == 200
    assert updated.json()["service"]["status"] == "disabled" and updated.json()["service"]["forced_down"] is False
    assert (await api.put(f"/os-services/{c2['id']}", {}, version="2.53")).status_code == 400
    assert (await api.put(f"/os-services/{c2['id']}", {"status": "enabled", "disabled_reason": "x"},
                          version="2.53")).status_code == 400
    assert (await api.put("/os-services/disable", {"status": "enabled"}, version="2.53")).status_code == 400
    scheduler = next(s for s in listed if s["binary"] == "nova-scheduler")
    assert (await api.put(f"/os-services/{scheduler['id']}", {"status": "disabled"}, version="2.53")
            ).status_code == 400
    c1 = next(s for s in listed if s["host"] == "compute1")
    assert (await api.delete(f"/os-services/{c1['id']}", version="2.53")).status_code == 409
    assert (await api.delete(f"/os-services/{c2['id']}", version="2.53")).status_code == 204
    assert (await api.delete(f"/os-services/{c2['id']}", version="2.53")).status_code == 404
    assert (await api.delete("/os-services/abc", version="2.53")).status_code == 400
    assert (await api.delete("/os-services/abc")).status_code == 400
    assert (await api.delete("/os-services/9999")).status_code == 404
    hypervisors = (await api.get("/os-hypervisors")).json()["hypervisors"]
    assert [h["hypervisor_hostname"] for h in hypervisors] == ["compute1"]


async def test_hypervisors_per_microversion(api, hosts):
    listed = (await api.get("/os-hypervisors")).json()["hypervisors"]
    assert [set(h) for h in listed] == [{"id", "hypervisor_hostname", "state", "status"}] * 2
    assert isinstance(listed[0]["id"], int)
    shown = (await api.get(f"/os-hypervisors/{listed[0]['id']}")).json()["hypervisor"]
    assert shown["vcpus"] == 32 and shown["vcpus_used"] == 2 and shown["free_ram_mb"] == 131072 - 1024
    assert shown["running_vms"] == 1 and shown["hypervisor_type"] == "fake" and shown["host_ip"] == "127.0.0.1"
    assert isinstance(shown["cpu_info"], str) and shown["service"]["host"] == "compute1"
    new = (await api.get("/os-hypervisors/detail", version="2.53")).json()["hypervisors"]
    assert new[0]["cpu_info"] == {"arch": "x86_64"} and len(new[0]["id"]) == 36
    assert len(new[0]["service"]["id"]) == 36
    assert (await api.get(f"/os-hypervisors/{new[0]['id']}", version="2.53")).status_code == 200
    assert (await api.get("/os-hypervisors/compute1", version="2.53")).status_code == 400
    assert (await api.get("/os-hypervisors/compute1")).status_code == 404
    assert (await api.get("/os-hypervisors/999")).status_code == 404
    assert (await api.get(f"/os-hypervisors/{listed[0]['id']}/uptime")).status_code == 404  # host mapped to no cell
    assert (await api.get("/os-hypervisors", token="demo-token")).status_code == 403


async def test_hypervisor_search_servers_paging_and_statistics(api, hosts):
    found = (await api.get("/os-hypervisors/compute1/search")).json()["hypervisors"]
    assert [h["hypervisor_hostname"] for h in found] == ["compute1"]
    assert (await api.get("/os-hypervisors/nothing/search")).status_code == 404
    assert (await api.get("/os-hypervisors/compute1/search", version="2.53")).status_code == 404
    with_servers = (await api.get("/os-hypervisors/compute/servers")).json()["hypervisors"]
    assert with_servers[0]["servers"] == [{"name": "vm1", "uuid": "11111111-1111-1111-1111-111111111111"}]
    assert "servers" not in with_servers[1]
    pattern = await api.get("/os-hypervisors", params={"hypervisor_hostname_pattern": "compute2",
                                                       "with_servers": "true"}, version="2.53")
    assert [h["hypervisor_hostname"] for h in pattern.json()["hypervisors"]] == ["compute2"]
    assert (await api.get("/os-hypervisors", params={"hypervisor_hostname_pattern": "c", "limit": "1"},
                          version="2.53")).status_code == 400
    page = (await api.get("/os-hypervisors", params={"limit": "1"}, version="2.33")).json()
    assert len(page["hypervisors"]) == 1 and "hypervisors_links" in page
    rest = (await api.get("/os-hypervisors", params={"limit": "1", "marker": str(page["hypervisors"][0]["id"])},
                          version="2.33")).json()
    assert rest["hypervisors"][0]["hypervisor_hostname"] == "compute2"
    assert (await api.get("/os-hypervisors", params={"marker": "777"}, version="2.33")).status_code == 400
    assert len((await api.get("/os-hypervisors", params={"limit": "1"})).json()["hypervisors"]) == 2
    stats = (await api.get("/os-hypervisors/statistics")).json()["hypervisor_statistics"]
    assert stats["count"] == 2 and stats["vcpus"] == 64 and stats["vcpus_used"] == 2 and stats["running_vms"] == 1


async def test_availability_zones(api, hosts):
    zones = (await api.get("/os-availability-zone", token="demo-token")).json()["availabilityZoneInfo"]
    assert zones == [{"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]
    assert (await api.get("/os-availability-zone/detail", token="demo-token")).status_code == 403
    detail = {z["zoneName"]: z for z in (await api.get("/os-availability-zone/detail")).json()["availabilityZoneInfo"]}
    assert set(detail) == {"nova", "internal"}
    assert set(detail["nova"]["hosts"]) == {"compute1", "compute2"}
    entry = detail["nova"]["hosts"]["compute1"]["nova-compute"]
    assert entry["available"] is True and entry["active"] is True and entry["updated_at"]
    assert set(detail["internal"]["hosts"]["controller"]) == {"nova-scheduler", "nova-conductor"}
    for host in ("compute1", "compute2"):
        await api.put("/os-services/disable", {"host": host, "binary": "nova-compute"})
    zones = (await api.get("/os-availability-zone")).json()["availabilityZoneInfo"]
    assert zones == [{"zoneName": "nova", "zoneState": {"available": False}, "hosts": None}]


async def test_internal_zone_comes_last_whatever_reported_first(api, stub):
    db = stub.cells.default.db
    db.run_sync(services.report, "controller", "nova-conductor", "conductor")
    db.run_sync(services.report, "compute1", "nova-compute", "compute")
    zones = (await api.get("/os-availability-zone/detail")).json()["availabilityZoneInfo"]
    assert [z["zoneName"] for z in zones] == ["nova", "internal"]
