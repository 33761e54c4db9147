"""IP address management for one subnet: CIDR checks, gateway and pool defaults, picking a free address.

Pure functions on ``ipaddress`` objects; errors are Neutron's 400 faults.
"""
from __future__ import annotations

import ipaddress
import socket

from kilonova.network.errors import bad_request, fault, invalid_input

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_cidr(cidr: object, ip_version: int | None) -> IPNetwork:
    if not isinstance(cidr, str):
        raise bad_request(f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet.")
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise bad_request(f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet.") from None
        raise bad_request(f"Invalid input for cidr. Reason: '{cidr}' isn't a recognized IP subnet cidr, "
                          f"'{loose}' is recommended.") from None
    if ip_version is not None and network.version != ip_version:
        raise invalid_input(f"cidr '{cidr}' does not match the ip_version '{ip_version}'" if ip_version in (4, 6)
                            else f"ip_version {ip_version} is not supported")
    if network.num_addresses < (4 if network.version == 4 else 2) and network.prefixlen != network.max_prefixlen:
        raise invalid_input(f"Subnet {cidr} is too small")
    return network


def parse_ip(value: object, what: str = "ip_address") -> IPAddress:
    try:
        return ipaddress.ip_address(value)  # type: ignore[arg-type]
    except ValueError:
        raise bad_request(f"Invalid input for {what}. Reason: '{value}' is not a valid IP address.") from None


def host_range(network: IPNetwork) -> tuple[IPAddress, IPAddress]:
    """The first and last usable address (IPv4 drops network and broadcast, IPv6 the router anycast)."""
    if network.num_addresses <= 2:
        return network[0], network[-1]
    last = network[-2] if network.version == 4 else network[-1]
    return network[1], last


def is_usable(network: IPNetwork, ip: IPAddress) -> bool:
    first, last = host_range(network)
    return ip in network and first <= ip <= last


def default_gateway(network: IPNetwork) -> str:
    return str(host_range(network)[0])


def check_gateway(network: IPNetwork, gateway: object) -> str | None:
    """An IPv6 gateway may also be the subnet-router anycast address or link-local (routers announce
    themselves from their link-local addresses), as Neutron accepts."""
    if gateway is None:
        return None
    ip = parse_ip(gateway, "gateway_ip")
    if ip.version != network.version:
        raise invalid_input(f"gateway_ip '{gateway}' does not match the ip_version '{network.version}'")
    if ip.version == 6 and (ip in network or ip.is_link_local):
        return str(ip)
    if not is_usable(network, ip):
        raise invalid_input("Gateway is not valid on subnet")
    return str(ip)


def default_pools(network: IPNetwork, gateway: str | None) -> list[dict[str, str]]:
    first, last = host_range(network)
    pools: list[tuple[IPAddress, IPAddress]] = [(first, last)]
    if gateway is not None:
        gw = ipaddress.ip_address(gateway)
        pools = [(s, e) for s, e in ((first, gw - 1), (gw + 1, last)) if s <= e] if first <= gw <= last else pools
    return [{"start": str(s), "end": str(e)} for s, e in pools]


def check_pools(network: IPNetwork, pools: object, gateway: str | None) -> list[dict[str, str]]:
    if not isinstance(pools, list):
        raise bad_request("Invalid input for allocation_pools. Reason: Invalid data format for IP pool.")
    ranges = []
    for pool in pools:
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise bad_request(f"Invalid input for allocation_pools. Reason: Invalid data format for IP pool: "
                              f"'{pool}'.")
        start, end = parse_ip(pool["start"], "allocation_pools"), parse_ip(pool["end"], "allocation_pools")
        if start.version != network.version or end.version != network.version or start > end:
            raise fault(400, "InvalidAllocationPool", f"The allocation pool {start}-{end} is not valid.")
        if not (is_usable(network, start) and is_usable(network, end)):
            raise fault(400, "OutOfBoundsAllocationPool", f"The allocation pool {start}-{end} spans beyond "
                                                          f"the subnet cidr {network}.")
        ranges.append((start, end))
    ranges.sort()
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:]):
        if s2 <= e1:
            raise fault(400, "OverlappingAllocationPools",
                        f"Found overlapping allocation pools: {s1}-{e1} and {s2}-{e2} for subnet {network}.")
    if gateway is not None:
        gw = ipaddress.ip_address(gateway)
        for start, end in ranges:
            if start <= gw <= end:
                raise fault(409, "GatewayConflictWithAllocationPools",
                            f"Gateway ip {gateway} conflicts with allocation pool {start}-{end}.")
    return [{"start": str(s), "end": str(e)} for s, e in ranges]


def first_free(pools: list[dict[str, str]], allocated: set[str]) -> str | None:
    """The lowest address of the pools that is not in ``allocated``."""
    # Walk plain integers and build an address object only for the answer: this runs per port,
    # over every address already taken.
    for pool in pools:
        start, end = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        # IPv4 text straight from the integer (the same dotted quad str() gives, ~10x cheaper than an
        # address object per step); IPv6 keeps the library's canonical compressed form.
        text_of = _ipv4_text if start.version == 4 else (lambda value: str(ipaddress.IPv6Address(value)))
        for value in range(int(start), int(end) + 1):
            text = text_of(value)
            if text not in allocated:
                return text
    return None


def _ipv4_text(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


AUTO_ADDRESS_MODES = ("slaac", "dhcpv6-stateless")
# Neutron's ROUTER_INTERFACE_OWNERS_SNAT: the ports that get no automatic (EUI-64) address.
ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                           "network:ha_router_replicated_interface", "network:router_centralized_snat")


def is_auto_address(subnet) -> bool:
    """Whether a subnet's ports address themselves (SLAAC, DHCPv6-stateless): their address is the EUI-64
    of their MAC in the subnet's /64, not one from the pools. ``subnet``: a row or a dict."""
    get = subnet.get if isinstance(subnet, dict) else lambda key: getattr(subnet, key)
    return get("ipv6_address_mode") in AUTO_ADDRESS_MODES or get("ipv6_ra_mode") in AUTO_ADDRESS_MODES


def eui64(prefix: str, mac: str) -> str:
    """The modified EUI-64 address (RFC 4291, appendix A) a host with ``mac`` gives itself in ``prefix``:
    ff:fe in the middle of the MAC, its universal/local bit flipped."""
    octets = bytes(int(part, 16) for part in mac.split(":"))
    interface_id = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:6]
    network = ipaddress.IPv6Network(prefix)
    return str(ipaddress.IPv6Address(int(network.network_address) | int.from_bytes(interface_id, "big")))


def overlaps(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]
