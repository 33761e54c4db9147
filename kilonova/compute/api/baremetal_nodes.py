"""/v2.1/os-baremetal-nodes (until 2.35; 404 from 2.36): upstream proxies the reads to a bare-metal service
and refuses the writes, pointing at that service's own commands. Kilonova has no bare-metal service, so the
reads answer 501 as upstream does without one, after its admin-only policy."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, read_json
from kilonova.compute.api.common import gone_from, require_admin
from kilonova.compute.api.host_calls import NOT_SUPPORTED


async def list_nodes(request: Request):
    gone_from(request, "2.36")
    require_admin(request, "os_compute_api:os-baremetal-nodes:list")
    raise HTTPError(501, NOT_SUPPORTED)


async def show_node(request: Request, node_id: str):
    gone_from(request, "2.36")
    require_admin(request, "os_compute_api:os-baremetal-nodes:show")
    raise HTTPError(501, NOT_SUPPORTED)


def _refused(command: str):
    async def refuse(request: Request, **_path: str):
        gone_from(request, "2.36")
        raise HTTPError(400, f"Command Not supported. Please use Ironic command {command} to perform this action.")
    return refuse


async def node_action(request: Request, node_id: str):
    """add_interface / remove_interface: refused like create and delete (any other action is unknown)."""
    gone_from(request, "2.36")
    body = await read_json(request)
    action = next(iter(body), None) if isinstance(body, dict) and len(body) == 1 else None
    commands = {"add_interface": "port-create", "remove_interface": "port-delete"}
    if action not in commands:
        raise HTTPError(400, "Invalid request body: it must name one action.")
    raise HTTPError(400, f"Command Not supported. Please use Ironic command {commands[action]} to perform this "
                         "action.")


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-baremetal-nodes", list_nodes)
    router.add("POST", "/v2.1/os-baremetal-nodes", _refused("node-create"))
    router.add("GET", "/v2.1/os-baremetal-nodes/{node_id}", show_node)
    router.add("DELETE", "/v2.1/os-baremetal-nodes/{node_id}", _refused("node-delete"))
    router.add("POST", "/v2.1/os-baremetal-nodes/{node_id}/action", node_action)
