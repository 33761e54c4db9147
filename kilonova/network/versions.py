"""Discovery: ``GET /`` (versions), ``GET /v2.0`` (resources), extensions and availability zones."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.auth import public
from kilonova.common.http import HTTPError, Router, json_response
from kilonova.network.views import AVAILABILITY_ZONE

UPDATED = "2024-01-01T00:00:00-00:00"
# alias -> (name, description): what this service really implements.
EXTENSIONS = {
    "availability_zone": ("Availability Zone", "The availability zone extension."),
    "binding": ("Port Binding", "Expose port bindings of a virtual port to external application"),
    "external-net": ("Neutron external network", "Adds external network attribute to network resource."),
    "network_availability_zone": ("Network Availability Zone", "Availability zone support for network."),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource."),
    "pagination": ("Pagination support", "Extension that indicates that pagination is enabled."),
    "port-security": ("Port Security", "Provides port security"),
    "project-id": ("project_id field enabled", "Extension that indicates that project_id field is enabled."),
    "provider": ("Provider Network", "Expose mapping of virtual networks to physical networks"),
    "quotas": ("Quota management support", "Expose functions for quotas management per project"),
    "quota_details": ("Quota details management support", "Expose functions for quotas usage statistics "
                      "per project"),
    "security-group": ("security-group", "The security groups extension."),
    "stateful-security-group": ("Stateful security group", "Indicates if the security group is stateful or not"),
    "security-groups-normalized-cidr": ("Security group rule normalized CIDR",
                                        "A rule's remote prefix as the network it names (normalized_cidr)"),
    "security-groups-rules-belongs-to-default-sg": ("Security group rule of a default group",
                                                    "Whether a rule is in its project's default group"),
    "security-groups-shared-filtering": ("Security group shared field", "Shows whether a group is shared"),
    "sorting": ("Sorting support", "Extension that indicates that sorting is enabled."),
    "standard-attr-description": ("standard-attr-description", "Extension to add descriptions to standard "
                                  "attributes"),
    "standard-attr-revisions": ("Resource revision numbers", "This extension will display the revision "
                                "number of neutron resources."),
    "standard-attr-tag": ("Tag support for resources with standard attribute: subnet, trunk, network_segment_"
                          "range, router, network, policy, subnetpool, port, security_group, floatingip",
                          "Enables to set tag on resources with standard attribute."),
    "standard-attr-timestamp": ("Resource timestamps", "Adds created_at and updated_at fields to all Neutron "
                                "resources that have Neutron standard attributes."),
    "l2_adjacency": ("L2 Adjacency", "Display L2 Adjacency for Neutron Networks."),
    "router": ("Neutron L3 Router", "Routers between subnets and an external network, and floating IPs."),
    "ext-gw-mode": ("Neutron L3 Configurable external gateway mode", "The enable_snat flag of a router's "
                    "external gateway."),
    "extraroute": ("Neutron Extra Route", "Static routes on routers."),
    "fip-port-details": ("Floating IP Port Details Extension", "The port_details of a floating IP's port."),
}
RESOURCES = ("subnet", "network", "port", "router", "floatingip")


def _extension(alias: str) -> dict:
    name, description = EXTENSIONS[alias]
    return {"name": name, "alias": alias, "description": description, "updated": UPDATED, "links": []}


@public
async def root(request: Request):
    base = str(request.base_url).rstrip("/")
    return json_response({"versions": [{"id": "v2.0", "status": "CURRENT",
                                        "links": [{"rel": "self", "href": f"{base}/v2.0/"}]}]})


async def resources(request: Request):
    base = str(request.base_url).rstrip("/")
    return json_response({"resources": [
        {"name": name, "collection": f"{name}s", "links": [{"rel": "self", "href": f"{base}/v2.0/{name}s"}]}
        for name in RESOURCES]})


async def extensions(request: Request):
    return json_response({"extensions": [_extension(alias) for alias in sorted(EXTENSIONS)]})


async def extension(request: Request, alias: str):
    if alias not in EXTENSIONS:
        raise HTTPError(404, f"Extension with alias {alias} does not exist", code="HTTPNotFound")
    return json_response({"extension": _extension(alias)})


async def availability_zones(request: Request):
    zones = [{"name": AVAILABILITY_ZONE, "resource": "network", "state": "available"}]
    return json_response({"availability_zones": zones})


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/v2.0", resources)
    router.add("GET", "/v2.0/extensions", extensions)
    router.add("GET", "/v2.0/extensions/{alias}", extension)
    router.add("GET", "/v2.0/availability_zones", availability_zones)
