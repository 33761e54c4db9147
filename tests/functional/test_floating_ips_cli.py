"""Floating IPs through the real `openstack` CLI and openstacksdk, shown in the server's addresses."""
from __future__ import annotations

import pytest

DEMO = "kilonova-demo"


@pytest.fixture(scope="module")
def vm(cloud):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-floating", fmt_json=True, cloud=DEMO)
    yield created
    cloud.openstack("server", "delete", "--wait", created["id"], check=False, cloud=DEMO)


def test_server_add_and_remove_floating_ip(cloud, vm):
    fip = cloud.openstack("floating", "ip", "create", "public", fmt_json=True, cloud=DEMO)
    address = fip["floating_ip_address"]
    assert address.startswith("172.24.4.") and fip["status"] == "DOWN" and fip["port_id"] is None
    try:
        cloud.openstack("server", "add", "floating", "ip", "vm-floating", address, cloud=DEMO)
        # The network service tells the compute service (network-changed), whose host refreshes the server's
        # network information: the address shows once that is done. (The CLI shows addresses as plain text.)
        shown = cloud.wait_server("vm-floating", lambda s: address in str(s.get("addresses")),
                                  "to show its floating IP", cloud=DEMO)
        assert address in shown["addresses"]["private"]
        entries = cloud.server(vm["id"], cloud=DEMO)["addresses"]["private"]
        assert [(e["addr"], e["OS-EXT-IPS:type"]) for e in entries][1:] == [(address, "floating")]
        fixed = entries[0]
        assert fixed["OS-EXT-IPS:type"] == "fixed" and entries[1]["OS-EXT-IPS-MAC:mac_addr"] == fixed[
            "OS-EXT-IPS-MAC:mac_addr"]

        listed = cloud.openstack("floating", "ip", "list", "--long", fmt_json=True, cloud=DEMO)
        [row] = [r for r in listed if r["Floating IP Address"] == address]
        assert row["Fixed IP Address"] == fixed["addr"] and row["Status"] == "ACTIVE"
        assert row["Router"] == cloud.openstack("router", "show", "router1", fmt_json=True)["id"]
        port = cloud.openstack("port", "list", "--device-id", vm["id"], fmt_json=True, cloud=DEMO)[0]["ID"]
        by_port = cloud.openstack("floating", "ip", "list", "--port", port, fmt_json=True, cloud=DEMO)
        assert [r["Floating IP Address"] for r in by_port] == [address]
        # The ip filter matches fixed addresses only, as upstream's (a floating address finds no server).
        servers = cloud.openstack("server", "list", "--ip", fixed["addr"], fmt_json=True, cloud=DEMO)
        assert [s["Name"] for s in servers] == ["vm-floating"]
        assert cloud.openstack("server", "list", "--ip", address, fmt_json=True, cloud=DEMO) == []

        cloud.openstack("server", "remove", "floating", "ip", "vm-floating", address, cloud=DEMO)
        cloud.wait_server("vm-floating", lambda s: address not in str(s.get("addresses")), "to lose its floating IP",
                          cloud=DEMO)
        assert cloud.openstack("floating", "ip", "show", address, fmt_json=True, cloud=DEMO)["status"] == "DOWN"

        # floating ip set --port / unset --port, then the server's delete leaves the address allocated.
        cloud.openstack("floating", "ip", "set", "--port", port, address, cloud=DEMO)
        cloud.wait_server("vm-floating", lambda s: address in str(s.get("addresses")), "to show it again", cloud=DEMO)
        cloud.openstack("floating", "ip", "unset", "--port", address, cloud=DEMO)
        assert cloud.openstack("floating", "ip", "show", address, fmt_json=True, cloud=DEMO)["port_id"] is None
    finally:
        cloud.openstack("floating", "ip", "delete", address, cloud=DEMO)
    assert address not in {r["Floating IP Address"] for r in
                           cloud.openstack("floating", "ip", "list", fmt_json=True, cloud=DEMO)}


