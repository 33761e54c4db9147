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
    return await agent.driver.set_host_enabled(bool(enabled))


@remote
async def host_maintenance_mode(agent: ComputeManager, mode: bool) -> str:
    return await agent.driver.host_maintenance_mode(agent.host, bool(mode))


@remote
async def host_power_action(agent: ComputeManager, action: str) -> str:
    return await agent.driver.host_power_action(action)
