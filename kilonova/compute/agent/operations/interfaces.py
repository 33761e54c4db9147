"""Port interfaces on this host's servers (``os-interface``): hot-plug a port in, or out.

The compute API has found or created the port (with the caller's token, so a port or network the
caller may not use is refused there); here the port is bound to the server and this host (the
network service then sends ``network-vif-plugged``, as for a boot), the driver plugs it into the
guest and the server's network information gains it. A detach unplugs it, then deletes a port made
for the attach and only unbinds one the user brought (upstream's ``preserve_on_delete``).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote
from kilonova.compute.agent.security_groups import security_groups
from kilonova.compute.virt.driver import InterfaceAttachNotSupported

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)
UNBOUND = {"device_id": "", "device_owner": "", "binding:host_id": ""}


class InterfaceAttachFailed(Exception):
    """Upstream's InterfaceAttachFailed: the port could not be bound or plugged."""


class PortNotAttached(Exception):
    """The port is not one of the server's interfaces (upstream's PortNotFound from detach_interface)."""


async def _unbind(agent: ComputeManager, port_id: str) -> None:
    reply = await agent.ports.network.put(f"/v2.0/ports/{port_id}", json={"port": UNBOUND})
    if reply.status_code not in (200, 404):
        LOG.error("could not unbind port %s: %s %s", port_id, reply.status_code, reply.text[:200])


async def _with_groups(agent: ComputeManager, uuid: str, values: dict) -> dict:
    """``values`` and the names of the groups the server's ports are in now (what the server shows, as the
    network-changed refresh keeps them), when the network service can say."""
    response = await agent.ports.network.get("/v2.0/ports", params={"device_id": uuid})
    if response.status_code == 200:
        names = await agent.ports.security_group_names(response.json()["ports"])
        if names is not None:
            return {**values, "security_groups": names}
    return values


@remote
async def attach_interface(agent: ComputeManager, instance: dict, port_id: str, preexisting: bool,
                           tag: str | None = None, request_id: str | None = None) -> dict:
    """Bind and plug port ``port_id``; returns its network_info entry. ``preexisting``: the user's own port."""
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_attach_interface",
                                               finishes="attach_interface"):
        if not agent.driver.supports_attach_interface:
            raise InterfaceAttachNotSupported(f"Attaching interfaces is not supported for instance {uuid}.")
        current = await agent._current(uuid) or instance
        response = await agent.ports.network.put(f"/v2.0/ports/{port_id}",
                                                 json={"port": agent.ports._binding(current)})
        if response.status_code != 200:
            raise InterfaceAttachFailed(f"Failed to attach network adapter device to {uuid}: port {port_id} could "
                                        f"not be bound ({response.status_code})")
        vif = await agent.ports._vif(response.json()["port"], preexisting, floating=preexisting)
        vif["tag"] = tag
        try:
            await security_groups(agent).refresh()  # the port's rules before the guest sees it
            await agent.driver.attach_interface(current, vif)
        except Exception:
            await _unbind(agent, port_id)
            raise
        network_info = [v for v in current.get("network_info") or [] if v.get("port_id") != port_id] + [vif]
        await agent._update(uuid, await _with_groups(agent, uuid, {"network_info": network_info}))
        LOG.info("port %s attached to %s on %s", port_id, uuid, agent.host)
        return vif


@remote
async def detach_interface(agent: ComputeManager, instance: dict, port_id: str,
                           request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_detach_interface",
                                               finishes="detach_interface"):
        if not agent.driver.supports_attach_interface:
            raise InterfaceAttachNotSupported(f"Detaching interfaces is not supported for instance {uuid}.")
        current = await agent._current(uuid) or instance
        network_info = current.get("network_info") or []
        vif = next((v for v in network_info if v.get("port_id") == port_id), None)
        if vif is None:
            raise PortNotAttached(f"Port {port_id} is not attached")
        await agent.driver.detach_interface(current, vif)
        if vif.get("preexisting"):
            await _unbind(agent, port_id)
        else:
            reply = await agent.ports.network.delete(f"/v2.0/ports/{port_id}")
            if reply.status_code not in (204, 404):
                LOG.error("could not delete port %s of %s: %s", port_id, uuid, reply.text[:200])
        kept = [v for v in network_info if v.get("port_id") != port_id]
        await agent._update(uuid, await _with_groups(agent, uuid, {"network_info": kept}))
        LOG.info("port %s detached from %s on %s", port_id, uuid, agent.host)
