"""What a network's dnsmasq does for its IPv6 subnets: router advertisements and DHCPv6 (no I/O here).

As the subnet's modes say, the way Neutron's DHCP and L3 agents serve them (its radvd's flags, its
dnsmasq's ranges), with dnsmasq sending the advertisements from the network's namespace:

* ``ipv6_ra_mode`` slaac: advertisements with the prefix's autonomous flag (guests make their EUI-64
  address), no DHCPv6 (``ra-only``);
* dhcpv6-stateless: the same, with the "other configuration" flag, and DHCPv6 answering for DNS only
  (``ra-stateless``);
* dhcpv6-stateful: advertisements with the "managed" flag and no autonomous prefix, and DHCPv6 handing
  each port its IPAM address (``static``: only the addresses of the hosts file);
* no ``ipv6_ra_mode``: no advertisements (a router outside OpenStack sends them); DHCPv6 for a stateful,
  stateless or mode-less subnet with DHCP, nothing for a SLAAC one.

A subnet is served only when its gateway address lies in it: that address goes on the namespace's end
of the veth, and dnsmasq serves the prefixes of its interface's addresses.
"""
from __future__ import annotations

import ipaddress

LEASE = "86400s"
RA_RANGE_MODES = {"slaac": "ra-only", "dhcpv6-stateless": "ra-stateless", "dhcpv6-stateful": "static"}


def subnets_of(vif: dict) -> list[dict]:
    """The IPv6 subnets of a port (as the host's network information has them)."""
    return [s for s in vif.get("subnets") or [] if s.get("ip_version") == 6 and s.get("cidr")]


def _gateway_in(subnet: dict) -> str | None:
    gateway = subnet.get("gateway_ip")
    if not gateway or ipaddress.ip_address(gateway) not in ipaddress.ip_network(subnet["cidr"]):
        return None
    return gateway


def served(subnets: list[dict]) -> list[dict]:
    """The IPv6 subnets the namespace serves (with DHCP on, a gateway address in them)."""
    return [s for s in subnets if s.get("enable_dhcp") is not False and _gateway_in(s)]


def interface_addresses(subnets: list[dict]) -> list[str]:
    """``address/prefix`` for the namespace's end of the veth: each served subnet's gateway."""
    return [f"{_gateway_in(s)}/{ipaddress.ip_network(s['cidr']).prefixlen}" for s in served(subnets)]


def _range_mode(subnet: dict) -> str | None:
    ra_mode, address_mode = subnet.get("ipv6_ra_mode"), subnet.get("ipv6_address_mode")
    if ra_mode:
        return RA_RANGE_MODES.get(ra_mode)
    return None if address_mode == "slaac" else "static"


def tag(index: int) -> str:
    return f"subnet6-{index}"


def dnsmasq_arguments(subnets: list[dict]) -> list[str]:
    """dnsmasq's ``--dhcp-range`` per served subnet, and ``--enable-ra`` when one wants advertisements."""
    arguments = []
    for index, subnet in enumerate(served(subnets)):
        mode = _range_mode(subnet)
        if mode is not None:
            network = ipaddress.ip_network(subnet["cidr"])
            arguments.append(f"--dhcp-range=set:{tag(index)},{network.network_address},{mode},"
                             f"{network.prefixlen},{LEASE}")
    if any(s.get("ipv6_ra_mode") for s in served(subnets)):
        arguments.append("--enable-ra")
    return arguments


def options(subnets: list[dict]) -> list[str]:
    """``dhcp-optsfile`` lines: each served subnet's DNS servers (DHCPv6, and RDNSS in advertisements)."""
    return [f"tag:{tag(index)},option6:dns-server," + ",".join(f"[{dns}]" for dns in subnet["dns_nameservers"])
            for index, subnet in enumerate(served(subnets)) if subnet.get("dns_nameservers")]


def host_addresses(vif: dict) -> list[str]:
    """The port's IPv6 addresses DHCPv6 hands out (stateful and mode-less subnets: not the EUI-64 ones)."""
    subnets = {s.get("id"): s for s in subnets_of(vif)}
    automatic = ("slaac", "dhcpv6-stateless")
    return [ip["ip_address"] for ip in vif.get("fixed_ips", []) if ip.get("version") == 6
            and not {subnets.get(ip.get("subnet_id"), {}).get(k) for k in ("ipv6_ra_mode", "ipv6_address_mode")}
            & set(automatic)]
