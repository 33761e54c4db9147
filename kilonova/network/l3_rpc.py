"""The network service's word to the L3 agents: "these routers changed" (Neutron's L3 agent notify API).

A router's gateway, interfaces, routes or floating IPs changed (or it was deleted): the service fans
``routers_updated`` out to every L3 agent (target ``l3_agent``) once the change is committed, and each agent
reads those routers back through the network API and converges its namespaces
(``kilonova/compute/virt/libvirt/l3_agent.py``). The message carries ids only: the API is the one source of
what a router is. A lost message costs at most the agents' periodic full resync; none listening is no error.
"""
from __future__ import annotations

import asyncio
import logging

from kilonova.common.rpc import RPCClient
from kilonova.common.rpc_versions import Change, Interface

LOG = logging.getLogger(__name__)
TARGET = "l3_agent"

L3_AGENT = Interface(TARGET, [
    Change("1.0", "routers_updated(router_ids): read these routers again and converge."),
])


class L3Notifier:
    def __init__(self, transport) -> None:
        self.client = RPCClient(transport, TARGET, interface=L3_AGENT) if transport is not None else None
        self._sending: set[asyncio.Task] = set()

    def routers_updated(self, router_ids) -> None:
        ids = sorted({router_id for router_id in router_ids if router_id})
        if not ids or self.client is None:
            return
        task = asyncio.get_running_loop().create_task(self._send(ids), name="network-l3-notifier")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, ids: list[str]) -> None:
        try:
            await self.client.fanout_cast("routers_updated", router_ids=ids)
        except Exception as exc:  # noqa: BLE001 - the agents' periodic resync catches up
            LOG.warning("could not tell the L3 agents that routers %s changed: %s", ids, exc)

    async def stop(self) -> None:
        if self._sending:
            await asyncio.wait(list(self._sending), timeout=5)
