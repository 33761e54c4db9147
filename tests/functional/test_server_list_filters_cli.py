"""GET /servers filters and sort keys as upstream applies them, for an administrator and for a member:
regular expressions, exact filters, the ones a member may not use (dropped silently, as upstream),
the tag filters, ip, and the parameters refused from 2.75."""
from __future__ import annotations

import pytest

BOOT = ["--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network", "private"]


@pytest.fixture(scope="module")
def servers(cloud):
    """admin: lf-web-1 and lf-web-2 (tags blue, red / blue); demo: lf-db with key lf-key."""
    cloud.openstack("keypair", "create", "lf-key", cloud="kilonova-demo")
    web1 = cloud.openstack("--os-compute-api-version", "2.52", "server", "create", *BOOT, "--tag", "blue",
                           "--tag", "red", "--wait", "lf-web-1", fmt_json=True)
    web2 = cloud.openstack("--os-compute-api-version", "2.52", "server", "create", *BOOT, "--tag", "blue",
                           "--wait", "lf-web-2", fmt_json=True)
    db = cloud.openstack("server", "create", *BOOT, "--key-name", "lf-key", "--wait", "lf-db", fmt_json=True,
                         cloud="kilonova-demo")
    yield {"web1": web1, "web2": web2, "db": db}
    cloud.openstack("server", "delete", "--wait", web1["id"], web2["id"], check=False)
    cloud.openstack("server", "delete", "--wait", db["id"], check=False, cloud="kilonova-demo")
    cloud.openstack("keypair", "delete", "lf-key", check=False, cloud="kilonova-demo")


def names(cloud, version="2.1", user="kilonova", **params) -> list[str]:
    with cloud.http("compute", user) as compute:
        reply = compute.get("/servers", params=params, headers={"OpenStack-API-Version": f"compute {version}"})
    assert reply.status_code == 200, reply.text
    return sorted(s["name"] for s in reply.json()["servers"] if s["name"].startswith("lf-"))


def refused(cloud, version="2.1", user="kilonova", **params):
    with cloud.http("compute", user) as compute:
        return compute.get("/servers", params=params, headers={"OpenStack-API-Version": f"compute {version}"})


def test_name_is_a_regular_expression(cloud, servers):
    listed = cloud.openstack("server", "list", "--name", "^lf-web", fmt_json=True)
    assert sorted(s["Name"] for s in listed) == ["lf-web-1", "lf-web-2"]
    assert names(cloud, name="web-2$") == ["lf-web-2"]
    listed = cloud.nova("list", "--name", "^lf-web-[2]").stdout  # the nova CLI hands the pattern on too
    assert "lf-web-2" in listed and "lf-web-1" not in listed
    assert names(cloud, name="^lf-w.b-[0-9]$") == ["lf-web-1", "lf-web-2"]
    assert names(cloud, name="^web") == []  # anchored: no lf- server starts with web
    assert names(cloud, user="kilonova-demo", name="^lf-db$") == ["lf-db"]
    bad = refused(cloud, name="lf-(")
    assert bad.status_code == 400 and "is not a 'regex'" in bad.json()["badRequest"]["message"]
    # Checked by the schema for every caller, even on a filter a member may not use.
    assert refused(cloud, user="kilonova-demo", node="(").status_code == 400
    # Joined tables and names starting with '_': upstream's 400 (a member's joined-table filter is dropped).
    for version in ("2.1", "2.75"):
        joined = refused(cloud, version, metadata="x")
        assert joined.status_code == 400 and joined.json()["badRequest"]["message"] == "Invalid filter field: metadata."
        assert refused(cloud, version, _secret="x").status_code == 400
    assert names(cloud, user="kilonova-demo", metadata="x") == ["lf-db"]


def test_an_administrator_sees_other_projects_only_with_all_tenants(cloud, servers):
    assert names(cloud) == ["lf-web-1", "lf-web-2"]
    demo_project = servers["db"]["project_id"] if "project_id" in servers["db"] else \
        cloud.openstack("server", "show", servers["db"]["id"], fmt_json=True)["project_id"]
    assert names(cloud, project_id=demo_project) == ["lf-web-1", "lf-web-2"]  # ignored without all_tenants
    assert names(cloud, all_tenants="1", project_id=demo_project) == ["lf-db"]
    listed = cloud.openstack("server", "list", "--all-projects", "--name", "^lf-", fmt_json=True)
    assert sorted(s["Name"] for s in listed) == ["lf-db", "lf-web-1", "lf-web-2"]
    denied = refused(cloud, user="kilonova-demo", all_tenants="1")
    assert denied.status_code == 403
    assert "os_compute_api:servers:index:get_all_tenants" in denied.json()["forbidden"]["message"]


