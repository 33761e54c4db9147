"""The compute admin data layer: flavors, keypairs, quotas, services and compute nodes on SQLite."""
from datetime import datetime, timedelta

import pytest

from kilonova.common.db import Conflict, Database, NotFound, migrate
from kilonova.compute import cells as cells_mod
from kilonova.compute.api.service import API_MIGRATIONS
from kilonova.compute.db import compute_nodes, flavors, keypairs, quotas, services
from kilonova.compute.db.api_models import APIBase
from kilonova.compute.db.cell_models import CellBase, Instance
from kilonova.config import Config


@pytest.fixture
def api_db(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/api.db", name="api")
    migrate(db, API_MIGRATIONS, APIBase.metadata)
    yield db
    db.close()


@pytest.fixture
def cell_db(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/cell.db", name="cell")
    migrate(db, cells_mod.CELL_MIGRATIONS, CellBase.metadata)
    yield db
    db.close()


def test_default_flavors_are_created_once(api_db):
    api_db.run_sync(flavors.ensure_defaults)
    api_db.run_sync(flavors.ensure_defaults)
    rows = api_db.run_sync(flavors.list_flavors)
    assert [(f.name, f.flavorid, f.vcpus, f.memory_mb, f.root_gb) for f in rows] == [
        ("m1.tiny", "1", 1, 512, 1), ("m1.small", "2", 1, 2048, 20), ("m1.medium", "3", 2, 4096, 40),
        ("m1.large", "4", 4, 8192, 80), ("m1.xlarge", "5", 8, 16384, 160)]
    snap = api_db.run_sync(lambda s: flavors.snapshot(flavors.get_by_flavorid(s, "2")))
    assert snap == {"id": "2", "name": "m1.small", "vcpus": 1, "memory_mb": 2048, "root_gb": 20,
                    "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0, "vcpu_weight": None, "is_public": True,
                    "disabled": False, "description": None, "extra_specs": {}}
    with pytest.raises(NotFound):
        api_db.run_sync(flavors.get_by_flavorid, "nope")


def test_flavor_create_duplicates_access_and_specs(api_db):
    api_db.run_sync(flavors.create, {"name": "p", "flavorid": "p1", "vcpus": 1, "memory_mb": 64, "root_gb": 0,
                                     "is_public": False})
    with pytest.raises(flavors.FlavorExists):
        api_db.run_sync(flavors.create, {"name": "p", "vcpus": 1, "memory_mb": 64})
    with pytest.raises(flavors.FlavorIdExists):
        api_db.run_sync(flavors.create, {"name": "q", "flavorid": "p1", "vcpus": 1, "memory_mb": 64})
    auto = api_db.run_sync(flavors.create, {"name": "auto", "vcpus": 1, "memory_mb": 64})
    assert len(auto.flavorid) == 36
    assert [f.flavorid for f in api_db.run_sync(flavors.list_flavors, project_id="proj")] == [auto.flavorid]
    assert api_db.run_sync(flavors.add_access, "p1", "proj") == ["proj"]
    with pytest.raises(Conflict):
        api_db.run_sync(flavors.add_access, "p1", "proj")
    assert {f.flavorid for f in api_db.run_sync(flavors.list_flavors, project_id="proj")} == {"p1", auto.flavorid}
    assert api_db.run_sync(flavors.get_by_flavorid, "p1", project_id="proj", is_admin=False).name == "p"
    with pytest.raises(NotFound):
        api_db.run_sync(flavors.get_by_flavorid, "p1", project_id="other", is_admin=False)
    assert api_db.run_sync(flavors.set_extra_specs, "p1", {"hw:cpu_policy": "dedicated"}) == {
        "hw:cpu_policy": "dedicated"}
    api_db.run_sync(flavors.delete_extra_spec, "p1", "hw:cpu_policy")
    with pytest.raises(NotFound):
        api_db.run_sync(flavors.delete_extra_spec, "p1", "hw:cpu_policy")
    api_db.run_sync(flavors.delete, "p1")
    with pytest.raises(NotFound):
        api_db.run_sync(flavors.get_by_flavorid, "p1")


def test_keypairs(api_db):
    for name in ("b", "a", "c"):
        api_db.run_sync(keypairs.create, {"user_id": "u", "name": name, "public_key": "ssh-rsa AAA",
                                          "fingerprint": "fp", "type": "ssh"})
    with pytest.raises(Conflict):
        api_db.run_sync(keypairs.create, {"user_id": "u", "name": "a", "public_key": "k", "fingerprint": "f"})
    assert [k.name for k in api_db.run_sync(keypairs.list_for_user, "u", limit=2)] == ["a", "b"]
    assert [k.name for k in api_db.run_sync(keypairs.list_for_user, "u", marker="b")] == ["c"]
    assert api_db.run_sync(keypairs.count, "u") == 3
    assert api_db.run_sync(keypairs.get, "u", "a").public_key == "ssh-rsa AAA"
    api_db.run_sync(keypairs.delete, "u", "a")
    with pytest.raises(NotFound):
        api_db.run_sync(keypairs.get, "u", "a")


def test_quota_limits_and_usage(api_db, cell_db):
    conf = Config.load(state_dir="/tmp/kilonova-test-unused", overrides={"quota": {"cores": "7"}})
    limits = api_db.run_sync(quotas.get_limits, "p", conf)
    assert limits["cores"] == 7 and limits["instances"] == 10 and limits["security_groups"] == 10
    api_db.run_sync(quotas.set_limits, "p", {"instances": -1, "cores": 3})
    assert api_db.run_sync(quotas.get_limits, "p", conf)["instances"] == -1
    api_db.run_sync(quotas.delete_limits, "p")
    assert api_db.run_sync(quotas.get_limits, "p", conf)["instances"] == 10

    def add(session, uuid, deleted=0):
        session.add(Instance(uuid=uuid, project_id="p", user_id="u", vm_state="active", deleted=deleted,
                             flavor={"vcpus": 2, "memory_mb": 512}))
    cell_db.run_sync(add, "i1")
    cell_db.run_sync(add, "i2")
    cell_db.run_sync(add, "i3", 99)
    assert cell_db.run_sync(quotas.count_usage, "p") == {"instances": 2, "cores": 4, "ram": 1024}
    assert cell_db.run_sync(quotas.count_usage, "other") == {"instances": 0, "cores": 0, "ram": 0}


def test_service_heartbeats_and_compute_nodes(cell_db):
    first = cell_db.run_sync(services.report, "h1", "nova-compute", "compute")
    again = cell_db.run_sync(services.report, "h1", "nova-compute", "compute")
    assert first["id"] == again["id"] and first["uuid"] == again["uuid"]
    assert again["disabled"] is False and again["forced_down"] is False
    svc = cell_db.run_sync(services.get, first["uuid"])
    assert svc.report_count == 2 and services.is_up(svc, 60)
    assert not services.is_up(svc, 60, now=datetime.utcnow() + timedelta(seconds=120))
    cell_db.run_sync(services.update, first["id"], {"disabled": True, "disabled_reason": "maint"})
    assert cell_db.run_sync(services.report, "h1", "nova-compute", "compute")["disabled"] is True

    full = {"vcpus": 8, "memory_mb": 1024, "local_gb": 10, "hypervisor_type": "fake", "hypervisor_version": 1000,
            "host_ip": "127.0.0.1", "cpu_info": "{}", "hypervisor_hostname": "h1", "supported_instances": []}
    uuid = cell_db.run_sync(compute_nodes.upsert, "h1", "h1", full, first["id"])
    assert cell_db.run_sync(compute_nodes.upsert, "h1", "h1", {"vcpus_used": 2, "running_vms": 1}, None) == uuid
    node, service = cell_db.run_sync(compute_nodes.get_with_service, uuid)
    assert (node.vcpus, node.vcpus_used, node.running_vms, node.service_id) == (8, 2, 1, first["id"])
    assert service.host == "h1"
    cell_db.run_sync(services.delete, first["id"])
    assert cell_db.run_sync(compute_nodes.list_with_services) == []
    with pytest.raises(NotFound):
        cell_db.run_sync(services.get, first["id"])
