"""The later microversions through the real clients, which negotiate up to Kilonova's maximum by themselves."""
from __future__ import annotations

import httpx
import pytest

from kilonova.compute.api import microversions

BOOT = ["--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network", "private"]


def test_version_document_advertises_the_maximum(cloud):
    assert httpx.get(cloud.urls["compute"]).json()["version"]["version"] == microversions.MAX_VERSION
    with cloud.http("compute") as compute:
        latest = compute.get("/servers", headers={"OpenStack-API-Version": "compute latest"})
        assert latest.headers["OpenStack-API-Version"] == f"compute {microversions.MAX_VERSION}"


@pytest.fixture(scope="module")
def pair(cloud):
    """Two servers named out of creation order; the second asks for trusted certificates (2.63), its own
    hostname (2.90) and a host (2.74)."""
    first = cloud.openstack("server", "create", *BOOT, "--wait", "mv-zulu", fmt_json=True)
    second = cloud.openstack("--os-compute-api-version", "2.90", "server", "create", *BOOT,
                             "--trusted-image-cert", "cert-a", "--trusted-image-cert", "cert-b",
                             "--hostname", "custom-host", "--host", "compute3", "--wait", "mv-alpha", fmt_json=True)
    yield first, second
    cloud.openstack("server", "delete", "--wait", first["id"], second["id"], check=False)


def test_create_fields_round_trip(cloud, pair):
    shown = cloud.openstack("server", "show", pair[1]["id"], fmt_json=True)
    assert shown["trusted_image_certificates"] == ["cert-a", "cert-b"]
    assert shown["OS-EXT-SRV-ATTR:hostname"] == "custom-host" and shown["OS-EXT-SRV-ATTR:host"] == "compute3"
    assert cloud.openstack("server", "show", pair[0]["id"], fmt_json=True)["trusted_image_certificates"] is None
    missing = cloud.openstack("--os-compute-api-version", "2.74", "server", "create", *BOOT, "--host", "nowhere",
                              "mv-nowhere", check=False)
    assert missing.returncode != 0 and "Compute host nowhere could not be found" in missing.stderr


def test_nova_list_sorted_by_the_api(cloud, pair):
    # nova list --sort hands sort_key/sort_dir to the API (the openstack CLI only sorts client-side).
    ascending = cloud.nova("list", "--name", "mv-", "--sort", "display_name:asc").stdout
    assert ascending.index("mv-alpha") < ascending.index("mv-zulu")
    descending = cloud.nova("list", "--name", "mv-", "--sort", "display_name:desc").stdout
    assert descending.index("mv-zulu") < descending.index("mv-alpha")
    bad = cloud.nova("list", "--sort", "flavor:asc", check=False)
    assert bad.returncode != 0 and "sort_key" in bad.stderr


def test_lock_with_a_reason_and_the_locked_filter(cloud, pair):
    server = pair[0]["id"]
    cloud.openstack("--os-compute-api-version", "2.73", "server", "lock", "--reason", "maintenance", server)
    try:
        shown = cloud.openstack("server", "show", server, fmt_json=True)
        assert shown["locked"] is True and shown["locked_reason"] == "maintenance"
        locked = cloud.openstack("--os-compute-api-version", "2.73", "server", "list", "--locked", fmt_json=True)
        assert [s["ID"] for s in locked] == [server]
    finally:
        cloud.openstack("server", "unlock", server)
    assert cloud.openstack("server", "show", server, fmt_json=True)["locked_reason"] is None


def test_nova_show_at_the_maximum(cloud, pair):
    shown = cloud.nova("show", pair[1]["id"]).stdout
    assert "trusted_image_certificates" in shown and "cert-a" in shown
    assert "locked_reason" in shown


def test_sdk_at_the_maximum(cloud, pair):
    conn = cloud.sdk()
    server = conn.compute.get_server(pair[1]["id"])
    assert server.trusted_image_certificates == ["cert-a", "cert-b"] and server.status == "ACTIVE"
    names = [s.name for s in conn.compute.servers(name="mv-", sort_key="display_name", sort_dir="asc")]
    assert names == ["mv-alpha", "mv-zulu"]


def test_nova_flavor_key_validated_at_the_maximum(cloud):
    refused = cloud.nova("flavor-key", "m1.tiny", "set", "hw:cpu_policy=sometimes", check=False)
    assert refused.returncode != 0 and "is not one of: dedicated, shared, mixed" in refused.stderr
    cloud.nova("flavor-key", "m1.tiny", "set", "hw:cpu_policy=shared")
    cloud.nova("flavor-key", "m1.tiny", "unset", "hw:cpu_policy")


# ---------------------------------------------------------------- 2.92 to 2.104, each boundary


def _at(compute, method: str, path: str, version: str, **kwargs):
    return compute.request(method, path, headers={"OpenStack-API-Version": f"compute {version}"}, **kwargs)


