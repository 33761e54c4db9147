"""Routers and floating IPs as Neutron shows them."""
from __future__ import annotations

from typing import Any

from kilonova.network.views import AVAILABILITY_ZONE, _standard


def gateway_info(router: dict[str, Any]) -> dict[str, Any] | None:
    port = router["gateway"]
    if port is None:
        return None
    return {"network_id": port["network_id"], "enable_snat": router["enable_snat"],
            "external_fixed_ips": [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]}
                                   for ip in port["fixed_ips"]]}


def router(values: dict[str, Any], privileged: bool) -> dict[str, Any]:
    body = {
        "id": values["id"], "name": values["name"], "tenant_id": values["project_id"],
        "project_id": values["project_id"], "admin_state_up": values["admin_state_up"],
        "status": values["status"], "external_gateway_info": gateway_info(values),
        "routes": [dict(r) for r in values["routes"]],
        "availability_zone_hints": list(values["availability_zone_hints"]),
        "availability_zones": [AVAILABILITY_ZONE], "flavor_id": None, **_standard(values),
    }
    if privileged:
        body["distributed"] = False
        body["ha"] = False
    return body


def floating_ip(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": values["id"], "tenant_id": values["project_id"], "project_id": values["project_id"],
        "floating_ip_address": values["floating_ip_address"],
        "floating_network_id": values["floating_network_id"], "router_id": values["router_id"],
        "port_id": values["fixed_port_id"], "fixed_ip_address": values["fixed_ip_address"],
        "status": values["status"], "port_details": values.get("port_details"),
        **_standard(values),
    }
