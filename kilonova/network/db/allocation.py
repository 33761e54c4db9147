"""Choosing a port's fixed IPs from its network's subnets (the IPAM that touches the database)."""
from __future__ import annotations

import ipaddress
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.network import errors, ipam
from kilonova.network.db.subnets import allocated
from kilonova.network.models import IPAllocation, Subnet

ROUTER_OWNERS = ("network:router_interface", "network:router_gateway", "network:router_interface_distributed",
                 "network:ha_router_replicated_interface")


def _subnet_for_ip(subnets: list[Subnet], ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                   subnet_id: str | None) -> Subnet:
    if subnet_id is not None:
        subnet = next((s for s in subnets if s.id == subnet_id), None)
        if subnet is None:
            raise errors.invalid_input(f"Failed to create port on network, because fixed_ips included invalid "
                                       f"subnet {subnet_id}")
        if not ipam.is_usable(ipaddress.ip_network(subnet.cidr), ip):
            raise errors.fault(400, "InvalidIpForSubnet",
                               f"IP address {ip} is not a valid IP for the specified subnet.")
        return subnet
    for subnet in subnets:
        network = ipaddress.ip_network(subnet.cidr)
        if ip in network:
            if not ipam.is_usable(network, ip):
                raise errors.fault(400, "InvalidIpForSubnet",
                                   f"IP address {ip} is not a valid IP for the specified subnet.")
            return subnet
    raise errors.fault(400, "InvalidIpForNetwork",
                       f"IP address {ip} is not a valid IP for any of the subnets on the specified network.")


def _check_request(item: Any) -> tuple[str | None, str | None]:
    if not isinstance(item, dict) or not item or set(item) - {"subnet_id", "ip_address"}:
        raise errors.bad_request(f"Invalid input for fixed_ips. Reason: Invalid data format for fixed IP: "
                                 f"'{item}'.")
    return item.get("subnet_id"), item.get("ip_address")


def choose(session: Session, network_id: str, subnets: list[Subnet], requested: list | None,
           device_owner: str, current: list[IPAllocation] = (), mac: str | None = None) -> list[tuple[str, str]]:
    """(subnet id, address) pairs for a port. ``current`` are the port's own allocations (updates).

    As Neutron: one address of the first IPv4 subnet with room and one of the first stateful IPv6 one (or
    those ``requested``), and on every SLAAC / DHCPv6-stateless subnet the EUI-64 address of ``mac``
    (router interfaces excepted), which a port keeps through updates of its other addresses."""
    if subnets and session.get_bind().dialect.name != "sqlite":
        # Concurrent allocations on a subnet queue here on PostgreSQL/MariaDB (SQLite already runs one
        # writer at a time); without the lock they all pick the same first free address and collide.
        session.execute(sa.select(Subnet.id).where(Subnet.id.in_(sorted(s.id for s in subnets)))
                        .order_by(Subnet.id).with_for_update())
    taken = {s.id: allocated(session, s.id) - {a.ip_address for a in current if a.subnet_id == s.id}
             for s in subnets}
    chosen: list[tuple[str, str]] = []
    router_interface = device_owner in ipam.ROUTER_INTERFACE_OWNERS

    def take(subnet: Subnet, ip: str) -> None:
        if ip in taken[subnet.id]:
            raise errors.ip_already_allocated(ip, subnet.id)
        taken[subnet.id].add(ip)
        chosen.append((subnet.id, ip))

    if requested is None:
        for candidates in ([s for s in subnets if s.ip_version == 4],
                           [s for s in subnets if s.ip_version == 6 and not ipam.is_auto_address(s)]):
            if not candidates:
                continue
            for subnet in candidates:
                ip = ipam.first_free(subnet.allocation_pools, taken[subnet.id])
                if ip is not None:
                    take(subnet, ip)
                    break
            else:
                raise errors.ip_generation_failure(network_id)
    else:
        _choose_requested(network_id, subnets, requested, device_owner, current, taken, chosen, take)
    if mac is not None and not router_interface:
        handled = {subnet_id for subnet_id, _ in chosen}
        for subnet in subnets:
            if ipam.is_auto_address(subnet) and subnet.id not in handled:
                take(subnet, ipam.eui64(subnet.cidr, mac))
    return chosen


def _choose_requested(network_id: str, subnets: list[Subnet], requested: list, device_owner: str,
                      current: list[IPAllocation], taken: dict, chosen: list, take) -> None:
    if not isinstance(requested, list):
        raise errors.bad_request("Invalid input for fixed_ips. Reason: Invalid data format for fixed IP.")
    router_interface = device_owner in ipam.ROUTER_INTERFACE_OWNERS
    for item in requested:
        subnet_id, address = _check_request(item)
        if address is not None:
            ip = ipam.parse_ip(address, "fixed_ips")
            subnet = _subnet_for_ip(subnets, ip, subnet_id)
            text = str(ip)
            kept = any(a.subnet_id == subnet.id and a.ip_address == text for a in current)
            if ipam.is_auto_address(subnet) and not router_interface and not kept:
                raise errors.fault(400, "AllocationOnAutoAddressSubnet",
                                   f"IPv6 address {text} cannot be directly assigned to a port on subnet "
                                   f"{subnet.id} as the subnet is configured for automatic addresses")
            if text == subnet.gateway_ip and device_owner not in ROUTER_OWNERS:
                raise errors.ip_already_allocated(text, subnet.id)
            take(subnet, text)
            continue
        subnet = next((s for s in subnets if s.id == subnet_id), None)
        if subnet is None:
            raise errors.invalid_input(f"Failed to create port on network {network_id}, because fixed_ips "
                                       f"included invalid subnet {subnet_id}")
        if ipam.is_auto_address(subnet) and not router_interface:
            continue  # its EUI-64 address comes with every port
        kept = next((a.ip_address for a in current if a.subnet_id == subnet.id
                     and (subnet.id, a.ip_address) not in chosen), None)
        ip = kept or ipam.first_free(subnet.allocation_pools, taken[subnet.id])
        if ip is None:
            raise errors.ip_generation_failure(network_id)
        take(subnet, ip)
