"""Server tags (2.26) through the openstack CLI and the API, and the small per-server resources:
/ips, /ips/{network} and os-server-password."""
from __future__ import annotations

import pytest

BOOT = ["--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network", "private"]
V226 = {"OpenStack-API-Version": "compute 2.26"}


@pytest.fixture(scope="module")
def server(cloud):
    created = cloud.openstack("server", "create", *BOOT, "--wait", "tag-vm", fmt_json=True)
    yield created["id"]
    cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_tags_through_the_cli(cloud, server):
    cloud.openstack("--os-compute-api-version", "2.26", "server", "set", "--tag", "web", "--tag", "prod", server)
    shown = cloud.openstack("--os-compute-api-version", "2.26", "server", "show", server, fmt_json=True)
    assert sorted(shown["tags"]) == ["prod", "web"]
    listed = cloud.openstack("--os-compute-api-version", "2.26", "server", "list", "--tags", "web", fmt_json=True)
    assert [s["ID"] for s in listed] == [server]
    cloud.openstack("--os-compute-api-version", "2.26", "server", "unset", "--tag", "prod", server)
    assert cloud.openstack("--os-compute-api-version", "2.26", "server", "show", server,
                           fmt_json=True)["tags"] == ["web"]
    before = cloud.openstack("--os-compute-api-version", "2.25", "server", "set", "--tag", "x", server, check=False)
    assert before.returncode != 0 and "2.26" in before.stderr
    # The nova CLI's tag commands (it negotiates 2.96).
    cloud.nova("server-tag-add", server, "n1", "n2")
    assert {"n1", "n2", "web"} <= set(cloud.nova("server-tag-list", server).stdout.split())
    cloud.nova("server-tag-delete", server, "n1")
    assert "n1" not in cloud.nova("server-tag-list", server).stdout.split()
    assert server in cloud.nova("list", "--tags", "n2").stdout
    cloud.nova("server-tag-delete-all", server)
    assert cloud.openstack("--os-compute-api-version", "2.26", "server", "show", server, fmt_json=True)["tags"] == []


def test_tag_api(cloud, server):
    path = f"/servers/{server}/tags"
    with cloud.http("compute") as compute:
        assert compute.get(path, headers={"OpenStack-API-Version": "compute 2.25"}).status_code == 404
        replaced = compute.put(path, json={"tags": ["a", "b", "a"]}, headers=V226)
        assert replaced.status_code == 200 and replaced.json() == {"tags": ["a", "b"]}
        assert compute.get(path, headers=V226).json() == {"tags": ["a", "b"]}
        assert compute.get(f"{path}/a", headers=V226).status_code == 204
        missing = compute.get(f"{path}/zzz", headers=V226)
        assert missing.status_code == 404 and "has no tag 'zzz'" in missing.json()["itemNotFound"]["message"]
        added = compute.put(f"{path}/c", headers=V226)
        assert added.status_code == 201 and added.headers["Location"].endswith(f"/servers/{server}/tags/c")
        assert compute.put(f"{path}/c", headers=V226).status_code == 204  # already there
        assert compute.delete(f"{path}/a", headers=V226).status_code == 204
        assert compute.delete(f"{path}/a", headers=V226).status_code == 404
        assert compute.get(f"/servers/{server}", headers=V226).json()["server"]["tags"] == ["b", "c"]
        assert "tags" not in compute.get(f"/servers/{server}",
                                         headers={"OpenStack-API-Version": "compute 2.25"}).json()["server"]
        # Limits: 60 characters, no '/' or ',', at most 50 per server.
        bad = compute.put(f"{path}/a,b", headers=V226)
        assert bad.status_code == 400 and "Tag 'a,b' is invalid" in bad.json()["badRequest"]["message"]
        assert compute.put(f"{path}/{'x' * 61}", headers=V226).status_code == 400
        assert compute.put(path, json={"tags": ["t"] * 0 + [f"t{i}" for i in range(51)]}, headers=V226).status_code \
            == 400
        assert compute.put(path, json={"tags": [f"t{i}" for i in range(50)]}, headers=V226).status_code == 200
        full = compute.put(f"{path}/one-more", headers=V226)
        assert full.status_code == 400 and "per-server limit 50" in full.json()["badRequest"]["message"]
        assert compute.put(f"{path}/t0", headers=V226).status_code == 400  # the count first, as upstream
        assert compute.put(path, json={"tags": ["a/b"]}, headers=V226).status_code == 400
        assert compute.put(path, json={}, headers=V226).status_code == 400
        assert compute.delete(path, headers=V226).status_code == 204
        assert compute.get(path, headers=V226).json() == {"tags": []}
    with cloud.http("compute", "kilonova-demo") as other:  # another project's server is not found
        assert other.get(path, headers=V226).status_code == 404
        assert other.put(f"{path}/mine", headers=V226).status_code == 404


