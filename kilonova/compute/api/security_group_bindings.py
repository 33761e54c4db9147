"""The security groups a server shows, read live from the network service as upstream Nova reads them.

Upstream's view of a server (show, detail list) asks Neutron, with the caller's token, for the servers'
ports and the names of their groups: a group renamed, or changed on a port, shows at once. A server
without ports in the network service (still building, none asked for) shows what its record holds;
so does every server when the network service cannot answer.
"""
from __future__ import annotations

import logging
from typing import Any

from kilonova.common.context import RequestContext

LOG = logging.getLogger(__name__)
CHUNK = 100  # ids per query: a URL stays far below the APIs' 16 KiB limit


async def _get(svc, ctx: RequestContext, path: str, params: dict) -> dict | None:
    network = getattr(svc, "network", None)
    if network is None:  # a compute API without a network service
        return None
    try:
        response = await network.get(path, params=params, headers={"X-Auth-Token": ctx.token})
    except Exception as exc:  # noqa: BLE001 - a network service that is down must not fail showing servers
        LOG.warning("the network service did not answer %s (%s): servers show their recorded security groups",
                    path, exc)
        return None
    if response.status_code != 200:
        LOG.warning("the network service answered %s to %s: servers show their recorded security groups",
                    response.status_code, path)
        return None
    return response.json()


async def names(svc, ctx: RequestContext, server_uuids: list[str]) -> dict[str, list[str]]:
    """{server: the names of the groups of its ports} for those of ``server_uuids`` that have ports."""
    groups_of: dict[str, list[str]] = {}
    for start in range(0, len(server_uuids), CHUNK):
        found = await _get(svc, ctx, "/v2.0/ports", {"device_id": server_uuids[start:start + CHUNK],
                                                     "fields": ["device_id", "security_groups"]})
        if found is None:
            return {}
        for port in found["ports"]:
            groups_of.setdefault(port["device_id"], []).extend(port.get("security_groups") or [])
    ids = list(dict.fromkeys(g for groups in groups_of.values() for g in groups))
    name_of: dict[str, str] = {}
    for start in range(0, len(ids), CHUNK):
        found = await _get(svc, ctx, "/v2.0/security-groups", {"id": ids[start:start + CHUNK],
                                                               "fields": ["id", "name"]})
        if found is None:
            return {}
        name_of.update({group["id"]: group["name"] or group["id"] for group in found["security_groups"]})
    return {server: list(dict.fromkeys(name_of[g] for g in groups if g in name_of))
            for server, groups in groups_of.items()}


def shown(server: dict[str, Any], live: dict[str, list[str]]) -> dict[str, Any]:
    """The server with its live group names, when it has ports."""
    return {**server, "security_groups": live[server["uuid"]]} if server["uuid"] in live else server
