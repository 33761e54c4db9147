"""os-hosts, os-simple-tenant-usage, os-instance_usage_audit_log, os-quota-class-sets, extensions, the version
documents and the 410 routes, on the ASGI harness (a cell with reporting hosts, no agents)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from kilonova.compute.api import extensions, removed
from kilonova.compute.api.instance_usage_audit_log import last_completed_month
from kilonova.compute.db import mappings
from kilonova.compute.db.cell_models import Instance
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures
from tests.unit.test_compute_admin_hosts import hosts  # noqa: F401 - fixture

FLAVOR = {"name": "m1.small", "vcpus": 2, "memory_mb": 2048, "root_gb": 20, "ephemeral_gb": 5}
VM1 = "11111111-1111-1111-1111-111111111111"


def _usage_instances(db, now: datetime) -> None:
    """vm-a (demo) ran from 10 h ago until 4 h ago; vm-b (admin) from 3 h ago and still runs; vm-c (demo) was
    launched after the report's end; vm-d (demo) never launched."""
    def add(session):
        session.add(Instance(uuid="aaaaaaaa-0000-0000-0000-000000000001", display_name="vm-a",
                             project_id="demo-project", user_id="demo-user", host="compute1", vm_state="deleted",
                             flavor=FLAVOR, launched_at=now - timedelta(hours=10),
                             terminated_at=now - timedelta(hours=4), deleted=1))
        session.add(Instance(uuid="bbbbbbbb-0000-0000-0000-000000000002", display_name="vm-b",
                             project_id="admin-project", user_id="admin-user", host="compute2", vm_state="active",
                             flavor=dict(FLAVOR, name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1, ephemeral_gb=0),
                             launched_at=now - timedelta(hours=3)))
        session.add(Instance(uuid="cccccccc-0000-0000-0000-000000000003", display_name="vm-c",
                             project_id="demo-project", user_id="demo-user", host="compute1", vm_state="active",
                             flavor=FLAVOR, launched_at=now - timedelta(minutes=30)))
        session.add(Instance(uuid="dddddddd-0000-0000-0000-000000000004", display_name="vm-d",
                             project_id="demo-project", user_id="demo-user", vm_state="error", flavor=FLAVOR))
    db.run_sync(add)