def test_tags_at_create_from_2_52(cloud):
    with cloud.http("compute") as compute:
        body = {"server": {"name": "tag-early", "flavorRef": "1", "imageRef": _image(cloud), "networks": "none",
                           "tags": ["x"]}}
        early = compute.post("/servers", json=body, headers={"OpenStack-API-Version": "compute 2.51"})
        assert early.status_code == 400 and "tags" in early.text
        body["server"]["tags"] = [f"t{i}" for i in range(51)]
        assert compute.post("/servers", json=body,
                            headers={"OpenStack-API-Version": "compute 2.52"}).status_code == 400


def _image(cloud) -> str:
    return cloud.openstack("image", "show", "kilonova-tiny", fmt_json=True)["id"]


def test_ips(cloud, server):
    with cloud.http("compute") as compute:
        addresses = compute.get(f"/servers/{server}/ips").json()["addresses"]
        assert list(addresses) == ["private"]
        assert addresses["private"][0]["version"] == 4 and set(addresses["private"][0]) == {"version", "addr"}
        one = compute.get(f"/servers/{server}/ips/private")
        assert one.status_code == 200 and one.json() == {"private": addresses["private"]}
        missing = compute.get(f"/servers/{server}/ips/public")
        assert missing.status_code == 404
        assert "not a member of specified network" in missing.json()["itemNotFound"]["message"]
    with cloud.http("compute", "kilonova-demo") as other:
        assert other.get(f"/servers/{server}/ips").status_code == 404


def test_server_password(cloud, server):
    with cloud.http("compute") as compute:
        assert compute.get(f"/servers/{server}/os-server-password").json() == {"password": ""}
        assert compute.delete(f"/servers/{server}/os-server-password").status_code == 204
    shown = cloud.nova("get-password", server, check=False)
    assert shown.returncode == 0


def test_access_ips_description_and_disk_config_as_upstream_echoes_them(cloud):
    body = {"server": {"name": "fields-vm", "flavorRef": "1", "imageRef": _image(cloud), "networks": "none",
                       "accessIPv4": "192.0.2.10", "accessIPv6": "2001:DB8:0:0::1", "description": "first",
                       "OS-DCF:diskConfig": "MANUAL"}}
    with cloud.http("compute") as compute:
        headers = {"OpenStack-API-Version": "compute 2.37"}
        made = compute.post("/servers", json=body, headers=headers)
        assert made.status_code == 202, made.text
        uuid = made.json()["server"]["id"]
        assert made.json()["server"]["OS-DCF:diskConfig"] == "MANUAL" and "accessIPv4" not in made.json()["server"]
        try:
            cloud.wait_status(uuid, "ACTIVE")
            shown = compute.get(f"/servers/{uuid}", headers=headers).json()["server"]
            assert (shown["accessIPv4"], shown["accessIPv6"]) == ("192.0.2.10", "2001:db8::1")
            assert shown["description"] == "first" and shown["OS-DCF:diskConfig"] == "MANUAL"
            assert "description" not in compute.get(f"/servers/{uuid}").json()["server"]  # 2.19
            updated = compute.put(f"/servers/{uuid}", json={"server": {"accessIPv6": "2001:DB8::2",
                                                                        "description": None}}, headers=headers)
            assert updated.json()["server"]["accessIPv6"] == "2001:db8::2"
            assert updated.json()["server"]["description"] is None
            auto = compute.put(f"/servers/{uuid}", json={"server": {"OS-DCF:diskConfig": "AUTO"}})
            assert auto.json()["server"]["OS-DCF:diskConfig"] == "AUTO"
            assert compute.get(f"/servers/{uuid}").json()["server"]["OS-DCF:diskConfig"] == "AUTO"
            bad = compute.put(f"/servers/{uuid}", json={"server": {"accessIPv4": "2001:db8::2"}})
            assert bad.status_code == 400
        finally:
            compute.delete(f"/servers/{uuid}")


def test_tags_stay_with_a_server_that_moves(cloud):
    created = cloud.openstack("--os-compute-api-version", "2.52", "server", "create", *BOOT, "--tag", "keep",
                              "--wait", "tag-mover", fmt_json=True)
    try:
        before = cloud.openstack("server", "show", created["id"], fmt_json=True)["OS-EXT-SRV-ATTR:host"]
        cloud.openstack("server", "migrate", "--wait", created["id"])
        cloud.openstack("server", "migrate", "confirm", created["id"])
        shown = cloud.openstack("--os-compute-api-version", "2.26", "server", "show", created["id"], fmt_json=True)
        assert shown["OS-EXT-SRV-ATTR:host"] != before and shown["tags"] == ["keep"]
        listed = cloud.openstack("--os-compute-api-version", "2.26", "server", "list", "--tags", "keep", fmt_json=True)
        assert [s["ID"] for s in listed] == [created["id"]]
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], check=False)
