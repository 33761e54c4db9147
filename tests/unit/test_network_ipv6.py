"""IPv6 subnets as Neutron has them: address and RA modes with their checks, EUI-64 addresses for SLAAC and
DHCPv6-stateless subnets, pool addresses for stateful ones (the network service in-process)."""
import ipaddress

import pytest

from kilonova.network import ipam
from tests.unit.test_network_api import ADMIN, ALICE, api, post, svc  # noqa: F401 - the module's fixtures


def test_eui64_is_the_modified_interface_id_of_the_mac():
    assert ipam.eui64("fd00:1::/64", "fa:16:3e:aa:bb:cc") == "fd00:1::f816:3eff:feaa:bbcc"
    assert ipam.eui64("2001:db8::/64", "00:00:5e:00:53:01") == "2001:db8::200:5eff:fe00:5301"  # RFC 7042's


async def _network(api, name="v6"):
    return await post(api, "network", name=name)


def _message(body):
    return body["NeutronError"]["type"], body["NeutronError"]["message"]


@pytest.mark.parametrize("fields, error", [
    ({"ipv6_ra_mode": "slaac", "ipv6_address_mode": "dhcpv6-stateful"},
     "ipv6_ra_mode set to 'slaac' with ipv6_address_mode set to 'dhcpv6-stateful' is not valid. If both "
     "attributes are set, they must be the same value"),
    ({"ipv6_address_mode": "slaac", "enable_dhcp": False},
     "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False"),
    ({"ipv6_address_mode": "slaac", "cidr": "fd00:9::/80"},
     "Invalid CIDR fd00:9::/80 for IPv6 address mode. OpenStack uses the EUI-64 address format, which "
     "requires the prefix to be /64"),
    ({"ipv6_ra_mode": "dhcpv6-stateless", "cidr": "fd00:9::/56"},
     "Invalid CIDR fd00:9::/56 for IPv6 address mode. OpenStack uses the EUI-64 address format, which "
     "requires the prefix to be /64"),
    ({"cidr": "fd00:9::/127"}, "Subnet has a prefix length that is incompatible with DHCP service enabled"),
    ({"ip_version": 4, "cidr": "10.9.0.0/24", "ipv6_ra_mode": "slaac"}, "ipv6_ra_mode is not valid when ip_version is 4"),
    ({"ip_version": 4, "cidr": "10.9.0.0/24", "ipv6_address_mode": "slaac"},
     "ipv6_address_mode is not valid when ip_version is 4"),
], ids=["modes-differ", "dhcp-off", "slaac-not-64", "stateless-ra-not-64", "dhcp-on-127", "v4-ra", "v4-address"])
async def test_invalid_mode_combinations_are_refused_as_neutron(api, fields, error):
    net = await _network(api)
    body = {"network_id": net["id"], "ip_version": 6, "cidr": "fd00:9::/64", **fields}
    refused = await post(api, "subnet", status=400, **body)
    assert _message(refused) == ("InvalidInput", f"Invalid input for operation: {error}.")
    assert (await api.get(f"/v2.0/networks/{net['id']}", headers=ALICE)).json()["network"]["subnets"] == []


