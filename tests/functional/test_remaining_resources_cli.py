"""Upstream's remaining compute resources through the real clients: os-hosts, usage, the audit log, quota
classes, hypervisor uptime, the image and network proxies, extensions, version documents and the 410 routes."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

# The fake hosts answer the machine's own uptime line, as a libvirt host does its own.
UPTIME = re.compile(r"^ ?\d{2}:\d{2}:\d{2} up .*load average: [0-9.]+, [0-9.]+, [0-9.]+\n?$")
BOOT = ["--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network", "private"]


def compute_call(cloud, method: str, path: str, version: str, cloud_name: str = "kilonova", **kwargs):
    with cloud.http("compute", cloud_name) as compute:
        return compute.request(method, path, headers={"OpenStack-API-Version": f"compute {version}"}, **kwargs)


@pytest.fixture(scope="module")
def demo_server(cloud):
    """A server of the demo project that has run for a moment."""
    server = cloud.openstack("server", "create", *BOOT, "--wait", "usage-vm", cloud="kilonova-demo", fmt_json=True)
    time.sleep(1)
    yield server
    cloud.openstack("server", "delete", "--wait", server["id"], cloud="kilonova-demo", check=False)


def test_usage_list_and_show_through_both_clis(cloud, demo_server):
    project = cloud.openstack("project", "show", "demo", fmt_json=True)["id"]
    today = datetime.now(timezone.utc)
    window = ["--start", (today - timedelta(days=1)).strftime("%Y-%m-%d"),
              "--end", (today + timedelta(days=1)).strftime("%Y-%m-%d")]
    listed = {row["Project"]: row for row in cloud.openstack("usage", "list", *window, fmt_json=True)}
    demo = listed.get("demo") or listed[project]
    assert float(demo["CPU Hours"]) > 0 and float(demo["RAM MB-Hours"]) > 0
    # openstacksdk asks for detailed=True where upstream takes only "1": no server_usages, so no count (as
    # the CLI shows against upstream Nova too); the show is always detailed.
    assert not demo["Servers"]
    shown = cloud.openstack("usage", "show", *window, cloud="kilonova-demo", fmt_json=True)
    assert len(shown["Servers"]) >= 1 and float(shown["CPU Hours"]) > 0
    # The raw numbers: hours times the flavor's size, the server among server_usages.
    reply = compute_call(cloud, "GET", f"/os-simple-tenant-usage/{project}", "2.40", "kilonova-demo",
                         params={"start": (today - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")})
    usage = reply.json()["tenant_usage"]
    mine = next(s for s in usage["server_usages"] if s["instance_id"] == demo_server["id"])
    assert mine["flavor"] == "m1.tiny" and mine["vcpus"] == 1 and mine["memory_mb"] == 512 and mine["local_gb"] == 1
    assert mine["state"] == "active" and mine["ended_at"] is None and mine["hours"] > 0
    assert usage["total_memory_mb_usage"] >= 512 * mine["hours"]
    nova = cloud.nova("usage", "--start", (today - timedelta(days=1)).strftime("%Y-%m-%d"),
                      cloud="kilonova-demo").stdout
    assert re.search(r"\| Servers +\| RAM MiB-Hours", nova)
    # (other modules sharing this cloud may have demo servers too: at least this one is counted)
    counted = re.search(r"\| (\d+) +\| [0-9.]+ +\|", nova)
    assert counted and int(counted.group(1)) >= 1, nova
    assert "CPU Hours" in cloud.nova("usage-list").stdout
    # Another project's usage is the admin's to read only.
    admin_project = cloud.openstack("project", "show", "admin", fmt_json=True)["id"]
    denied = compute_call(cloud, "GET", f"/os-simple-tenant-usage/{admin_project}", "2.1", "kilonova-demo")
    assert denied.status_code == 403
    assert denied.json()["forbidden"]["message"] == (
        "Policy doesn't allow os_compute_api:os-simple-tenant-usage:show to be performed.")


def test_os_hosts_through_openstack_cli(cloud):
    hosts = cloud.openstack("host", "list", fmt_json=True)
    assert {("compute1", "compute", "nova"), ("compute2", "compute", "nova")} <= {
        (h["Host Name"], h["Service"], h["Zone"]) for h in hosts}
    rows = cloud.openstack("host", "show", "compute1", fmt_json=True)
    assert rows[0]["Project"] == "(total)" and rows[0]["CPU"] == 32 and rows[0]["Disk GB"] == 2048
    assert [r["Project"] for r in rows[:3]] == ["(total)", "(used_now)", "(used_max)"]
    # The fake driver answers the host calls as upstream's fake driver does.
    cloud.openstack("host", "set", "--enable", "--disable-maintenance", "compute1")
    reply = compute_call(cloud, "PUT", "/os-hosts/compute1", "2.42",
                         json={"status": "Disable", "maintenance_mode": "enable"})
    assert reply.json() == {"host": "compute1", "status": "disabled", "maintenance_mode": "on_maintenance"}
    assert compute_call(cloud, "GET", "/os-hosts/compute2/reboot", "2.1").json() == {
        "host": "compute2", "power_action": "reboot"}
    assert compute_call(cloud, "GET", "/os-hosts/compute2/startup", "2.1").json()["power_action"] == "startup"
    assert compute_call(cloud, "GET", "/os-hosts/nowhere", "2.1").status_code == 404
    assert compute_call(cloud, "GET", "/os-hosts", "2.43").status_code == 404
    denied = cloud.openstack("host", "list", cloud="kilonova-demo", check=False)
    assert denied.returncode != 0 and "403" in denied.stderr


def test_hypervisor_uptime_before_and_from_2_88(cloud):
    shown = cloud.openstack("hypervisor", "show", "compute1", fmt_json=True)
    assert re.match(r"^[0-9.]+, [0-9.]+, [0-9.]+$", shown["load_average"]) and shown["uptime"]
    node = next(h["ID"] for h in cloud.openstack("--os-compute-api-version", "2.53", "hypervisor", "list",
                                                 fmt_json=True) if h["Hypervisor Hostname"] == "compute1")
    # The nova CLI takes a name before 2.53 and, as upstream, only the uuid from 2.53.
    assert "load average: " in cloud.nova("--os-compute-api-version", "2.1", "hypervisor-uptime", "compute1").stdout
    assert "load average: " in cloud.nova("hypervisor-uptime", node).stdout
    assert "Invalid uuid compute1" in cloud.nova("hypervisor-uptime", "compute1", check=False).stderr
    raw = compute_call(cloud, "GET", f"/os-hypervisors/{node}/uptime", "2.53").json()["hypervisor"]
    assert UPTIME.match(raw["uptime"]) and raw["state"] == "up" and set(raw) == {
        "id", "hypervisor_hostname", "state", "status", "uptime"}
    newest = compute_call(cloud, "GET", f"/os-hypervisors/{node}", "2.88").json()["hypervisor"]
    assert UPTIME.match(newest["uptime"])
    detail = compute_call(cloud, "GET", "/os-hypervisors/detail", "2.88").json()["hypervisors"]
    assert len(detail) == cloud.hosts and all(UPTIME.match(h["uptime"]) for h in detail)
    assert compute_call(cloud, "GET", f"/os-hypervisors/{node}/uptime", "2.88").status_code == 404


def test_quota_class_default_through_both_clis(cloud):
    assert re.search(r"\| key_pairs +\| 100 +\|", cloud.nova("quota-class-show", "default").stdout)
    cloud.nova("quota-class-update", "--key-pairs", "123", "default")
    try:
        assert re.search(r"\| key_pairs +\| 123 +\|", cloud.nova("quota-class-show", "default").stdout)
        # Every project's defaults follow the default class.
        defaults = compute_call(cloud, "GET", "/os-quota-sets/x/defaults", "2.1", "kilonova-demo")
        assert defaults.json()["quota_set"]["key_pairs"] == 123
        assert "server_groups" in compute_call(cloud, "GET", "/os-quota-class-sets/default", "2.50").json()[
            "quota_class_set"]
        refused = compute_call(cloud, "PUT", "/os-quota-class-sets/default", "2.57",
                               json={"quota_class_set": {"injected_files": 3}})
        assert refused.status_code == 400 and "badRequest" in refused.json()
        denied = cloud.nova("quota-class-update", "--key-pairs", "1", "default", cloud="kilonova-demo", check=False)
        assert denied.returncode != 0 and "403" in denied.stderr
    finally:
        cloud.nova("quota-class-update", "--key-pairs", "100", "default")


def test_audit_log_through_nova_cli(cloud):
    out = cloud.nova("instance-usage-audit-log").stdout
    assert "compute1" in out and "hosts done. 0 errors." in out
    shown = cloud.nova("instance-usage-audit-log", "--before", "2012-07-05 10:00:00").stdout
    assert "2012-06-01 00:00:00" in shown and "2012-07-01 00:00:00" in shown


def test_image_proxy_and_metadata_through_openstacksdk(cloud):
    conn = cloud.sdk()
    image = next(i for i in conn.compute.images() if i.name == "kilonova-tiny")
    assert image.status == "ACTIVE" and image.progress == 100 and image.size > 0
    conn.compute.set_image_metadata(image, color="blue", tier="gold")
    try:
        assert conn.compute.get_image(image.id).metadata["color"] == "blue"
        assert cloud.openstack("image", "show", image.id, fmt_json=True)["properties"]["tier"] == "gold"
        item = compute_call(cloud, "GET", f"/images/{image.id}/metadata/color", "2.1")
        assert item.json() == {"meta": {"color": "blue"}}
        mismatch = compute_call(cloud, "PUT", f"/images/{image.id}/metadata/color", "2.1",
                                json={"meta": {"colour": "red"}})
        assert mismatch.json() == {"badRequest": {"code": 400, "message": "Request body and URI mismatch"}}
        too_many = compute_call(cloud, "POST", f"/images/{image.id}/metadata", "2.1",
                                json={"metadata": {f"k{i}": "v" for i in range(129)}})
        assert too_many.status_code == 403 and too_many.json()["forbidden"]["message"] == "Image metadata limit exceeded"
        # The image service decides: the demo user may not change the admin's public image.
        demo = compute_call(cloud, "POST", f"/images/{image.id}/metadata", "2.1", "kilonova-demo",
                            json={"metadata": {"color": "red"}})
        assert demo.status_code == 403
    finally:
        conn.compute.delete_image_metadata(image, ["color", "tier"])
    assert "color" not in conn.compute.get_image(image.id).metadata
    listed = compute_call(cloud, "GET", "/images", "2.1", params={"name": "kilonova-tiny"}).json()["images"]
    assert [i["name"] for i in listed] == ["kilonova-tiny"] and {l["rel"] for l in listed[0]["links"]} == {
        "self", "bookmark", "alternate"}
    assert compute_call(cloud, "GET", "/images/not-an-image", "2.1").json() == {
        "itemNotFound": {"code": 404, "message": "Image not found."}}
    assert compute_call(cloud, "GET", "/images", "2.36").status_code == 404


def test_network_proxies(cloud):
    networks = compute_call(cloud, "GET", "/os-networks", "2.1", "kilonova-demo").json()["networks"]
    private = next(n for n in networks if n["label"] == "private")
    assert private["cidr"] is None and "project_id" not in private
    admin_view = compute_call(cloud, "GET", f"/os-networks/{private['id']}", "2.1").json()["network"]
    assert admin_view["label"] == "private" and "project_id" in admin_view
    tenant = compute_call(cloud, "GET", "/os-tenant-networks", "2.1", "kilonova-demo").json()["networks"]
    assert {"id": private["id"], "cidr": "None", "label": "private"} in tenant
    assert compute_call(cloud, "GET", "/os-tenant-networks/nope", "2.1").json() == {
        "itemNotFound": {"code": 404, "message": "Network not found"}}
    assert compute_call(cloud, "GET", "/os-networks", "2.36").status_code == 404
    for method, path in (("POST", "/os-networks"), ("DELETE", f"/os-networks/{private['id']}"),
                         ("POST", "/os-networks/add"), ("POST", f"/os-networks/{private['id']}/action"),
                         ("POST", "/os-tenant-networks"), ("GET", "/os-fping"), ("GET", "/os-cells"),
                         ("POST", "/os-agents"), ("GET", "/os-security-group-default-rules")):
        assert compute_call(cloud, method, path, "2.90", json={}).status_code == 410, (method, path)


def test_extensions_and_version_documents(cloud):
    aliases = {e["Alias"] for e in cloud.openstack("extension", "list", "--compute", fmt_json=True)}
    assert {"os-hosts", "os-simple-tenant-usage", "OS-EXT-SRV-ATTR"} <= aliases and len(aliases) == 99
    # /v2.1 is public, /v2.1/ the API's (a token), as upstream's api-paste.ini serves them.
    assert httpx.get(cloud.urls["compute"]).json()["version"]["id"] == "v2.1"
    assert httpx.get(cloud.urls["compute"] + "/").status_code == 401
    with cloud.http("compute") as compute:
        document = compute.get(cloud.urls["compute"] + "/").json()["version"]
    assert document["id"] == "v2.1" and document["links"][0]["href"] == cloud.urls["compute"] + "/"


SERVER = "11111111-2222-3333-4444-555555555555"


def test_image_proxy_status_and_delete(cloud):
    """A queued image is SAVING at 25 %; its owner deletes it through the compute proxy, others may not."""
    with cloud.http("image", "kilonova-demo") as image:
        created = image.post("/v2/images", json={"name": "proxy-queued", "disk_format": "qcow2",
                                                 "container_format": "bare", "instance_uuid": SERVER}).json()
    shown = compute_call(cloud, "GET", f"/images/{created['id']}", "2.1", "kilonova-demo").json()["image"]
    assert (shown["status"], shown["progress"], shown["minRam"], shown["OS-EXT-IMG-SIZE:size"]) == (
        "SAVING", 25, 0, 0)
    assert shown["server"]["id"] == SERVER and shown["metadata"] == {"instance_uuid": SERVER}
    assert shown["created"].endswith("Z") and len(shown["created"]) == 20
    filtered = compute_call(cloud, "GET", "/images/detail", "2.1", "kilonova-demo",
                            params={"server": f"http://compute/servers/{SERVER}"}).json()["images"]
    assert [i["id"] for i in filtered] == [created["id"]]
    # The status filter goes to the image service lowercased, as upstream's: a queued image is not "saving".
    assert compute_call(cloud, "GET", "/images", "2.1", "kilonova-demo",
                        params={"server": SERVER, "status": "SAVING"}).json()["images"] == []
    other = next(i for i in cloud.sdk().compute.images() if i.name == "kilonova-tiny")
    assert compute_call(cloud, "DELETE", f"/images/{other.id}", "2.1", "kilonova-demo").json() == {
        "forbidden": {"code": 403, "message": "You are not allowed to delete the image."}}
    cloud.sdk().compute.delete_image(created["id"])
    assert compute_call(cloud, "GET", f"/images/{created['id']}", "2.1", "kilonova-demo").status_code == 404
    assert compute_call(cloud, "DELETE", f"/images/{created['id']}", "2.1").status_code == 404


def test_os_volumes_boot_is_the_servers_api(cloud, demo_server):
    listed = compute_call(cloud, "GET", "/os-volumes_boot", "2.1", "kilonova-demo").json()["servers"]
    assert demo_server["id"] in {s["id"] for s in listed}
    shown = compute_call(cloud, "GET", f"/os-volumes_boot/{demo_server['id']}", "2.1", "kilonova-demo").json()
    assert shown["server"]["name"] == "usage-vm" and shown["server"]["status"] == "ACTIVE"
    assert compute_call(cloud, "GET", f"/os-volumes_boot/{demo_server['id']}", "2.1").status_code == 200
    detail = compute_call(cloud, "GET", "/os-volumes_boot/detail", "2.1", "kilonova-demo").json()["servers"]
    assert {s["tenant_id"] for s in detail} == {shown["server"]["tenant_id"]}
    # The same policies as /servers: another project's servers are the admin's to list.
    assert compute_call(cloud, "GET", "/os-volumes_boot/detail", "2.1", "kilonova-demo",
                        params={"all_tenants": "1"}).status_code == 403
