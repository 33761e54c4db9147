"""``network_data.json`` (config drive and metadata API) for dual-stack ports, in upstream Nova's shape."""
from kilonova.compute.virt.libvirt import configdrive


def _vif(v6_subnet: dict, v6_address: str) -> dict:
    return {"port_id": "1234567890abcdef", "network_id": "n", "mac_address": "fa:16:3e:00:00:02",
            "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "s4", "version": 4},
                          {"ip_address": v6_address, "subnet_id": "s6", "version": 6}],
            "subnets": [{"id": "s4", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "ip_version": 4,
                         "dns_nameservers": [], "enable_dhcp": True},
                        {"id": "s6", "cidr": "fd00:1::/64", "gateway_ip": "fd00:1::1", "ip_version": 6,
                         "dns_nameservers": ["fd00:1::53"], "enable_dhcp": True, **v6_subnet}]}


def test_slaac_and_stateful_subnets_are_typed_by_their_address_mode():
    slaac = configdrive.network_data([_vif({"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"},
                                           "fd00:1::f816:3eff:fe00:2")])
    v4, v6 = slaac["networks"]
    assert v4["type"] == "ipv4" and v4["netmask"] == "255.255.255.0"
    assert v6 == {"id": "network0-1", "link": "tap1234567890a", "network_id": "n", "type": "ipv6_slaac",
                  "ip_address": "fd00:1::f816:3eff:fe00:2", "netmask": "ffff:ffff:ffff:ffff::",
                  "routes": [{"network": "::", "netmask": "::", "gateway": "fd00:1::1"}],
                  "services": [{"type": "dns", "address": "fd00:1::53"}]}
    stateful = configdrive.network_data([_vif({"ipv6_address_mode": "dhcpv6-stateful"}, "fd00:1::5")])
    assert stateful["networks"][1]["type"] == "ipv6_dhcpv6-stateful"
    assert stateful["networks"][1]["ip_address"] == "fd00:1::5"


def test_an_ipv6_subnet_without_modes_is_dhcp_or_static_by_enable_dhcp():
    dhcp = configdrive.network_data([_vif({}, "fd00:1::5")])["networks"][1]
    assert dhcp == {"id": "network0-1", "link": "tap1234567890a", "network_id": "n", "type": "ipv6_dhcp"}
    static = configdrive.network_data([_vif({"enable_dhcp": False}, "fd00:1::5")])["networks"][1]
    assert static["type"] == "ipv6" and static["ip_address"] == "fd00:1::5"