def test_2_97_shares_are_refused_with_a_reason(cloud, pair):
    server = pair[0]["id"]
    with cloud.http("compute") as compute:
        assert _at(compute, "GET", f"/servers/{server}/shares", "2.96").status_code == 404
        assert _at(compute, "GET", f"/servers/{server}/shares", "2.97").json() == {"shares": []}
        body = {"share": {"share_id": "8e0b2b8c-6c1c-4b8e-9f55-7b3c1a7f0d11"}}
        refused = _at(compute, "POST", f"/servers/{server}/shares", "2.97", json=body)
        assert refused.status_code == 409 and "Shared File Systems" in refused.json()["conflictingRequest"]["message"]
        assert _at(compute, "POST", f"/servers/{server}/shares", "2.97", json={"share": {}}).status_code == 400


def test_2_98_image_properties_in_the_server(cloud):
    cloud.openstack("image", "set", "--property", "os_distro=kilonova", "kilonova-tiny")
    try:
        created = cloud.openstack("server", "create", *BOOT, "--wait", "mv-props", fmt_json=True)
    finally:
        cloud.openstack("image", "unset", "--property", "os_distro", "kilonova-tiny")
    try:
        with cloud.http("compute") as compute:
            old = _at(compute, "GET", f"/servers/{created['id']}", "2.97").json()["server"]["image"]
            assert "properties" not in old
            new = _at(compute, "GET", f"/servers/{created['id']}", "2.98").json()["server"]["image"]
            assert new["properties"]["os_distro"] == "kilonova"
            listed = _at(compute, "GET", "/servers/detail", "2.98", params={"name": "^mv-props$"}).json()
            assert listed["servers"][0]["image"]["properties"]["os_distro"] == "kilonova"
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_2_99_spice_direct_is_unavailable(cloud, pair):
    body = {"remote_console": {"protocol": "spice", "type": "spice-direct"}}
    with cloud.http("compute") as compute:
        old = _at(compute, "POST", f"/servers/{pair[0]['id']}/remote-consoles", "2.98", json=body)
        assert old.status_code == 400 and "spice-direct" in old.text and "is not one of" in old.text
        new = _at(compute, "POST", f"/servers/{pair[0]['id']}/remote-consoles", "2.99", json=body)
        assert new.status_code == 400 and "Unavailable console type spice-direct" in new.text


def test_2_100_scheduler_hints_in_the_server(cloud, pair):
    created = cloud.openstack("server", "create", *BOOT, "--hint", f"different_host={pair[0]['id']}", "--wait",
                              "mv-hinted", fmt_json=True)
    try:
        with cloud.http("compute") as compute:
            assert "scheduler_hints" not in _at(compute, "GET", f"/servers/{created['id']}", "2.99").json()["server"]
            shown = _at(compute, "GET", f"/servers/{created['id']}", "2.100").json()["server"]
            assert shown["scheduler_hints"] == {"different_host": [pair[0]["id"]]}  # lists, as the request spec
            other = _at(compute, "GET", f"/servers/{pair[0]['id']}", "2.100").json()["server"]
            assert other["scheduler_hints"] == {}
        listed = cloud.openstack("server", "show", created["id"], fmt_json=True)  # the SDK negotiates 2.100
        assert "different_host" in str(listed["scheduler_hints"])
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_2_102_rxtx_factor_and_closed_query_schemas(cloud):
    with cloud.http("compute") as compute:
        assert "rxtx_factor" in _at(compute, "GET", "/flavors/1", "2.101").json()["flavor"]
        assert "rxtx_factor" not in _at(compute, "GET", "/flavors/1", "2.102").json()["flavor"]
        body = {"flavor": {"name": "mv-rxtx", "ram": 64, "vcpus": 1, "disk": 1, "rxtx_factor": 2.0}}
        refused = _at(compute, "POST", "/flavors", "2.102", json=body)
        assert refused.status_code == 400 and "rxtx_factor" in refused.text
        assert _at(compute, "GET", "/os-keypairs", "2.101", params={"colour": "blue"}).status_code == 200
        closed = _at(compute, "GET", "/os-keypairs", "2.102", params={"colour": "blue"})
        assert closed.status_code == 400 and "'colour' was unexpected" in closed.text
        assert _at(compute, "GET", "/flavors", "2.102", params={"colour": "blue"}).status_code == 400
        assert _at(compute, "GET", "/flavors", "2.102", params={"minRam": "1"}).status_code == 200
        # Shows and sub-resources that ignored any parameter refuse it from 2.102.
        server = _at(compute, "GET", "/servers", "2.1").json()["servers"][0]["id"]
        for path in (f"/servers/{server}", f"/servers/{server}/ips", f"/servers/{server}/tags",
                     f"/servers/{server}/os-server-password"):
            assert _at(compute, "GET", path, "2.101", params={"colour": "blue"}).status_code == 200, path
            refused = _at(compute, "GET", path, "2.102", params={"colour": "blue"})
            assert refused.status_code == 400 and "'colour' was unexpected" in refused.text, path
    rxtx = cloud.openstack("--os-compute-api-version", "2.102", "flavor", "create", "--ram", "64", "--disk", "1",
                           "--rxtx-factor", "2", "mv-rxtx", check=False)
    assert rxtx.returncode != 0 and "2.101" in rxtx.stderr


