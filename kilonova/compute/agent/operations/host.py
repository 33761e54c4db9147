"""What is asked of the host itself rather than of a guest (os-hosts, os-hypervisors uptime): calls the
driver answers or refuses with NotImplementedError, which reaches the API as the remote error's type (a 501)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager


@remote
async def get_host_uptime(agent: ComputeManager) -> str:
    return await agent.driver.get_host_uptime()


@remote
async def set_host_enabled(agent: ComputeManager, enabled: bool) -> str:
    """os-services and os-hosts tell the host at once, as upstream's API does: its provider's
    COMPUTE_STATUS_DISABLED follows now (Placement stops offering it) rather than at the next heartbeat; then the
    driver answers (libvirt's NotImplementedError is os-hosts' 501, the trait changed all the same)."""
    if agent.node_uuid is not None:
        await agent._sync_status_trait(not enabled)
    return await agent.driver.set_host_enabled(bool(enabled))


@remote
async def host_maintenance_mode(agent: ComputeManager, mode: bool) -> str:
    return await agent.driver.host_maintenance_mode(agent.host, bool(mode))


@remote
async def host_power_action(agent: ComputeManager, action: str) -> str:
    return await agent.driver.host_power_action(action)
