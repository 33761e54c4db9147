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