def test_2_104_pinned_availability_zone_set_and_unset(cloud, pair):
    server = pair[0]["id"]
    zone = cloud.openstack("server", "show", server, fmt_json=True)["OS-EXT-AZ:availability_zone"]
    with cloud.http("compute") as compute:
        early = _at(compute, "PUT", f"/servers/{server}", "2.103", json={"server": {"pinned_availability_zone": zone}})
        assert early.status_code == 400
        elsewhere = _at(compute, "PUT", f"/servers/{server}", "2.104",
                        json={"server": {"pinned_availability_zone": "no-such-zone"}})
        assert elsewhere.status_code == 400 and "pinned to the zone it is in" in elsewhere.text
    cloud.openstack("--os-compute-api-version", "2.104", "server", "set", "--pinned-availability-zone", zone, server)
    with cloud.http("compute") as compute:
        assert _at(compute, "GET", f"/servers/{server}", "2.104").json()["server"]["pinned_availability_zone"] == zone
    cloud.openstack("--os-compute-api-version", "2.104", "server", "unset", "--pinned-availability-zone", server)
    with cloud.http("compute") as compute:
        assert _at(compute, "GET", f"/servers/{server}", "2.104").json()["server"]["pinned_availability_zone"] is None


def test_2_92_keypairs_are_imported_only(cloud, tmp_path):
    with cloud.http("compute") as compute:
        generated = _at(compute, "POST", "/os-keypairs", "2.91", json={"keypair": {"name": "mv-gen"}})
        assert generated.status_code == 201 and "private_key" in generated.json()["keypair"]
        refused = _at(compute, "POST", "/os-keypairs", "2.92", json={"keypair": {"name": "mv-gen2"}})
        assert refused.status_code == 400 and "public_key" in refused.text
        public = generated.json()["keypair"]["public_key"]
        dotted = _at(compute, "POST", "/os-keypairs", "2.92", json={"keypair": {"name": "me@host.k", "public_key": public}})
        assert dotted.status_code == 201 and "private_key" not in dotted.json()["keypair"]
        for name in ("mv-gen", "me@host.k"):
            compute.delete(f"/os-keypairs/{name}")
    # openstack keypair create generates the key on the client from 2.92.
    made = cloud.openstack("keypair", "create", "mv-client-made")
    assert "PRIVATE KEY" in made.stdout
    cloud.openstack("keypair", "delete", "mv-client-made")


def test_2_16_host_status_for_those_the_policy_lets_see_it(cloud, pair):
    with cloud.http("compute") as compute:
        assert "host_status" not in _at(compute, "GET", f"/servers/{pair[0]['id']}", "2.15").json()["server"]
        assert _at(compute, "GET", f"/servers/{pair[0]['id']}", "2.16").json()["server"]["host_status"] == "UP"
        listed = _at(compute, "GET", "/servers/detail", "2.16", params={"name": "^mv-"}).json()["servers"]
        assert {s["host_status"] for s in listed} == {"UP"}
    shown = cloud.openstack("server", "show", pair[0]["id"], fmt_json=True)
    assert shown["host_status"] == "UP"
    host = shown["OS-EXT-SRV-ATTR:host"]
    cloud.openstack("compute", "service", "set", "--disable", host, "nova-compute")
    try:
        with cloud.http("compute") as compute:
            assert _at(compute, "GET", f"/servers/{pair[0]['id']}", "2.16").json()["server"]["host_status"] == \
                "MAINTENANCE"
    finally:
        cloud.openstack("compute", "service", "set", "--enable", host, "nova-compute")


def test_2_94_fqdn_hostnames_and_2_96_pinned_zone_shown(cloud, pair):
    server = pair[1]["id"]
    with cloud.http("compute") as compute:
        single = _at(compute, "PUT", f"/servers/{server}", "2.93", json={"server": {"hostname": "vm.example.org"}})
        assert single.status_code == 400  # one DNS label until 2.94
        fqdn = _at(compute, "PUT", f"/servers/{server}", "2.94", json={"server": {"hostname": "vm.example.org"}})
        assert fqdn.status_code == 200 and fqdn.json()["server"]["OS-EXT-SRV-ATTR:hostname"] == "vm.example.org"
        assert "pinned_availability_zone" not in _at(compute, "GET", f"/servers/{server}", "2.95").json()["server"]
        assert "pinned_availability_zone" in _at(compute, "GET", f"/servers/{server}", "2.96").json()["server"]
        _at(compute, "PUT", f"/servers/{server}", "2.90", json={"server": {"hostname": "custom-host"}})
