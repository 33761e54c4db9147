"""The compute APIs upstream removed (nova-network, cells v1, XenAPI agents, cloudpipe, certificates): their
routes stay and answer 410 Gone at every microversion, as upstream's do, so a client learns the API is gone
rather than mistyped (a 404). No policy is checked first, as upstream checks none.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router

# (path, methods) exactly as upstream's route table lists them for the removed controllers.
GONE = (
    ("/v2.1/os-agents", ("GET", "POST")),
    ("/v2.1/os-agents/{item}", ("PUT", "DELETE")),
    ("/v2.1/os-cells", ("GET", "POST")),
    ("/v2.1/os-cells/capacities", ("GET",)),
    ("/v2.1/os-cells/detail", ("GET",)),
    ("/v2.1/os-cells/info", ("GET",)),
    ("/v2.1/os-cells/sync_instances", ("POST",)),
    ("/v2.1/os-cells/{item}", ("GET", "PUT", "DELETE")),
    ("/v2.1/os-cells/{item}/capacities", ("GET",)),
    ("/v2.1/os-certificates", ("POST",)),
    ("/v2.1/os-certificates/{item}", ("GET",)),
    ("/v2.1/os-cloudpipe", ("GET", "POST")),
    ("/v2.1/os-cloudpipe/{item}", ("PUT",)),
    ("/v2.1/os-fixed-ips/{item}", ("GET",)),
    ("/v2.1/os-fixed-ips/{item}/action", ("POST",)),
    ("/v2.1/os-floating-ip-dns", ("GET",)),
    ("/v2.1/os-floating-ip-dns/{item}", ("PUT", "DELETE")),
    ("/v2.1/os-floating-ip-dns/{domain}/entries/{item}", ("GET", "PUT", "DELETE")),
    ("/v2.1/os-floating-ips-bulk", ("GET", "POST")),
    ("/v2.1/os-floating-ips-bulk/{item}", ("GET", "PUT")),
    ("/v2.1/os-fping", ("GET",)),
    ("/v2.1/os-fping/{item}", ("GET",)),
    # os-networks and os-tenant-networks: their reads still proxy the network service (networks.py).
    ("/v2.1/os-networks", ("POST",)),
    ("/v2.1/os-networks/add", ("POST",)),
    ("/v2.1/os-networks/{item}", ("DELETE",)),
    ("/v2.1/os-networks/{item}/action", ("POST",)),
    ("/v2.1/os-tenant-networks", ("POST",)),
    ("/v2.1/os-tenant-networks/{item}", ("DELETE",)),
    ("/v2.1/os-security-group-default-rules", ("GET", "POST")),
    ("/v2.1/os-security-group-default-rules/{item}", ("GET", "DELETE")),
    ("/v2.1/servers/{server_id}/consoles", ("GET", "POST")),
    ("/v2.1/servers/{server_id}/consoles/{item}", ("GET", "DELETE")),
    ("/v2.1/servers/{server_id}/os-virtual-interfaces", ("GET",)),
)


async def gone(request: Request, **_path: str):
    raise HTTPError(410, "This resource is no longer available.  No forwarding address is given.")


def register(router: Router) -> None:
    for path, methods in GONE:
        for method in methods:
            router.add(method, path, gone)