def test_deleting_the_server_disassociates_its_floating_ip(cloud):
    server = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                             "--network", "private", "--wait", "vm-doomed-fip", fmt_json=True, cloud=DEMO)
    sdk = cloud.sdk(DEMO)
    public = sdk.network.find_network("public")
    port = next(sdk.network.ports(device_id=server["id"]))
    fip = sdk.network.create_ip(floating_network_id=public.id, port_id=port.id)
    try:
        assert fip.port_id == port.id and fip.status == "ACTIVE"
        cloud.wait_server(server["id"], lambda s: fip.floating_ip_address in str(s.get("addresses")),
                          "to show its floating IP", cloud=DEMO)
        cloud.openstack("server", "delete", "--wait", server["id"], cloud=DEMO)
        kept = sdk.network.get_ip(fip.id)
        assert (kept.port_id, kept.fixed_ip_address, kept.router_id, kept.status) == (None, None, None, "DOWN")
    finally:
        sdk.network.delete_ip(fip.id)


def test_floating_ip_errors_and_quota(cloud):
    cloud.openstack("network", "create", "fip-isolated", cloud=DEMO)
    try:
        cloud.openstack("subnet", "create", "--network", "fip-isolated", "--subnet-range", "192.168.70.0/24",
                        "fip-isolated-subnet", cloud=DEMO)
        not_external = cloud.openstack("floating", "ip", "create", "fip-isolated", cloud=DEMO, check=False)
        assert not_external.returncode != 0 and "is not a valid external network" in not_external.stderr
        port = cloud.openstack("port", "create", "--network", "fip-isolated", "fip-port", fmt_json=True, cloud=DEMO)
        fip = cloud.openstack("floating", "ip", "create", "public", fmt_json=True, cloud=DEMO)
        unreachable = cloud.openstack("floating", "ip", "set", "--port", port["id"], fip["floating_ip_address"],
                                      cloud=DEMO, check=False)
        assert unreachable.returncode != 0
        assert "External network" in unreachable.stderr and "is not reachable from subnet" in unreachable.stderr
        chosen = cloud.openstack("floating", "ip", "create", "--floating-ip-address", "172.24.4.250", "public",
                                 cloud=DEMO, check=False)
        assert chosen.returncode != 0 and "403" in chosen.stderr
        cloud.openstack("quota", "set", "--floating-ips", "1", "demo")
        try:
            over = cloud.openstack("floating", "ip", "create", "public", cloud=DEMO, check=False)
            assert over.returncode != 0 and "Quota exceeded for resources: ['floatingip']" in over.stderr
        finally:
            cloud.openstack("quota", "set", "--floating-ips", "50", "demo")
        cloud.openstack("floating", "ip", "delete", fip["floating_ip_address"], cloud=DEMO)
        cloud.openstack("port", "delete", "fip-port", cloud=DEMO)
    finally:
        cloud.openstack("network", "delete", "fip-isolated", cloud=DEMO)


def compute_call(cloud, method: str, path: str, version: str, **kwargs):
    with cloud.http("compute", DEMO) as compute:
        return compute.request(method, path, headers={"OpenStack-API-Version": f"compute {version}"}, **kwargs)