async def test_an_unknown_mode_and_a_mode_change_are_refused(api):
    net = await _network(api)
    unknown = await post(api, "subnet", status=400, network_id=net["id"], ip_version=6, cidr="fd00:8::/64",
                         ipv6_address_mode="eui64")
    assert _message(unknown)[1] == ("Invalid input for ipv6_address_mode. Reason: 'eui64' is not in "
                                    "['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac'].")
    sub = await post(api, "subnet", network_id=net["id"], ip_version=6, cidr="fd00:8::/64",
                     ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    changed = await api.put(f"/v2.0/subnets/{sub['id']}", headers=ALICE,
                            json={"subnet": {"ipv6_address_mode": "dhcpv6-stateful"}})
    assert changed.status_code == 400
    assert _message(changed.json())[1] == "Cannot update read-only attribute ipv6_address_mode"
    no_dhcp = await api.put(f"/v2.0/subnets/{sub['id']}", headers=ALICE, json={"subnet": {"enable_dhcp": False}})
    assert no_dhcp.status_code == 400
    assert _message(no_dhcp.json()) == ("InvalidInput", "Invalid input for operation: Cannot disable enable_dhcp "
                                                        "with ipv6 attributes set.")


async def test_slaac_subnet_defaults_and_gateways(api):
    net = await _network(api)
    sub = await post(api, "subnet", network_id=net["id"], ip_version=6, cidr="fd00:7::/64",
                     ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    assert (sub["ipv6_ra_mode"], sub["ipv6_address_mode"], sub["gateway_ip"]) == ("slaac", "slaac", "fd00:7::1")
    assert sub["allocation_pools"] == [{"start": "fd00:7::2", "end": "fd00:7::ffff:ffff:ffff:ffff"}]
    shown = (await api.get(f"/v2.0/subnets/{sub['id']}", headers=ALICE)).json()["subnet"]
    assert shown["ipv6_address_mode"] == "slaac" and shown["ip_version"] == 6
    # IPv6 routers are found by their link-local address: such a gateway is fine
    other = await _network(api)
    link_local = await post(api, "subnet", network_id=other["id"], ip_version=6, cidr="fd00:6::/64",
                            gateway_ip="fe80::1", ipv6_address_mode="slaac")
    assert link_local["gateway_ip"] == "fe80::1" and link_local["ipv6_ra_mode"] is None
    refused = await post(api, "subnet", status=400, network_id=other["id"], ip_version=6, cidr="fd00:5::/64",
                         gateway_ip="fd00:4::1")
    assert _message(refused)[1] == "Invalid input for operation: Gateway is not valid on subnet."
    pools = await post(api, "subnet", status=409, network_id=other["id"], ip_version=6, cidr="fd00:5::/64",
                       allocation_pools=[{"start": "fd00:5::1", "end": "fd00:5::10"}])
    assert _message(pools)[0] == "GatewayConflictWithAllocationPools"


async def test_dual_stack_ports_get_a_pool_ipv4_and_an_eui64_ipv6_address(api):
    net = await _network(api, "dual")
    v4 = await post(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.60.0.0/24")
    slaac = await post(api, "subnet", network_id=net["id"], ip_version=6, cidr="fd00:60::/64",
                       ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    stateless = await post(api, "subnet", network_id=net["id"], ip_version=6, cidr="fd00:61::/64",
                           ipv6_ra_mode="dhcpv6-stateless", ipv6_address_mode="dhcpv6-stateless")
    port = await post(api, "port", network_id=net["id"], mac_address="fa:16:3e:00:60:01")
    assert port["fixed_ips"] == [{"subnet_id": v4["id"], "ip_address": "10.60.0.2"},
                                 {"subnet_id": slaac["id"], "ip_address": "fd00:60::f816:3eff:fe00:6001"},
                                 {"subnet_id": stateless["id"], "ip_address": "fd00:61::f816:3eff:fe00:6001"}]
    # asking for the IPv4 subnet only still gives the automatic addresses
    only_v4 = await post(api, "port", network_id=net["id"], fixed_ips=[{"subnet_id": v4["id"]}])
    assert [ip["subnet_id"] for ip in only_v4["fixed_ips"]] == [v4["id"], slaac["id"], stateless["id"]]
    # an address of a SLAAC subnet cannot be chosen
    chosen = await post(api, "port", status=400, network_id=net["id"], fixed_ips=[{"ip_address": "fd00:60::5"}])
    assert _message(chosen) == ("AllocationOnAutoAddressSubnet",
                                f"IPv6 address fd00:60::5 cannot be directly assigned to a port on subnet "
                                f"{slaac['id']} as the subnet is configured for automatic addresses")
    # updating the other addresses keeps the automatic ones; a new MAC gives new ones
    moved = (await api.put(f"/v2.0/ports/{port['id']}", headers=ALICE,
                           json={"port": {"fixed_ips": [{"ip_address": "10.60.0.99"}]}})).json()["port"]
    assert [ip["ip_address"] for ip in moved["fixed_ips"]] == [
        "10.60.0.99", "fd00:60::f816:3eff:fe00:6001", "fd00:61::f816:3eff:fe00:6001"]
    resent = await api.put(f"/v2.0/ports/{port['id']}", headers=ALICE, json={"port": {"fixed_ips": moved["fixed_ips"]}})
    assert resent.status_code == 200 and resent.json()["port"]["fixed_ips"] == moved["fixed_ips"]
    remac = (await api.put(f"/v2.0/ports/{port['id']}", headers=ADMIN,
                           json={"port": {"mac_address": "fa:16:3e:00:60:02"}})).json()["port"]
    assert [ip["ip_address"] for ip in remac["fixed_ips"]] == [
        "10.60.0.99", "fd00:60::f816:3eff:fe00:6002", "fd00:61::f816:3eff:fe00:6002"]


async def test_stateful_subnets_give_pool_addresses(api):
    net = await _network(api, "stateful")
    sub = await post(api, "subnet", network_id=net["id"], ip_version=6, cidr="fd00:62::/64",
                     ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful",
                     allocation_pools=[{"start": "fd00:62::10", "end": "fd00:62::11"}])
    first = await post(api, "port", network_id=net["id"])
    second = await post(api, "port", network_id=net["id"], fixed_ips=[{"ip_address": "fd00:62::abcd"}])
    assert first["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "fd00:62::10"}]
    assert second["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "fd00:62::abcd"}]
    await post(api, "port", network_id=net["id"])
    full = await post(api, "port", status=409, network_id=net["id"])
    assert _message(full)[0] == "IpAddressGenerationFailure"


async def test_a_slaac_subnet_added_later_addresses_existing_ports_and_leaves_with_them(api):
    net = await _network(api, "later")
    await post(api, "subnet", network_id=net["id"], ip_version=4, cidr="10.63.0.0/24")
    port = await post(api, "port", network_id=net["id"], mac_address="fa:16:3e:00:63:01")
    router_port = await post(api, "port", ADMIN, network_id=net["id"], device_owner="network:router_interface",
                             project_id="p-alice")
    slaac = await post(api, "subnet", network_id=net["id"], ip_version=6, cidr="fd00:63::/64",
                       ipv6_address_mode="slaac")
    shown = (await api.get(f"/v2.0/ports/{port['id']}", headers=ALICE)).json()["port"]
    assert {"subnet_id": slaac["id"], "ip_address": "fd00:63::f816:3eff:fe00:6301"} in shown["fixed_ips"]
    router = (await api.get(f"/v2.0/ports/{router_port['id']}", headers=ALICE)).json()["port"]
    assert all(ip["subnet_id"] != slaac["id"] for ip in router["fixed_ips"])
    # the automatic addresses do not keep the subnet: deleting it takes them off the ports
    assert (await api.delete(f"/v2.0/subnets/{slaac['id']}", headers=ALICE)).status_code == 204
    after = (await api.get(f"/v2.0/ports/{port['id']}", headers=ALICE)).json()["port"]
    assert all(ipaddress.ip_address(ip["ip_address"]).version == 4 for ip in after["fixed_ips"])


@pytest.mark.parametrize("fields, error", [
    ({"ip_version": 4, "cidr": "fd00:5::/64"}, "cidr 'fd00:5::/64' does not match the ip_version '4'"),
    ({"gateway_ip": "10.0.0.1"}, "gateway_ip '10.0.0.1' does not match the ip_version '6'"),
    ({"dns_nameservers": ["8.8.8.8"]}, "dns_nameserver '8.8.8.8' does not match the ip_version '6'"),
    ({"host_routes": [{"destination": "10.1.0.0/16", "nexthop": "fd00:5::9"}]},
     "destination '10.1.0.0/16' does not match the ip_version '6'"),
    ({"host_routes": [{"destination": "fd00:9::/64", "nexthop": "10.0.0.9"}]},
     "nexthop '10.0.0.9' does not match the ip_version '6'"),
], ids=["cidr", "gateway", "dns", "route-destination", "route-nexthop"])
async def test_addresses_of_the_other_family_are_refused_as_neutron(api, fields, error):
    net = await _network(api)
    refused = await post(api, "subnet", status=400, **{"network_id": net["id"], "ip_version": 6,
                                                        "cidr": "fd00:5::/64", **fields})
    assert _message(refused) == ("InvalidInput", f"Invalid input for operation: {error}.")