def test_admin_only_filters_are_dropped_for_a_member(cloud, servers):
    host = cloud.openstack("server", "show", servers["web1"]["id"], fmt_json=True)["OS-EXT-SRV-ATTR:host"]
    assert "lf-web-1" in names(cloud, host=host)
    assert names(cloud, host="no-such-host") == []
    assert names(cloud, node="^no-such") == []
    assert names(cloud, uuid=servers["web2"]["id"]) == ["lf-web-2"]
    # A member's host, node and uuid filters are known to the schema but dropped, as upstream (no 400 at 2.75).
    for version in ("2.1", "2.90"):
        assert names(cloud, version, user="kilonova-demo", host="no-such-host") == ["lf-db"]
        assert names(cloud, version, user="kilonova-demo", uuid=servers["web1"]["id"]) == ["lf-db"]
    # key_name: a member's from 2.83, dropped before.
    assert names(cloud, "2.82", user="kilonova-demo", key_name="^nothing") == ["lf-db"]
    assert names(cloud, "2.83", user="kilonova-demo", key_name="^nothing") == []
    assert names(cloud, "2.83", user="kilonova-demo", key_name="lf-k") == ["lf-db"]
    assert names(cloud, "2.83", user="kilonova-demo", availability_zone="^nova$") == ["lf-db"]
    assert names(cloud, "2.83", user="kilonova-demo", vm_state="stopped") == []


def test_tag_filters(cloud, servers):
    assert names(cloud, "2.26", tags="blue,red") == ["lf-web-1"]
    assert names(cloud, "2.26", **{"tags-any": "red,green"}) == ["lf-web-1"]
    assert names(cloud, "2.26", **{"not-tags": "blue,red"}) == ["lf-web-2"]
    assert names(cloud, "2.26", **{"not-tags-any": "red"}) == ["lf-web-2"]
    listed = cloud.openstack("--os-compute-api-version", "2.26", "server", "list", "--tags", "blue",
                             "--not-tags", "red", fmt_json=True)
    assert [s["Name"] for s in listed if s["Name"].startswith("lf-")] == ["lf-web-2"]
    assert names(cloud, "2.25", tags="red") == ["lf-web-1", "lf-web-2"]  # unknown before 2.26: ignored (< 2.75)


def test_ip_filter_matches_a_fixed_address(cloud, servers):
    shown = cloud.openstack("server", "show", servers["web2"]["id"], fmt_json=True)
    address = next(iter(shown["addresses"].values()))[0]
    assert names(cloud, ip=address) == ["lf-web-2"]
    assert names(cloud, ip="^" + address.replace(".", "\\.") + "$") == ["lf-web-2"]
    assert names(cloud, ip="192.0.2.") == []
    assert names(cloud, "2.5", user="kilonova-demo", ip6="fd00::") == []


def test_status_filters(cloud, servers):
    assert names(cloud, status="ACTIVE") == ["lf-web-1", "lf-web-2"]
    assert names(cloud, status="SHUTOFF") == []
    assert names(cloud, "2.37", status="NOT-A-STATUS") == []  # before 2.38: nothing listed
    assert refused(cloud, "2.38", status="NOT-A-STATUS").status_code == 400
    assert refused(cloud, user="kilonova-demo", status="DELETED").status_code == 403


def test_unknown_parameters_ignored_before_2_75_and_refused_after(cloud, servers):
    assert names(cloud, "2.74", colour="blue") == ["lf-web-1", "lf-web-2"]
    reply = refused(cloud, "2.75", colour="blue")
    assert reply.status_code == 400 and "'colour' was unexpected" in reply.json()["badRequest"]["message"]


def test_sort_keys_per_role(cloud, servers):
    with cloud.http("compute", "kilonova-demo") as compute:
        denied = compute.get("/servers", params={"sort_key": "host"})
        assert denied.status_code == 403 and "Only administrators can sort servers by host" in denied.text
        bad = compute.get("/servers", params={"sort_key": "flavor"})
        assert bad.status_code == 400
    with cloud.http("compute") as compute:
        ordered = compute.get("/servers", params={"sort_key": "display_name", "sort_dir": "desc", "name": "^lf-"})
        assert [s["name"] for s in ordered.json()["servers"]] == ["lf-web-2", "lf-web-1"]
        assert compute.get("/servers", params={"sort_key": "host"}).status_code == 200