def test_compute_api_floating_ip_proxies_until_2_35(cloud, vm):
    pools = compute_call(cloud, "GET", "/os-floating-ip-pools", "2.35")
    assert pools.status_code == 200 and pools.json() == {"floating_ip_pools": [{"name": "public"}]}
    assert compute_call(cloud, "GET", "/os-floating-ip-pools", "2.36").status_code == 404
    assert compute_call(cloud, "GET", "/os-floating-ips", "2.36").status_code == 404
    assert compute_call(cloud, "POST", "/os-floating-ips", "2.1", json={"pool": "nope"}).json() == {
        "itemNotFound": {"code": 404, "message": "Floating IP pool not found."}}
    created = compute_call(cloud, "POST", "/os-floating-ips", "2.1", json={"pool": "public"})
    assert created.status_code == 200, created.text
    fip = created.json()["floating_ip"]
    assert fip["pool"] == "public" and fip["fixed_ip"] is None and fip["instance_id"] is None
    try:
        listed = compute_call(cloud, "GET", "/os-floating-ips", "2.35").json()["floating_ips"]
        assert fip in listed
        # The addFloatingIp / removeFloatingIp server actions (until 2.43: the sdk asks for newer microversions,
        # where upstream answers 404 as well).
        added = compute_call(cloud, "POST", f"/servers/{vm['id']}/action", "2.43",
                             json={"addFloatingIp": {"address": fip["ip"]}})
        assert added.status_code == 202, added.text
        cloud.wait_server(vm["id"], lambda s: fip["ip"] in str(s.get("addresses")), "to show its floating IP",
                          cloud=DEMO)
        shown = compute_call(cloud, "GET", f"/os-floating-ips/{fip['id']}", "2.35").json()["floating_ip"]
        assert shown["instance_id"] == vm["id"] and shown["fixed_ip"].startswith("10.0.0.")
        late = compute_call(cloud, "POST", f"/servers/{vm['id']}/action", "2.44",
                            json={"removeFloatingIp": {"address": fip["ip"]}})
        assert late.status_code == 404
        removed = compute_call(cloud, "POST", f"/servers/{vm['id']}/action", "2.1",
                               json={"removeFloatingIp": {"address": fip["ip"]}})
        assert removed.status_code == 202, removed.text
        cloud.wait_server(vm["id"], lambda s: fip["ip"] not in str(s.get("addresses")), "to lose its floating IP",
                          cloud=DEMO)
        again = compute_call(cloud, "POST", f"/servers/{vm['id']}/action", "2.43",
                             json={"removeFloatingIp": {"address": fip["ip"]}})
        assert again.status_code == 409
        assert again.json()["conflictingRequest"]["message"] == (
            f"Floating IP {fip['ip']} is not associated with instance {vm['id']}.")
        unknown = compute_call(cloud, "POST", f"/servers/{vm['id']}/action", "2.1",
                               json={"addFloatingIp": {"address": "172.24.4.254"}})
        assert unknown.status_code == 404 and unknown.json()["itemNotFound"]["message"] == "floating IP not found"
    finally:
        assert compute_call(cloud, "DELETE", f"/os-floating-ips/{fip['id']}", "2.1").status_code == 202
    assert compute_call(cloud, "GET", f"/os-floating-ips/{fip['id']}", "2.1").status_code == 404


def test_compute_api_floating_ip_bad_input(cloud, vm):
    for body in ("x", {"pool": 5}, {"pool": "public", "colour": 1}):
        assert compute_call(cloud, "POST", "/os-floating-ips", "2.1", json=body).status_code == 400, body
    for body in ({"addFloatingIp": {"address": "not-an-ip"}}, {"addFloatingIp": {}},
                 {"addFloatingIp": {"address": "172.24.4.9", "fixed_address": "10.9.9.9"}},
                 {"removeFloatingIp": {"address": ["x"]}}, {"addFloatingIp": None}):
        reply = compute_call(cloud, "POST", f"/servers/{vm['id']}/action", "2.1", json=body)
        assert reply.status_code == 400, (body, reply.text)
    assert compute_call(cloud, "GET", "/os-floating-ips/not-a-floating-ip", "2.1").json() == {
        "itemNotFound": {"code": 404, "message": "Floating IP not found for ID not-a-floating-ip"}}


def test_nova_network_floating_ip_apis_are_gone(cloud):
    for method, path in (("GET", "/os-floating-ips-bulk"), ("POST", "/os-floating-ips-bulk"),
                         ("GET", "/os-floating-ip-dns"), ("PUT", "/os-floating-ip-dns/example.org"),
                         ("DELETE", "/os-floating-ip-dns/example.org/entries/web")):
        reply = compute_call(cloud, method, path, "2.1")
        assert reply.status_code == 410, (method, path, reply.text)
