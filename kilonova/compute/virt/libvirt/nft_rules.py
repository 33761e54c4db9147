"""Security groups as nftables rules: the text of one host's ruleset, port by port (no I/O here).

Guests hang off Linux bridges, and nftables' bridge family has no connection tracking on these
kernels (``nf_conntrack_bridge``), so the work is split the way br_netfilter allows:

* table ``bridge kilonova-S`` sees each frame with its bridge port: the chain ``from-<port>``
  (frames a guest sends) checks its source (anti-spoofing: MAC, ARP, IPv4/IPv6 source, no DHCP or
  router-advertisement server) and writes the port's number into the packet mark's low 16 bits;
  ``to-<port>`` writes the receiving port's number into the high 16 bits;
* table ``inet kilonova-S`` sees the same packet in the forward hook (br_netfilter hands bridged IP
  to it, conntrack included) and dispatches on the mark, in two base chains: ``egress`` (priority -5)
  jumps to ``egress-<port>``, ``ingress`` (priority 0) to ``ingress-<port>``. A port's chain holds
  what every port gets (conntrack, DHCP, neighbour discovery), then jumps to the chains of its groups,
  ``sg-<group>-out`` / ``sg-<group>-in``, whose rules accept, and drops the rest (default deny). An
  accept ends only its own base chain, so a packet between two guests of this host passes the
  sender's egress and then the receiver's ingress. Each group's rules exist once, however many
  ports use it; a rule change rewrites one chain. A ``remote_group_id`` is a named set of the
  remote group's member addresses. Each network's bridge has a connection-tracking zone of its own
  (set in the ``raw`` prerouting chain, before conntrack), as Neutron gives each network one.

A port without port security has no chains: its traffic is not filtered.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

TABLE_PREFIX = "kilonova-"
IN_MASK, OUT_SHIFT = 0xFFFF, 16
PORT_PROTOCOLS = {"tcp", "udp", "udplite", "sctp", "dccp", "6", "17", "136", "132", "33"}
NUMBERS = {"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "icmp": 1, "icmpv6": 58, "igmp": 2, "ipip": 4,
           "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
           "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17,
           "udplite": 136, "vrrp": 112}
# Neighbour discovery and multicast listener messages a port needs whatever its groups say (Neutron's too).
ND_OUT = "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report"
ND_IN = "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query"


@dataclass
class PortFilter:
    """What the rules of one port are made of (the network service's port, its groups resolved)."""
    port_id: str
    number: int                      # 1..65535, this host's mark for the port
    tap: str                         # its tap device (a bridge port)
    bridge: str                      # its network's bridge
    mac: str
    addresses: list[str]             # fixed IPs
    pairs: list[dict] = field(default_factory=list)   # allowed_address_pairs: ip_address (prefix), mac_address
    stateful: bool = True
    groups: list[str] = field(default_factory=list)   # its security groups' ids


def table_name(scope: str) -> str:
    return f"{TABLE_PREFIX}{scope}"


def set_name(group_id: str, version: int) -> str:
    return f"g-{group_id}-{version}"


def _family(text: str) -> int:
    return ipaddress.ip_network(text, strict=False).version


def _prefix(text: str) -> str:
    network = ipaddress.ip_network(text, strict=False)
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def _elements(values) -> str:
    return "{ " + ", ".join(values) + " }"


def link_local(mac: str) -> str:
    """The EUI-64 link-local address a guest makes from its MAC."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80] + [0] * 6 + eui)))


# ---------------------------------------------------------------------------------------------- one rule

def _protocol_number(protocol: str | None) -> int | None:
    if protocol is None:
        return None
    return NUMBERS[protocol] if protocol in NUMBERS else int(protocol)


def rule_match(rule: dict, direction: str) -> str | None:
    """The match of one security group rule on a packet going ``direction`` (None: not for it)."""
    if rule.get("direction") != direction:
        return None
    version = 6 if rule.get("ethertype") == "IPv6" else 4
    ip = "ip6" if version == 6 else "ip"
    parts = [f"meta nfproto ipv{version}"]
    remote = "saddr" if direction == "ingress" else "daddr"
    if rule.get("remote_group_id"):
        parts.append(f"{ip} {remote} @{set_name(rule['remote_group_id'], version)}")
    elif rule.get("remote_ip_prefix"):
        prefix = _prefix(rule["remote_ip_prefix"])
        if _family(prefix) != version:
            return None
        if not prefix.endswith("/0"):
            parts.append(f"{ip} {remote} {prefix}")
    number = _protocol_number(rule.get("protocol"))
    if version == 6 and number == 1:
        number = 58
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if number is not None:
        parts.append(f"meta l4proto {number}")
    if number in (1, 58):
        name = "icmp" if number == 1 else "icmpv6"
        if low is not None:
            parts.append(f"{name} type {low}")
            if high is not None:
                parts.append(f"{name} code {high}")
    elif number is not None and str(number) in PORT_PROTOCOLS and (low is not None or high is not None):
        low, high = low or high, high or low
        parts.append(f"th dport {low}" if low == high else f"th dport {low}-{high}")
    return " ".join(parts)


def remote_groups(rules: list[dict]) -> set[tuple[str, int]]:
    """The (group, IP version) sets the rules look up."""
    return {(rule["remote_group_id"], 6 if rule.get("ethertype") == "IPv6" else 4)
            for rule in rules if rule.get("remote_group_id")}


# ---------------------------------------------------------------------------------------------- one port

def _spoofing(port: PortFilter) -> list[str]:
    """The source checks of the frames a port sends (bridge family)."""
    macs = sorted({port.mac.lower(), *(p["mac_address"].lower() for p in port.pairs if p.get("mac_address"))})
    sources = [*port.addresses, *(p["ip_address"] for p in port.pairs if p.get("ip_address"))]
    v4 = sorted({_prefix(a) for a in sources if _family(a) == 4})
    v6 = sorted({_prefix(a) for a in sources if _family(a) == 6} | {link_local(port.mac)})
    lines = [f"ether saddr != {_elements(macs)} drop",
             f"arp saddr ether != {_elements(macs)} drop",
             "ip protocol udp udp sport 67 drop",                         # a DHCP server in a guest
             "ip6 nexthdr udp udp sport 547 drop",
             "ip6 nexthdr icmpv6 icmpv6 type nd-router-advert drop",      # a router in a guest
             "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",  # DHCP client
             "ip6 saddr :: ip6 nexthdr icmpv6 accept"]                    # duplicate address detection
    if v4:
        lines += [f"arp saddr ip != {_elements(['0.0.0.0', *v4])} drop", f"ip saddr != {_elements(v4)} drop"]
    else:
        lines += ["ether type arp drop", "ether type ip drop"]
    lines += [f"ip6 saddr != {_elements(v6)} drop", "ether type != { ip, ip6, arp } drop"]
    return lines


def _egress(port: PortFilter) -> list[str]:
    lines = [f'iifname != "{port.bridge}" return']
    if port.stateful:
        lines += ["ct state invalid drop", "ct state established,related accept"]
    lines += ["meta nfproto ipv4 udp sport 68 udp dport 67 accept",
              "meta nfproto ipv6 udp sport 546 udp dport 547 accept",
              f"meta nfproto ipv6 icmpv6 type {{ {ND_OUT} }} accept"]
    lines += [f"jump {group_chain(group_id, 'egress')}" for group_id in port.groups]
    return lines + ["drop"]


def _ingress(port: PortFilter) -> list[str]:
    lines = [f'oifname != "{port.bridge}" return']
    if port.stateful:
        lines += ["ct state invalid drop", "ct state established,related accept"]
    lines += ["meta nfproto ipv4 udp sport 67 udp dport 68 accept",
              "meta nfproto ipv6 udp sport 547 udp dport 546 accept",
              f"meta nfproto ipv6 icmpv6 type {{ {ND_IN} }} accept"]
    lines += [f"jump {group_chain(group_id, 'ingress')}" for group_id in port.groups]
    return lines + ["drop"]


def group_chain(group_id: str, direction: str) -> str:
    return f"sg-{group_id}-{'in' if direction == 'ingress' else 'out'}"


def group_chains(group_id: str, rules: list[dict]) -> dict[tuple[str, str], list[str]]:
    """(family, chain) -> rules of one group: each of its rules accepts what it matches."""
    return {("inet", group_chain(group_id, direction)):
            [f"{match} accept" for rule in rules for match in [rule_match(rule, direction)] if match]
            for direction in ("ingress", "egress")}


def port_chains(port: PortFilter) -> dict[tuple[str, str], list[str]]:
    """(family, chain) -> rules of one port."""
    out_mark = port.number << OUT_SHIFT
    return {
        ("bridge", f"from-{port.port_id}"): [f"meta mark set {port.number:#x}", *_spoofing(port)],
        ("bridge", f"to-{port.port_id}"): [f"meta mark set meta mark and {IN_MASK:#x} or {out_mark:#x}"],
        ("inet", f"egress-{port.port_id}"): _egress(port),
        ("inet", f"ingress-{port.port_id}"): _ingress(port),
    }


def port_elements(port: PortFilter) -> dict[tuple[str, str], tuple[str, str]]:
    """(family, map) -> (key, verdict) of the port in the dispatch maps."""
    elements = {
        ("bridge", "from-port"): (f'"{port.tap}"', f"jump from-{port.port_id}"),
        ("bridge", "to-port"): (f'"{port.tap}"', f"jump to-{port.port_id}"),
        ("inet", "egress"): (f"{port.number:#x}", f"jump egress-{port.port_id}"),
        ("inet", "ingress"): (f"{port.number << OUT_SHIFT:#x}", f"jump ingress-{port.port_id}"),
    }
    if not port.stateful:
        elements[("inet", "untracked")] = (f"{port.number:#x}", "jump untracked")
    return elements


# ---------------------------------------------------------------------------------------------- the tables

def base_tables(scope: str) -> str:
    """Both tables with their hooks and empty dispatch maps (``table`` blocks add to what exists)."""
    table = table_name(scope)
    return f"""table bridge {table} {{
  map from-port {{ type ifname : verdict; }}
  map to-port {{ type ifname : verdict; }}
  chain prerouting {{
    type filter hook prerouting priority -300; policy accept;
    iifname vmap @from-port
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    oifname vmap @to-port
  }}
}}
table inet {table} {{
  map egress {{ type mark : verdict; }}
  map ingress {{ type mark : verdict; }}
  map untracked {{ type mark : verdict; }}
  map zones {{ typeof iifname : ct zone; }}
  chain untracked {{
    notrack
  }}
  chain raw {{
    type filter hook prerouting priority -300; policy accept;
    ct zone set iifname map @zones
    meta mark and {IN_MASK:#x} vmap @untracked
  }}
  chain egress {{
    type filter hook forward priority -5; policy accept;
    meta mark and {IN_MASK:#x} vmap @egress
  }}
  chain ingress {{
    type filter hook forward priority 0; policy accept;
    meta mark and {IN_MASK << OUT_SHIFT:#x} vmap @ingress
  }}
}}
"""


def zone(bridge: str) -> int:
    """The connection-tracking zone of a network's bridge (1..65535, the same in every life of the agent), so
    that two networks with the same addresses on one host never share a connection's state."""
    return int(hashlib.sha1(bridge.encode()).hexdigest()[:8], 16) % 0xFFFF + 1


def add_zone(scope: str, bridge: str) -> list[str]:
    return [f'add element inet {table_name(scope)} zones {{ "{bridge}" : {zone(bridge)} }}']


def delete_zone(scope: str, bridge: str) -> list[str]:
    return [f'delete element inet {table_name(scope)} zones {{ "{bridge}" }}']


def add_set(scope: str, group_id: str, version: int, members: list[str]) -> list[str]:
    """Commands that make the set of a remote group hold exactly ``members`` (of ``version``)."""
    table, name = table_name(scope), set_name(group_id, version)
    kind = "ipv6_addr" if version == 6 else "ipv4_addr"
    commands = [f"add set inet {table} {name} {{ type {kind}; flags interval; }}",
                f"flush set inet {table} {name}"]
    # Collapsed here (no overlaps), so nft need not read the set's elements back to merge them.
    networks = ipaddress.collapse_addresses(ipaddress.ip_network(m, strict=False) for m in members
                                            if _family(m) == version)
    wanted = [_prefix(str(network)) for network in networks]
    if wanted:
        commands.append(f"add element inet {table} {name} {_elements(wanted)}")
    return commands


def delete_set(scope: str, group_id: str, version: int) -> list[str]:
    return [f"delete set inet {table_name(scope)} {set_name(group_id, version)}"]


def _fill(table: str, chains: dict[tuple[str, str], list[str]]) -> list[str]:
    commands = []
    for (family, chain), rules in chains.items():
        commands += [f"add chain {family} {table} {chain}", f"flush chain {family} {table} {chain}"]
        commands += [f"add rule {family} {table} {chain} {rule}" for rule in rules]
    return commands


def add_group(scope: str, group_id: str, rules: list[dict]) -> list[str]:
    """Commands that make a group's chains hold exactly its rules."""
    return _fill(table_name(scope), group_chains(group_id, rules))


def delete_group(scope: str, group_id: str) -> list[str]:
    table = table_name(scope)
    return [command for family, chain in group_chains(group_id, [])
            for command in (f"flush chain {family} {table} {chain}", f"delete chain {family} {table} {chain}")]


def add_port(scope: str, port: PortFilter) -> list[str]:
    """Commands that put ``port``'s chains in place (replacing what they held) and dispatch to them."""
    table = table_name(scope)
    commands = _fill(table, port_chains(port))
    for (family, name), (key, verdict) in port_elements(port).items():
        commands.append(f"add element {family} {table} {name} {{ {key} : {verdict} }}")
    return commands


def change_port(scope: str, old: PortFilter, new: PortFilter) -> list[str]:
    """Commands that rewrite the chains of a port that differ between ``old`` and ``new`` (same dispatch)."""
    before, after = port_chains(old), port_chains(new)
    return _fill(table_name(scope), {key: rules for key, rules in after.items() if before.get(key) != rules})


def delete_port(scope: str, port: PortFilter) -> list[str]:
    """Commands that take ``port``'s dispatch entries and chains away."""
    table = table_name(scope)
    commands = [f"delete element {family} {table} {name} {{ {key} }}"
                for (family, name), (key, _verdict) in port_elements(port).items()]
    for family, chain in port_chains(port):
        commands += [f"flush chain {family} {table} {chain}", f"delete chain {family} {table} {chain}"]
    return commands


def drop_tables(scope: str) -> list[str]:
    """Commands that remove both tables, whether or not they exist (``add`` first makes them exist)."""
    table = table_name(scope)
    return [f"add table {family} {table}" for family in ("bridge", "inet")] + \
        [f"delete table {family} {table}" for family in ("bridge", "inet")]
