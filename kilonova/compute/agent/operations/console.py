"""Consoles of this host's guests: where the VNC server listens, the serial console's output."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager


@remote
async def get_vnc_console(agent: ComputeManager, instance: dict) -> dict:
    """{"host", "port"} of the guest's VNC server, for a console proxy to connect to."""
    return await agent.driver.get_vnc_console(instance)


@remote
async def get_console_output(agent: ComputeManager, instance: dict, length: int | None = None) -> str:
    output = await agent.driver.get_console_output(instance)
    if length is not None and length >= 0:
        lines = output.splitlines(keepends=True)
        output = "".join(lines[-length:]) if length else ""
    return output
