"""Security group rules -> nftables text (pure): each rule attribute's match, the port's fixed rules."""
from __future__ import annotations

import pytest

from kilonova.compute.virt.libvirt import nft_rules
from kilonova.compute.virt.libvirt.nft_rules import PortFilter, port_chains, rule_match


def rule(direction="ingress", ethertype="IPv4", **values) -> dict:
    return {"direction": direction, "ethertype": ethertype, **values}


@pytest.mark.parametrize("values, expected", [
    ({}, "meta nfproto ipv4"),
    ({"ethertype": "IPv6"}, "meta nfproto ipv6"),
    ({"protocol": "icmp"}, "meta nfproto ipv4 meta l4proto 1"),
    ({"protocol": "icmp", "port_range_min": 8}, "meta nfproto ipv4 meta l4proto 1 icmp type 8"),
    ({"protocol": "icmp", "port_range_min": 3, "port_range_max": 4},
     "meta nfproto ipv4 meta l4proto 1 icmp type 3 icmp code 4"),
    ({"ethertype": "IPv6", "protocol": "ipv6-icmp", "port_range_min": 128},
     "meta nfproto ipv6 meta l4proto 58 icmpv6 type 128"),
    ({"ethertype": "IPv6", "protocol": "1"}, "meta nfproto ipv6 meta l4proto 58"),
    ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}, "meta nfproto ipv4 meta l4proto 6 th dport 22"),
    ({"protocol": "udp", "port_range_min": 1000, "port_range_max": 2000},
     "meta nfproto ipv4 meta l4proto 17 th dport 1000-2000"),
    ({"protocol": "132", "port_range_min": 5, "port_range_max": 6}, "meta nfproto ipv4 meta l4proto 132 th dport 5-6"),
    ({"protocol": "vrrp"}, "meta nfproto ipv4 meta l4proto 112"),
    ({"protocol": "47"}, "meta nfproto ipv4 meta l4proto 47"),
    ({"remote_ip_prefix": "10.0.0.7/24"}, "meta nfproto ipv4 ip saddr 10.0.0.0/24"),
    ({"remote_ip_prefix": "192.0.2.9/32"}, "meta nfproto ipv4 ip saddr 192.0.2.9"),
    ({"remote_ip_prefix": "0.0.0.0/0"}, "meta nfproto ipv4"),
    ({"ethertype": "IPv6", "remote_ip_prefix": "2001:db8::/64"}, "meta nfproto ipv6 ip6 saddr 2001:db8::/64"),
    ({"remote_group_id": "g1"}, "meta nfproto ipv4 ip saddr @g-g1-4"),
    ({"ethertype": "IPv6", "remote_group_id": "g1", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80},
     "meta nfproto ipv6 ip6 saddr @g-g1-6 meta l4proto 6 th dport 80"),
], ids=lambda v: repr(v) if isinstance(v, dict) else "")
def test_an_ingress_rule_matches_on_its_attributes(values, expected):
    assert rule_match(rule(**values), "ingress") == expected


def test_egress_rules_match_the_destination_and_skip_the_other_direction():
    assert rule_match(rule("egress", remote_ip_prefix="10.1.0.0/16"), "egress") == \
        "meta nfproto ipv4 ip daddr 10.1.0.0/16"
    assert rule_match(rule("egress", remote_group_id="g"), "egress") == "meta nfproto ipv4 ip daddr @g-g-4"
    assert rule_match(rule("egress"), "ingress") is None


def _port(**values) -> PortFilter:
    base = dict(port_id="p1", number=7, tap="tapp1", bridge="kbr-n", mac="fa:16:3e:00:00:01",
                addresses=["10.0.0.5"], groups=["g1", "g2"])
    return PortFilter(**{**base, **values})


def test_a_port_is_default_deny_stateful_and_marked():
    chains = port_chains(_port())
    ingress = chains[("inet", "ingress-p1")]
    assert ingress[0] == 'oifname != "kbr-n" return'
    assert "ct state established,related accept" in ingress
    assert ingress[-3:] == ["jump sg-g1-in", "jump sg-g2-in", "drop"]
    egress = chains[("inet", "egress-p1")]
    assert egress[0] == 'iifname != "kbr-n" return' and egress[-3:] == ["jump sg-g1-out", "jump sg-g2-out", "drop"]
    assert chains[("bridge", "from-p1")][0] == "meta mark set 0x7"
    assert chains[("bridge", "to-p1")] == ["meta mark set meta mark and 0xffff or 0x70000"]


def test_a_group_is_one_chain_per_direction_of_accepting_rules():
    chains = nft_rules.group_chains("g1", [rule(protocol="icmp"), rule("egress"), rule(ethertype="IPv6")])
    assert chains == {("inet", "sg-g1-in"): ["meta nfproto ipv4 meta l4proto 1 accept", "meta nfproto ipv6 accept"],
                      ("inet", "sg-g1-out"): ["meta nfproto ipv4 accept"]}


def test_a_stateless_port_has_no_conntrack_rules_and_is_untracked():
    port = _port(stateful=False)
    assert not any("ct state" in line for chain in port_chains(port).values() for line in chain)
    assert nft_rules.port_elements(port)[("inet", "untracked")] == ("0x7", "jump untracked")


def test_anti_spoofing_allows_own_addresses_pairs_and_dhcp_client_only():
    spoof = port_chains(_port(pairs=[{"ip_address": "10.0.0.100/30", "mac_address": "fa:16:3e:00:00:99"}]))[
        ("bridge", "from-p1")]
    assert "ether saddr != { fa:16:3e:00:00:01, fa:16:3e:00:00:99 } drop" in spoof
    assert "ip saddr != { 10.0.0.100/30, 10.0.0.5 } drop" in spoof
    assert "ip6 saddr != { fe80::f816:3eff:fe00:1 } drop" in spoof
    assert "ip protocol udp udp sport 67 drop" in spoof  # a DHCP server in a guest
    dhcp = spoof.index("ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept")
    assert dhcp < spoof.index("ip saddr != { 10.0.0.100/30, 10.0.0.5 } drop")


def test_a_port_without_ipv4_sends_no_ipv4():
    spoof = port_chains(_port(addresses=["2001:db8::5"]))[("bridge", "from-p1")]
    assert "ether type ip drop" in spoof and "ether type arp drop" in spoof
    assert "ip6 saddr != { 2001:db8::5, fe80::f816:3eff:fe00:1 } drop" in spoof


def test_link_local_address_of_a_mac():
    assert nft_rules.link_local("52:54:00:12:34:56") == "fe80::5054:ff:fe12:3456"


def test_remote_group_sets_hold_only_their_family():
    commands = nft_rules.add_set("abcd", "g", 4, ["10.0.0.5", "2001:db8::1", "10.0.0.6"])
    assert commands[-1] == "add element inet kilonova-abcd g-g-4 { 10.0.0.5, 10.0.0.6 }"
    assert nft_rules.remote_groups([rule(remote_group_id="g"), rule(ethertype="IPv6", remote_group_id="h"),
                                    rule()]) == {("g", 4), ("h", 6)}


def test_each_bridge_has_a_conntrack_zone_of_its_own_in_every_life():
    zones = {nft_rules.zone(f"kbr-{n:07x}abcd") for n in range(200)}
    assert len(zones) >= 199 and all(1 <= z <= 0xFFFF for z in zones)
    assert nft_rules.zone("kbr-1234567abcd") == nft_rules.zone("kbr-1234567abcd")
    assert nft_rules.add_zone("abcd", "kbr-x") == [
        f'add element inet kilonova-abcd zones {{ "kbr-x" : {nft_rules.zone("kbr-x")} }}']
