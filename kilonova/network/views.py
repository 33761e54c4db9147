"""Networks, subnets, ports and security groups as Neutron shows them; admin-only attributes only to admins."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from kilonova.network.sg_rules import normalized_cidr

AVAILABILITY_ZONE = "nova"
VIF_DETAILS = {"port_filter": True, "ovs_hybrid_plug": False, "datapath_type": "system",
               "bridge_name": "br-int", "connectivity": "l2"}


def timestamp(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _standard(values: dict[str, Any]) -> dict[str, Any]:
    return {"description": values["description"], "tags": list(values["tags"]),
            "created_at": timestamp(values["created_at"]), "updated_at": timestamp(values["updated_at"]),
            "revision_number": values["revision_number"]}


def network(values: dict[str, Any], privileged: bool) -> dict[str, Any]:
    body = {
        "id": values["id"], "name": values["name"], "tenant_id": values["project_id"],
        "project_id": values["project_id"], "admin_state_up": values["admin_state_up"], "mtu": values["mtu"],
        "status": values["status"], "subnets": list(values["subnets"]), "shared": values["shared"],
        "availability_zone_hints": list(values["availability_zone_hints"]),
        "availability_zones": [AVAILABILITY_ZONE], "ipv4_address_scope": None, "ipv6_address_scope": None,
        "router:external": values["external"], "port_security_enabled": values["port_security_enabled"],
        "l2_adjacency": True, **_standard(values),
    }
    if privileged:
        body["provider:network_type"] = values["network_type"]
        body["provider:physical_network"] = values["physical_network"]
        body["provider:segmentation_id"] = values["segmentation_id"]
    return body


def subnet(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": values["id"], "name": values["name"], "tenant_id": values["project_id"],
        "project_id": values["project_id"], "network_id": values["network_id"],
        "ip_version": values["ip_version"], "subnetpool_id": None, "enable_dhcp": values["enable_dhcp"],
        "ipv6_ra_mode": values["ipv6_ra_mode"], "ipv6_address_mode": values["ipv6_address_mode"],
        "gateway_ip": values["gateway_ip"], "cidr": values["cidr"],
        "allocation_pools": [dict(p) for p in values["allocation_pools"]],
        "host_routes": [dict(r) for r in values["host_routes"]],
        "dns_nameservers": list(values["dns_nameservers"]), **_standard(values),
    }


def port(values: dict[str, Any], privileged: bool) -> dict[str, Any]:
    bound = bool(values["binding_host_id"])
    body = {
        "id": values["id"], "name": values["name"], "network_id": values["network_id"],
        "tenant_id": values["project_id"], "project_id": values["project_id"],
        "mac_address": values["mac_address"], "admin_state_up": values["admin_state_up"],
        "status": values["status"], "device_id": values["device_id"], "device_owner": values["device_owner"],
        "fixed_ips": [dict(ip) for ip in values["fixed_ips"]], "allowed_address_pairs": [],
        "security_groups": list(values.get("security_groups") or []), "binding:vnic_type": values["binding_vnic_type"],
        "port_security_enabled": values["port_security_enabled"], **_standard(values),
    }
    if privileged:
        body["binding:host_id"] = values["binding_host_id"]
        body["binding:profile"] = dict(values["binding_profile"])
        body["binding:vif_type"] = "ovs" if bound else "unbound"
        body["binding:vif_details"] = dict(VIF_DETAILS) if bound else {}
    return body


def security_group_rule(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": values["id"], "security_group_id": values["security_group_id"],
        "tenant_id": values["project_id"], "project_id": values["project_id"],
        "direction": values["direction"], "ethertype": values["ethertype"], "protocol": values["protocol"],
        "port_range_min": values["port_range_min"], "port_range_max": values["port_range_max"],
        "remote_ip_prefix": values["remote_ip_prefix"],
        "normalized_cidr": normalized_cidr(values["remote_ip_prefix"]),
        "remote_group_id": values["remote_group_id"],
        "belongs_to_default_sg": values.get("belongs_to_default_sg", False),
        "description": values["description"], "created_at": timestamp(values["created_at"]),
        "updated_at": timestamp(values["updated_at"]), "revision_number": values["revision_number"],
    }


def security_group(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": values["id"], "name": values["name"], "tenant_id": values["project_id"],
        "project_id": values["project_id"], "stateful": values["stateful"], "shared": False,
        "security_group_rules": [security_group_rule(rule) for rule in values["security_group_rules"]],
        **_standard(values),
    }
