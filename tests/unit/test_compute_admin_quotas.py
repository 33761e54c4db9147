"""/v2.1/limits and /v2.1/os-quota-sets: fields per microversion, usage across cells, admin updates."""
import pytest

from kilonova.compute.db.cell_models import Instance
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures


@pytest.fixture
def usage(stub):
    def add(session, uuid, deleted=0):
        session.add(Instance(uuid=uuid, project_id="demo-project", user_id="demo-user", vm_state="active",
                             deleted=deleted, flavor={"vcpus": 2, "memory_mb": 512}))
    stub.cells.default.db.run_sync(add, "a")
    stub.cells.cell0.db.run_sync(add, "b")
    stub.cells.default.db.run_sync(add, "c", 7)


async def test_limits_per_microversion(api, usage):
    absolute = (await api.get("/limits", token="demo-token")).json()
    assert absolute["limits"]["rate"] == []
    limits = absolute["limits"]["absolute"]
    assert limits == {"maxTotalRAMSize": 51200, "maxTotalInstances": 10, "maxTotalCores": 20,
                      "maxTotalKeypairs": 100, "maxTotalFloatingIps": 10, "maxServerMeta": 128, "maxImageMeta": 128,
                      "maxPersonality": 5, "maxPersonalitySize": 10240, "maxSecurityGroups": 10,
                      "maxSecurityGroupRules": 20, "maxServerGroups": 10, "maxServerGroupMembers": 10,
                      "totalRAMUsed": 1024, "totalCoresUsed": 4, "totalInstancesUsed": 2,
                      "totalFloatingIpsUsed": 0, "totalSecurityGroupsUsed": 0, "totalServerGroupsUsed": 0}
    v236 = (await api.get("/limits", token="demo-token", version="2.36")).json()["limits"]["absolute"]
    assert not {"maxTotalFloatingIps", "maxSecurityGroups", "maxSecurityGroupRules", "totalFloatingIpsUsed",
                "totalSecurityGroupsUsed"} & set(v236)
    assert "maxImageMeta" in v236 and "maxImageMeta" not in \
        (await api.get("/limits", version="2.39")).json()["limits"]["absolute"]
    v257 = (await api.get("/limits", version="2.57")).json()["limits"]["absolute"]
    assert "maxPersonality" not in v257 and "maxPersonalitySize" not in v257 and "maxServerMeta" in v257
    mine = (await api.get("/limits")).json()["limits"]["absolute"]
    assert mine["totalInstancesUsed"] == 0
    theirs = (await api.get("/limits", params={"tenant_id": "demo-project"})).json()["limits"]["absolute"]
    assert theirs["totalInstancesUsed"] == 2
    assert (await api.get("/limits", params={"tenant_id": "admin-project"}, token="demo-token")).status_code == 403


async def test_quota_show_detail_defaults(api, usage):
    shown = (await api.get("/os-quota-sets/demo-project", token="demo-token")).json()["quota_set"]
    assert shown["id"] == "demo-project" and shown["instances"] == 10 and shown["fixed_ips"] == -1
    assert len(shown) == 15
    assert (await api.get("/os-quota-sets/admin-project", token="demo-token")).status_code == 403
    v236 = (await api.get("/os-quota-sets/demo-project", version="2.36")).json()["quota_set"]
    assert "floating_ips" not in v236 and "injected_files" in v236
    v257 = (await api.get("/os-quota-sets/demo-project", version="2.57")).json()["quota_set"]
    assert set(v257) == {"id", "instances", "cores", "ram", "metadata_items", "key_pairs", "server_groups",
                         "server_group_members"}
    detail = (await api.get("/os-quota-sets/demo-project/detail")).json()["quota_set"]
    assert detail["cores"] == {"in_use": 4, "limit": 20, "reserved": 0}
    defaults = (await api.get("/os-quota-sets/anything/defaults", token="demo-token")).json()["quota_set"]
    assert defaults["id"] == "anything" and defaults["ram"] == 51200


async def test_quota_update_and_delete(api, usage):
    denied = await api.put("/os-quota-sets/demo-project", {"quota_set": {"instances": 5}}, token="demo-token")
    assert denied.status_code == 403
    updated = await api.put("/os-quota-sets/demo-project", {"quota_set": {"instances": "5", "cores": -1}})
    assert updated.status_code == 200
    body = updated.json()["quota_set"]
    assert "id" not in body and body["instances"] == 5 and body["cores"] == -1
    too_low = await api.put("/os-quota-sets/demo-project", {"quota_set": {"instances": 1}})
    assert too_low.status_code == 400
    assert too_low.json()["badRequest"]["message"] == (
        "Quota limit 1 for instances must be greater than or equal to already used and reserved 2.")
    forced = await api.put("/os-quota-sets/demo-project", {"quota_set": {"instances": 1, "force": True}})
    assert forced.json()["quota_set"]["instances"] == 1
    for bad in ({"quota_set": {"instances": -2}}, {"quota_set": {"bogus": 1}}, {"quota_set": {"ram": "x"}},
                {"quota": {}}):
        assert (await api.put("/os-quota-sets/demo-project", bad)).status_code == 400, bad
    assert (await api.put("/os-quota-sets/demo-project", {"quota_set": {"floating_ips": 1}},
                          version="2.36")).status_code == 400
    assert (await api.put("/os-quota-sets/demo-project", {"quota_set": {"injected_files": 1}},
                          version="2.57")).status_code == 400
    assert (await api.get("/limits", token="demo-token")).json()["limits"]["absolute"]["maxTotalInstances"] == 1
    assert (await api.delete("/os-quota-sets/demo-project", token="demo-token")).status_code == 403
    assert (await api.delete("/os-quota-sets/demo-project")).status_code == 202
    assert (await api.get("/os-quota-sets/demo-project")).json()["quota_set"]["instances"] == 10
