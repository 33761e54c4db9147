"""Neutron's faults for routers and floating IPs (type and message as upstream's L3 extension gives them)."""
from __future__ import annotations

from kilonova.common.http import HTTPError
from kilonova.network.errors import fault


def bad_router_request(message: str) -> HTTPError:
    return fault(400, "BadRequest", f"Bad router request: {message}.")


def bad_floatingip_request(message: str) -> HTTPError:
    return fault(400, "BadRequest", f"Bad floatingip request: {message}.")


def router_not_found(router_id: str) -> HTTPError:
    return fault(404, "RouterNotFound", f"Router {router_id} could not be found.")


def floatingip_not_found(floatingip_id: str) -> HTTPError:
    return fault(404, "FloatingIPNotFound", f"Floating IP {floatingip_id} could not be found.")


def router_in_use(router_id: str) -> HTTPError:
    return fault(409, "RouterInUse", f"Router {router_id} still has ports.")


def interface_not_found_for_subnet(router_id: str, subnet_id: str) -> HTTPError:
    return fault(404, "RouterInterfaceNotFoundForSubnet", f"Router {router_id} has no interface on subnet {subnet_id}.")


def interface_not_found(router_id: str, port_id: str) -> HTTPError:
    return fault(404, "RouterInterfaceNotFound", f"Router {router_id} does not have an interface with id {port_id}.")


def interface_in_use_by_floating_ip(router_id: str, subnet_id: str) -> HTTPError:
    return fault(409, "RouterInterfaceInUseByFloatingIP",
                 f"Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, as it is "
                 "required by one or more floating IPs.")


def gateway_in_use_by_floating_ip(router_id: str, network_id: str) -> HTTPError:
    return fault(409, "RouterExternalGatewayInUseByFloatingIp",
                 f"Gateway cannot be updated for router {router_id}, since a gateway to external network "
                 f"{network_id} is required by one or more floating IPs.")


def port_in_use(network_id: str, port_id: str, device_id: str) -> HTTPError:
    return fault(409, "PortInUse", f"Unable to complete operation on port {port_id} for network {network_id}. "
                                   f"Port already has an attached device {device_id}.")


def l3_port_in_use(port_id: str, device_owner: str) -> HTTPError:
    return fault(409, "L3PortInUse", f"Port {port_id} has owner {device_owner} and therefore cannot be deleted "
                                     "directly via the port API.")


def subnet_mismatch_for_port(port_id: str, subnet_id: str) -> HTTPError:
    return fault(409, "SubnetMismatchForPort", f"Subnet on port {port_id} does not match the requested subnet "
                                               f"{subnet_id}.")


def external_network_unreachable(network_id: str, subnet_id: str, port_id: str) -> HTTPError:
    return fault(404, "ExternalGatewayForFloatingIPNotFound",
                 f"External network {network_id} is not reachable from subnet {subnet_id}.  Therefore, cannot "
                 f"associate Port {port_id} with a Floating IP.")


def floating_ip_port_already_associated(address: str, fip_id: str, port_id: str, fixed_ip: str,
                                        network_id: str) -> HTTPError:
    return fault(409, "FloatingIPPortAlreadyAssociated",
                 f"Cannot associate floating IP {address} ({fip_id}) with port {port_id} using fixed IP {fixed_ip}, "
                 f"as that fixed IP already has a floating IP on external network {network_id}.")
