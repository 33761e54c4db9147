"""External networks and routers through the real `openstack` CLI and openstacksdk."""
from __future__ import annotations


def test_public_network_and_router1_as_devstack_makes_them(cloud):
    external = cloud.openstack("network", "list", "--external", fmt_json=True, cloud="kilonova-demo")
    assert [n["Name"] for n in external] == ["public"]
    public = cloud.openstack("network", "show", "public", fmt_json=True)
    assert public["router:external"] is True and public["shared"] is False
    subnet = cloud.openstack("subnet", "show", "public-subnet", fmt_json=True)
    assert subnet["cidr"] == "172.24.4.0/24" and subnet["enable_dhcp"] is False
    router = cloud.openstack("router", "show", "router1", fmt_json=True)
    assert router["external_gateway_info"]["network_id"] == public["id"]
    assert [i["ip_address"] for i in router["interfaces_info"]] == ["10.0.0.1"]
    denied = cloud.openstack("network", "create", "--external", "demo-external", cloud="kilonova-demo", check=False)
    assert denied.returncode != 0 and "403" in denied.stderr
    # router1 is the admin project's: other projects neither see it nor change it.
    assert "router1" not in {r["Name"] for r in cloud.openstack("router", "list", fmt_json=True,
                                                                cloud="kilonova-demo")}
    hidden = cloud.openstack("router", "show", router["id"], cloud="kilonova-demo", check=False)
    assert hidden.returncode != 0 and "No Router found" in hidden.stderr
    # The network that router1's gateway and floating IPs use cannot go, nor can private-subnet under router1.
    in_use = cloud.openstack("network", "delete", "public", check=False)
    assert in_use.returncode != 0 and "still in use" in (in_use.stderr + in_use.stdout)


def test_router_gateway_interfaces_and_their_errors(cloud):
    demo = "kilonova-demo"
    cloud.openstack("network", "create", "rt-net", cloud=demo)
    try:
        subnet = cloud.openstack("subnet", "create", "--network", "rt-net", "--subnet-range", "192.168.60.0/24",
                                 "rt-subnet", fmt_json=True, cloud=demo)
        router = cloud.openstack("router", "create", "rt-router", fmt_json=True, cloud=demo)
        assert router["status"] == "ACTIVE" and router["external_gateway_info"] is None
        cloud.openstack("router", "set", "--external-gateway", "public", "rt-router", cloud=demo)
        cloud.openstack("router", "add", "subnet", "rt-router", "rt-subnet", cloud=demo)
        shown = cloud.openstack("router", "show", "rt-router", fmt_json=True, cloud=demo)
        gateway = shown["external_gateway_info"]
        assert gateway["enable_snat"] is True and gateway["external_fixed_ips"][0]["ip_address"].startswith("172.24.4.")
        assert shown["interfaces_info"] == [{"port_id": shown["interfaces_info"][0]["port_id"],
                                             "ip_address": "192.168.60.1", "subnet_id": subnet["id"]}]
        ports = cloud.openstack("port", "list", "--router", "rt-router", "--long", fmt_json=True, cloud=demo)
        assert [p["Device Owner"] for p in ports] == ["network:router_interface"]

        again = cloud.openstack("router", "add", "subnet", "rt-router", "rt-subnet", cloud=demo, check=False)
        assert again.returncode != 0 and "Router already has a port on subnet" in again.stderr
        in_use = cloud.openstack("router", "delete", "rt-router", cloud=demo, check=False)
        assert in_use.returncode != 0 and "still has ports" in in_use.stderr
        # private-subnet's gateway address is router1's: a second router cannot take it.
        taken = cloud.openstack("router", "add", "subnet", "rt-router", "private-subnet", cloud=demo, check=False)
        assert taken.returncode != 0 and "10.0.0.1" in taken.stderr
        snat = cloud.openstack("router", "set", "--external-gateway", "public", "--disable-snat", "rt-router",
                               cloud=demo, check=False)
        assert snat.returncode != 0 and "403" in snat.stderr
        cloud.openstack("router", "set", "--external-gateway", "public", "--disable-snat", "rt-router")
        # What the commands did is read back through openstacksdk (one login, not one per CLI run).
        sdk = cloud.sdk(demo)
        assert sdk.network.get_router(router["id"]).external_gateway_info["enable_snat"] is False
        cloud.openstack("router", "set", "--route", "destination=10.30.0.0/16,gateway=192.168.60.9", "rt-router",
                        cloud=demo)
        assert sdk.network.get_router(router["id"]).routes == [
            {"destination": "10.30.0.0/16", "nexthop": "192.168.60.9"}]
        needed = cloud.openstack("router", "remove", "subnet", "rt-router", "rt-subnet", cloud=demo, check=False)
        assert needed.returncode != 0 and "required by one or more routes" in needed.stderr
        cloud.openstack("router", "unset", "--route", "destination=10.30.0.0/16,gateway=192.168.60.9", "rt-router",
                        cloud=demo)
        cloud.openstack("router", "remove", "subnet", "rt-router", "rt-subnet", cloud=demo)
        # An interface by port, then taken off by port (the port goes with it, as upstream).
        port = cloud.openstack("port", "create", "--network", "rt-net", "rt-port", fmt_json=True, cloud=demo)
        cloud.openstack("router", "add", "port", "rt-router", "rt-port", cloud=demo)
        attached = sdk.network.get_port(port["id"])
        assert attached.device_owner == "network:router_interface" and attached.device_id == router["id"]
        cloud.openstack("router", "remove", "port", "rt-router", port["id"], cloud=demo)
        assert list(sdk.network.ports(network_id=subnet["network_id"])) == []
        cloud.openstack("router", "unset", "--external-gateway", "rt-router", cloud=demo)
        assert sdk.network.get_router(router["id"]).external_gateway_info is None
        cloud.openstack("router", "delete", "rt-router", cloud=demo)
    finally:
        cloud.openstack("router", "delete", "rt-router", cloud=demo, check=False)
        cloud.openstack("network", "delete", "rt-net", cloud=demo)


def test_router_quota(cloud):
    cloud.openstack("quota", "set", "--routers", "1", "demo")
    try:
        assert cloud.openstack("quota", "show", "--network", "demo", fmt_json=True)
        cloud.openstack("router", "create", "quota-router-1", cloud="kilonova-demo")
        over = cloud.openstack("router", "create", "quota-router-2", cloud="kilonova-demo", check=False)
        assert over.returncode != 0 and "Quota exceeded for resources: ['router']" in over.stderr
    finally:
        cloud.openstack("router", "delete", "quota-router-1", cloud="kilonova-demo", check=False)
        cloud.openstack("quota", "set", "--routers", "10", "demo")