def _fmt(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


async def test_simple_tenant_usage_numbers(api, hosts):
    now = datetime.utcnow().replace(microsecond=0)
    _usage_instances(hosts, now)
    start, end = now - timedelta(hours=12), now - timedelta(hours=1)
    reply = await api.get("/os-simple-tenant-usage", params={"start": _fmt(start), "end": _fmt(end), "detailed": "1"})
    assert reply.status_code == 200, reply.text
    usages = {u["tenant_id"]: u for u in reply.json()["tenant_usages"]}
    # vm1 of the hosts fixture never launched; vm-c launched after the end; vm-d never launched.
    assert set(usages) == {"demo-project", "admin-project"}
    demo = usages["demo-project"]
    assert demo["total_hours"] == 6.0 and demo["total_vcpus_usage"] == 12.0
    assert demo["total_memory_mb_usage"] == 12288.0 and demo["total_local_gb_usage"] == 150.0
    assert demo["start"] == start.strftime("%Y-%m-%dT%H:%M:%S.%f") and demo["stop"] == end.strftime(
        "%Y-%m-%dT%H:%M:%S.%f")
    (vm_a,) = demo["server_usages"]
    assert vm_a == {"hours": 6.0, "flavor": "m1.small", "instance_id": "aaaaaaaa-0000-0000-0000-000000000001",
                    "name": "vm-a", "memory_mb": 2048, "vcpus": 2, "local_gb": 25, "tenant_id": "demo-project",
                    "started_at": (now - timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                    "ended_at": (now - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                    "state": "terminated", "uptime": 6 * 3600}
    admin = usages["admin-project"]
    assert admin["total_hours"] == 2.0 and admin["total_memory_mb_usage"] == 1024.0
    assert admin["server_usages"][0]["state"] == "active" and admin["server_usages"][0]["ended_at"] is None
    # Not detailed: the totals without server_usages.
    brief = (await api.get("/os-simple-tenant-usage", params={"start": _fmt(start), "end": _fmt(end)})).json()
    assert all("server_usages" not in u for u in brief["tenant_usages"])
    # A project reads its own usage (always detailed), not another's; an empty period is {}.
    own = await api.get("/os-simple-tenant-usage/demo-project", params={"start": _fmt(start), "end": _fmt(end)},
                        token="demo-token")
    assert own.status_code == 200 and own.json()["tenant_usage"]["total_hours"] == 6.0
    assert (await api.get("/os-simple-tenant-usage/admin-project", token="demo-token")).status_code == 403
    assert (await api.get("/os-simple-tenant-usage", token="demo-token")).status_code == 403
    empty = await api.get("/os-simple-tenant-usage/demo-project",
                          params={"start": "2001-01-01T00:00:00", "end": "2001-01-02T00:00:00"})
    assert empty.json() == {"tenant_usage": {}}


async def test_simple_tenant_usage_paging_and_bad_input(api, hosts):
    now = datetime.utcnow().replace(microsecond=0)
    _usage_instances(hosts, now)
    window = {"start": _fmt(now - timedelta(hours=12)), "end": _fmt(now)}
    first = (await api.get("/os-simple-tenant-usage", params={**window, "limit": "1"}, version="2.40")).json()
    # Paged by (project, uuid): admin-project's vm-b first; the next link carries its uuid as the marker.
    assert [u["tenant_id"] for u in first["tenant_usages"]] == ["admin-project"]
    (link,) = first["tenant_usages_links"]
    assert link["rel"] == "next" and "marker=bbbbbbbb-0000-0000-0000-000000000002" in link["href"]
    second = (await api.get("/os-simple-tenant-usage", version="2.40",
                            params={**window, "limit": "1", "marker": "bbbbbbbb-0000-0000-0000-000000000002"})).json()
    assert [u["tenant_id"] for u in second["tenant_usages"]] == ["demo-project"]
    # Before 2.40 limit and marker are ignored, as upstream's schema lets unknown parameters through.
    old = (await api.get("/os-simple-tenant-usage", params={**window, "limit": "1"})).json()
    assert len(old["tenant_usages"]) == 2 and "tenant_usages_links" not in old
    bad = [({"start": "yesterday"}, "2.1", "Invalid datetime string: Datetime is in invalid format"),
           ({"start": "2020-01-01T00:00:00Z"}, "2.1", "Invalid datetime string"),
           ({"start": _fmt(now), "end": _fmt(now - timedelta(hours=1))}, "2.1", "Invalid start time."),
           ({"limit": "-1"}, "2.40", "Invalid input for query parameters limit"),
           ({"marker": "no-such-instance"}, "2.40", "Marker no-such-instance could not be found."),
           ({"color": "blue"}, "2.75", "Additional properties are not allowed")]
    for params, version, message in bad:
        reply = await api.get("/os-simple-tenant-usage", params=params, version=version)
        assert reply.status_code == 400 and message in reply.json()["badRequest"]["message"], (params, reply.text)
    assert (await api.get("/os-simple-tenant-usage", params={"color": "blue"}, version="2.74")).status_code == 200
    shown = await api.get("/os-simple-tenant-usage/demo-project", params={"detailed": "1"}, version="2.75")
    assert shown.status_code == 400  # show knows no "detailed"


async def test_os_hosts_list_show_and_removal_at_2_43(api, hosts, stub):
    listed = (await api.get("/os-hosts")).json()["hosts"]
    assert {(h["host_name"], h["service"], h["zone"]) for h in listed} == {
        ("compute1", "compute", "nova"), ("compute2", "compute", "nova"),
        ("controller", "scheduler", "internal"), ("controller", "conductor", "internal")}
    assert [h["host_name"] for h in (await api.get("/os-hosts", params={"zone": "internal"})).json()["hosts"]] == [
        "controller", "controller"]
    assert (await api.get("/os-hosts", token="demo-token")).json()["forbidden"]["message"] == (
        "Policy doesn't allow os_compute_api:os-hosts:list to be performed.")
    assert (await api.get("/os-hosts", version="2.43")).status_code == 404
    # A host mapped to no cell is upstream's HostMappingNotFound.
    assert (await api.get("/os-hosts/compute1")).json() == {
        "itemNotFound": {"code": 404, "message": "Host 'compute1' is not mapped to any cell"}}
    stub.api_db.run_sync(mappings.map_host, "compute1", stub.cells.default.uuid)
    shown = (await api.get("/os-hosts/compute1", version="2.42")).json()["host"]
    assert shown[0] == {"resource": {"host": "compute1", "project": "(total)", "cpu": 32, "memory_mb": 131072,
                                     "disk_gb": 2048}}
    assert shown[1]["resource"]["project"] == "(used_now)" and shown[1]["resource"]["cpu"] == 2
    assert shown[2]["resource"] == {"host": "compute1", "project": "(used_max)", "cpu": 2, "memory_mb": 1024,
                                    "disk_gb": 0}
    assert shown[3]["resource"]["project"] == "demo-project" and len(shown) == 4
    # Bodies checked before the host is asked anything; an empty body just names the host (upstream's schema).
    assert (await api.put("/os-hosts/compute1", {"status": "on"})).status_code == 400
    assert (await api.put("/os-hosts/compute1", {"host": {"status": "enable"}})).status_code == 400
    assert (await api.put("/os-hosts/compute1", {})).json() == {"host": "compute1"}
    assert (await api.put("/os-hosts/nowhere", {"status": "enable"})).status_code == 404
    assert (await api.get("/os-hosts/compute1/reboot", token="demo-token")).json()["forbidden"]["message"] == (
        "Policy doesn't allow os_compute_api:os-hosts:reboot to be performed.")


async def test_instance_usage_audit_log(api, hosts):
    report = (await api.get("/os-instance_usage_audit_log")).json()["instance_usage_audit_logs"]
    assert report["hosts_not_run"] == ["compute1", "compute2"] and report["num_hosts"] == 2
    assert report["overall_status"] == "0 of 2 hosts done. 0 errors." and report["log"] == {}
    shown = (await api.get("/os-instance_usage_audit_log/2012-07-05 10:00:00")).json()["instance_usage_audit_log"]
    assert (shown["period_beginning"], shown["period_ending"]) == ("2012-06-01 00:00:00", "2012-07-01 00:00:00")
    micro = (await api.get("/os-instance_usage_audit_log/2012-01-01 00:00:00.000001")).json()
    assert micro["instance_usage_audit_log"]["period_ending"] == "2012-01-01 00:00:00"
    bad = await api.get("/os-instance_usage_audit_log/last-tuesday")
    assert bad.json() == {"badRequest": {"code": 400, "message": "Invalid timestamp for date last-tuesday"}}
    assert (await api.get("/os-instance_usage_audit_log/0001-01-01 00:00:00")).status_code == 400
    assert (await api.get("/os-instance_usage_audit_log", token="demo-token")).status_code == 403
    # A period ending exactly at the given date is not completed yet.
    assert last_completed_month(datetime(2012, 1, 1)) == (datetime(2011, 11, 1), datetime(2011, 12, 1))


async def test_quota_class_default_drives_project_defaults(api, stub):
    shown = (await api.get("/os-quota-class-sets/default")).json()["quota_class_set"]
    assert shown["id"] == "default" and shown["instances"] == 10 and "server_groups" not in shown
    assert "floating_ips" in shown and "injected_files" in shown
    at_250 = (await api.get("/os-quota-class-sets/default", version="2.50")).json()["quota_class_set"]
    assert "server_groups" in at_250 and "floating_ips" not in at_250 and "injected_files" in at_250
    at_257 = (await api.get("/os-quota-class-sets/default", version="2.57")).json()["quota_class_set"]
    assert "injected_files" not in at_257 and "server_group_members" in at_257
    updated = await api.put("/os-quota-class-sets/default", {"quota_class_set": {"instances": "25", "cores": 40}})
    assert updated.status_code == 200 and "id" not in updated.json()["quota_class_set"]
    assert updated.json()["quota_class_set"]["instances"] == 25
    # Every project without overrides of its own now has the class's defaults.
    assert (await api.get("/os-quota-sets/demo-project", token="demo-token")).json()["quota_set"]["instances"] == 25
    assert (await api.get("/os-quota-sets/demo-project/defaults")).json()["quota_set"]["cores"] == 40
    assert (await api.get("/limits", token="demo-token")).json()["limits"]["absolute"]["maxTotalInstances"] == 25
    # Another class shows its own limits over the defaults.
    other = await api.put("/os-quota-class-sets/gold", {"quota_class_set": {"ram": 1}}, version="2.50")
    assert other.json()["quota_class_set"]["ram"] == 1 and other.json()["quota_class_set"]["instances"] == 25
    for body, version in (({"quota_class_set": {"server_groups": 1}}, "2.49"),
                          ({"quota_class_set": {"floating_ips": 1}}, "2.50"),
                          ({"quota_class_set": {"injected_files": 1}}, "2.57"),
                          ({"quota_class_set": {"instances": -2}}, "2.1"),
                          ({"quota_class_set": {"instances": "ten"}}, "2.1"),
                          ({"quota_class_set": {"bogus": 1}}, "2.1"), ({"instances": 1}, "2.1"),
                          ({"quota_class_set": {"instances": "9" * 30}}, "2.1")):
        reply = await api.put("/os-quota-class-sets/default", body, version=version)
        assert reply.status_code == 400 and "badRequest" in reply.json(), (body, version, reply.text)
    long_name = await api.put("/os-quota-class-sets/" + "x" * 256, {"quota_class_set": {}})
    assert long_name.status_code == 400
    for method in (api.get, api.put):
        denied = await method("/os-quota-class-sets/default", token="demo-token")
        assert denied.status_code == 403 and "os-quota-class-sets" in denied.json()["forbidden"]["message"]


async def test_extensions_versions_and_gone_routes(api):
    listed = (await api.get("/extensions")).json()["extensions"]
    assert len(listed) == 99 and listed[0]["alias"] == "NMN" and listed[-1]["alias"] == "os-volumes"
    assert (await api.get("/extensions/os-hosts", token="demo-token")).json()["extension"] == {
        "alias": "os-hosts", "description": "Admin-only host administration.", "links": [], "name": "Hosts",
        "namespace": "http://docs.openstack.org/compute/ext/fake_xml", "updated": "2014-12-03T00:00:00Z"}
    assert (await api.get("/extensions/os-nothing")).status_code == 404
    assert len({e["alias"] for e in extensions.EXTENSIONS}) == 99
    for path, methods in removed.GONE:
        concrete = path.replace("/v2.1", "").replace("{item}", "x").replace("{domain}", "d").replace(
            "{server_id}", VM1)
        for method in methods:
            for version in ("2.1", "2.36", "2.91"):
                reply = await api.request(method, concrete, version=version, token="demo-token")
                assert reply.status_code == 410, (method, concrete, version, reply.text)
                assert reply.json()["computeFault"]["code"] == 410
    # The proxies' reads are 404 from 2.36 (their 410 writes are not).
    for path in ("/os-networks", "/os-networks/x", "/os-tenant-networks", "/os-tenant-networks/x", "/images",
                 "/images/detail", "/images/x", "/images/x/metadata", "/images/x/metadata/k", "/os-baremetal-nodes",
                 "/os-baremetal-nodes/x"):
        assert (await api.get(path, version="2.36")).status_code == 404, path
    for method, path in (("POST", "/images/x/metadata"), ("PUT", "/images/x/metadata"),
                         ("PUT", "/images/x/metadata/k"), ("DELETE", "/images/x/metadata/k"), ("DELETE", "/images/x")):
        assert (await api.request(method, path, version="2.36", json={})).status_code == 404, (method, path)
    assert (await api.get("/os-baremetal-nodes")).status_code == 501
    assert (await api.post("/os-baremetal-nodes", {"node": {}})).json()["badRequest"]["message"] == (
        "Command Not supported. Please use Ironic command node-create to perform this action.")


async def test_version_documents(api):
    """/v2.1 is public; /v2.1/ and /v2.1/versions/{id} are the API's, behind the token; a project's URL
    without its slash redirects to the one with."""
    client = api._client
    for path, headers in (("/v2.1", {}), ("/v2.1/", {"X-Auth-Token": "demo-token"}),
                          ("/v2.1/versions/v2.1", {"X-Auth-Token": "demo-token"})):
        reply = await client.get(path, headers=headers)
        assert reply.status_code == 200, path
        doc = reply.json()["version"]
        assert doc["id"] == "v2.1" and doc["links"][0] == {"rel": "self", "href": "http://compute/v2.1/"}
        assert doc["media-types"][0]["type"] == "application/vnd.openstack.compute+json;version=2.1"
    assert (await client.get("/v2.1/")).status_code == 401
    assert (await client.get("/v2.1/versions/v2.1")).status_code == 401
    project = "0123456789abcdef0123456789abcdef"
    redirect = await client.get(f"/v2.1/{project}")
    assert redirect.status_code == 302 and redirect.headers["location"] == f"http://compute/v2.1/{project}/"
    assert (await client.get("/")).json()["versions"][1]["id"] == "v2.1"
    v20 = await client.get("/v2.1/versions/v2.0", headers={"X-Auth-Token": "demo-token"})
    assert v20.json()["version"]["media-types"][0]["type"].endswith("version=2")
    assert (await client.get("/v2.1/versions/v3", headers={"X-Auth-Token": "demo-token"})).status_code == 404


async def test_libvirt_driver_answers_uptime_with_the_uptime_command():
    from kilonova.compute.virt.libvirt.driver import LibvirtDriver

    line = await LibvirtDriver.get_host_uptime(None)  # reads nothing of the driver: the host's own uptime
    assert " up " in line and "load average" in line
    with pytest.raises(NotImplementedError):  # the other host calls are not libvirt's, as upstream
        await LibvirtDriver.host_power_action(None, "reboot")


PERSONAS = {
    "admin-token": ("admin-user", "admin-project", ["admin", "member", "reader"]),
    "manager-token": ("boss", "demo-project", ["manager", "member", "reader"]),
    "member-token": ("demo-user", "demo-project", ["member", "reader"]),
    "reader-token": ("auditor", "demo-project", ["reader"]),
    "other-token": ("stranger", "other-project", ["member", "reader"]),
}


@pytest.fixture
async def personas(stub):
    from kilonova.common.testing import FakeValidator
    from kilonova.compute.api.app import create_app
    from tests.unit.test_compute_admin_harness import Client

    client = Client(create_app(FakeValidator(PERSONAS, id_suffix=""), stub))
    yield client
    await client.aclose()


@pytest.mark.parametrize("token, usage_own, usage_list, admin_only", [
    ("admin-token", 200, 200, 200), ("manager-token", 200, 403, 403), ("member-token", 200, 403, 403),
    ("reader-token", 200, 403, 403), ("other-token", 403, 403, 403)])
async def test_policy_personas(personas, token, usage_own, usage_list, admin_only):
    """Upstream's defaults: a project's readers read its usage; lists, hosts, quota classes and the audit log
    are the admin's; extensions anybody's."""
    assert (await personas.get("/os-simple-tenant-usage/demo-project", token=token)).status_code == usage_own
    assert (await personas.get("/os-simple-tenant-usage", token=token)).status_code == usage_list
    for path in ("/os-hosts", "/os-quota-class-sets/default", "/os-instance_usage_audit_log"):
        assert (await personas.get(path, token=token)).status_code == admin_only, path
    assert (await personas.put("/os-quota-class-sets/default", {"quota_class_set": {}}, token=token)).status_code \
        == admin_only
    assert (await personas.get("/extensions", token=token)).status_code == 200


async def test_console_auth_token_show(api, stub):
    from kilonova.compute.db import console_tokens

    stub.api_db.run_sync(mappings.create_instance_mapping, VM1, "demo-project", "demo-user")
    stub.api_db.run_sync(lambda s: console_tokens.create(s, "tok-1", instance_uuid=VM1, console_type="novnc",
                                                         host="192.0.2.7", port=5901, ttl=600))
    shown = await api.get("/os-console-auth-tokens/tok-1", version="2.31")
    assert shown.json() == {"console": {"instance_uuid": VM1, "host": "192.0.2.7", "port": 5901,
                                        "internal_access_path": None}}
    # Looked up, not used: the proxy can still consume it.
    assert stub.api_db.run_sync(console_tokens.peek, "tok-1") is not None
    before = await api.get("/os-console-auth-tokens/tok-1", version="2.30")
    assert before.json() == {"unauthorized": {"code": 401,
                                              "message": "The requested console type details are not accessible"}}
    assert (await api.get("/os-console-auth-tokens/nope", version="2.31")).json() == {
        "itemNotFound": {"code": 404, "message": "Token not found"}}
    assert (await api.get("/os-console-auth-tokens/tok-1", token="demo-token")).status_code == 403


async def test_os_volumes_boot_routes_to_the_servers_handlers():
    from kilonova.compute.api.app import build_router

    router = build_router()
    for method, rest in (("GET", ""), ("POST", ""), ("GET", "/detail"), ("GET", "/{server_id}"),
                         ("PUT", "/{server_id}"), ("DELETE", "/{server_id}"), ("POST", "/{server_id}/action")):
        assert router.handler(method, "/v2.1/os-volumes_boot" + rest) is router.handler(method, "/v2.1/servers" + rest)
