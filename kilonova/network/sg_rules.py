"""A security group rule's attributes, converted and checked as Neutron does, and the key that
makes two rules the same rule (SecurityGroupRuleExists)."""
from __future__ import annotations

import ipaddress
from typing import Any

from kilonova.network.errors import bad_request, fault

DIRECTIONS = ["ingress", "egress"]
ETHERTYPES = ["IPv4", "IPv6"]
# IANA numbers of the protocol names Neutron accepts.
PROTOCOLS = {"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "icmp": 1, "icmpv6": 58, "igmp": 2, "ipip": 4,
             "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
             "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17,
             "udplite": 136, "vrrp": 112}
ANY = ("any", "0")
PORT_PROTOCOLS = ("tcp", "udp", "udplite", "sctp", "dccp")
ICMP_NUMBERS = (1, 58)
IPV6_ONLY = {"ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route",
             "41", "44", "58", "59", "60", "43"}
ANY_ADDRESS = ("0.0.0.0/0", "::/0")


def _invalid(kind: str, message: str):
    return fault(400, kind, message)


def protocol(value: Any) -> str | None:
    """None for any protocol; a lower-case name or a number 0-255 as a string otherwise."""
    if value is None or (isinstance(value, str) and value.lower() in ANY) or (type(value) is int and value == 0):
        return None
    text = str(value).lower() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is not None and text in PROTOCOLS:
        return text
    if text is not None and text.isdigit() and 0 <= int(text) <= 255:
        return str(int(text))
    raise _invalid("SecurityGroupRuleInvalidProtocol",
                   f"Security group rule protocol {value} not supported. Only protocol values "
                   f"{[None, *sorted(PROTOCOLS)]} and integer representations [0 to 255] are supported.")


def port(value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _invalid("SecurityGroupInvalidPortValue", f"Invalid value for port {value}") from None
    if isinstance(value, bool) or isinstance(value, float) or not 0 <= number <= 65535:
        raise _invalid("SecurityGroupInvalidPortValue", f"Invalid value for port {value}")
    return number


def direction(value: Any) -> str:
    if value not in DIRECTIONS:
        raise bad_request(f"Invalid input for direction. Reason: '{value}' is not in {DIRECTIONS}.")
    return value


def ethertype(value: Any) -> str:
    for known in ETHERTYPES:
        if isinstance(value, str) and value.lower() == known.lower():
            return known
    raise bad_request(f"Invalid input for ethertype. Reason: '{value}' is not in {ETHERTYPES}.")


def remote_ip_prefix(value: Any) -> str | None:
    """The prefix with its length always written out; host bits are kept, as Neutron keeps them."""
    if value in (None, ""):
        return None
    try:
        return str(ipaddress.ip_interface(value if isinstance(value, str) else ""))
    except ValueError:
        raise _invalid("InvalidCIDR", f"Invalid CIDR {value} given as IP prefix.") from None


def normalized_cidr(prefix: str | None) -> str | None:
    return str(ipaddress.ip_interface(prefix).network) if prefix else None


def _number(name: str) -> int:
    return PROTOCOLS[name] if name in PROTOCOLS else int(name)


def check(rule: dict[str, Any]) -> None:
    """What Neutron checks across attributes; ``rule`` holds converted values and is made canonical."""
    if rule["ethertype"] == "IPv6":  # legacy IPv6 ICMP names and number 1 mean ICMPv6
        if rule["protocol"] in ("icmp", "icmpv6"):
            rule["protocol"] = "ipv6-icmp"
        elif rule["protocol"] == "1":
            rule["protocol"] = "58"
    _check_port_range(rule)
    prefix = rule.get("remote_ip_prefix")
    if prefix and rule["ethertype"] != f"IPv{ipaddress.ip_interface(prefix).version}":
        raise _invalid("SecurityGroupRuleParameterConflict",
                       f"Conflicting value ethertype {rule['ethertype']} for CIDR {rule['_given_prefix']}")
    if rule["protocol"] in IPV6_ONLY and rule["ethertype"] == "IPv4":
        raise _invalid("SecurityGroupEthertypeConflictWithProtocol",
                       f"Invalid ethertype {rule['ethertype']} for protocol {rule['protocol']}.")
    if prefix and rule.get("remote_group_id"):
        raise _invalid("SecurityGroupRemoteGroupAndRemoteIpPrefix",
                       "Only remote_ip_prefix or remote_group_id may be provided.")


def _check_port_range(rule: dict[str, Any]) -> None:
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if low is None and high is None:
        return
    if not rule["protocol"]:
        raise _invalid("SecurityGroupProtocolRequiredWithPorts",
                       "Must also specify protocol if port range is given.")
    number = _number(rule["protocol"])
    if number in (_number(name) for name in PORT_PROTOCOLS):
        if low == 0 or high == 0:
            raise _invalid("SecurityGroupInvalidPortValue", "Invalid value for port 0")
        if low is None or high is None or low > high:
            raise _invalid("SecurityGroupInvalidPortRange",
                           "For TCP/UDP protocols, port_range_min must be <= port_range_max")
        return
    if number in ICMP_NUMBERS:
        for value, field, attr in ((low, "type", "port_range_min"), (high, "code", "port_range_max")):
            if value is not None and not 0 <= value <= 255:
                raise _invalid("SecurityGroupInvalidIcmpValue",
                               f"Invalid value for ICMP {field} ({attr}) {value}. It must be 0 to 255.")
        if low is None:
            raise _invalid("SecurityGroupMissingIcmpType",
                           f"ICMP code (port-range-max) {high} is provided but ICMP type (port-range-min) "
                           "is missing.")
        return
    raise _invalid("SecurityGroupInvalidProtocolForPort",
                   f"Invalid protocol {number} for port range, only supported for "
                   f"{', '.join(name.upper() for name in PORT_PROTOCOLS)} protocols.")


def key(rule: dict[str, Any]) -> tuple:
    """Two rules with the same key are one rule: an any-address prefix is no prefix, a protocol's
    name is its number."""
    prefix = rule.get("remote_ip_prefix")
    proto = rule.get("protocol")
    return (rule["security_group_id"], rule["direction"], rule["ethertype"],
            None if proto is None else _number(proto), rule.get("port_range_min"), rule.get("port_range_max"),
            rule.get("remote_group_id"), None if prefix in ANY_ADDRESS else prefix)
