"""Telling the compute service what happened to its servers' ports (Neutron's nova notifier).

A port of a server (device_owner ``compute:...``) that becomes ACTIVE -- here as soon as it is bound
to a host, there being no L2 agent to wait for -- gives ``network-vif-plugged``; one that goes DOWN
(unbound) ``network-vif-unplugged``; a deleted one ``network-vif-deleted``; new addresses or security
groups, or a floating IP associated with or taken off the port, ``network-changed``. Events are sent in the background
to ``POST /v2.1/os-server-external-events`` as the service user, batched while a send is under way, and
never hold up or fail the request that caused them: one the compute service cannot take is logged and dropped, as Neutron does.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

LOG = logging.getLogger(__name__)
MAX_BATCH = 200


def _server_of(port: dict[str, Any] | None) -> str | None:
    if not port or not str(port.get("device_owner") or "").startswith("compute:"):
        return None
    return port.get("device_id") or None


def _event(name: str, server: str, port_id: str, status: str = "completed") -> dict[str, str]:
    return {"name": name, "server_uuid": server, "tag": port_id, "status": status}


def events_for(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, str]]:
    """The events a port's change from ``before`` to ``after`` (None: created / deleted) gives."""
    if after is None:
        server = _server_of(before)
        return [_event("network-vif-deleted", server, before["id"])] if server else []
    was_active = before is not None and before.get("status") == "ACTIVE"
    if after.get("status") == "ACTIVE" and not was_active:
        server = _server_of(after)
        return [_event("network-vif-plugged", server, after["id"])] if server else []
    if was_active and after.get("status") != "ACTIVE":
        server = _server_of(before)
        return [_event("network-vif-unplugged", server, after["id"])] if server else []
    server = _server_of(after)
    if server and before is not None and (_addresses(before) != _addresses(after)
                                          or _groups(before) != _groups(after)):
        return [_event("network-changed", server, after["id"])]
    return []


def _groups(port: dict[str, Any]) -> list:
    return sorted(port.get("security_groups") or [])


def _addresses(port: dict[str, Any]) -> list:
    return sorted(ip.get("ip_address") or "" for ip in port.get("fixed_ips") or [])


class ComputeNotifier:
    def __init__(self, compute) -> None:
        self.compute = compute  # a ServiceClient on the compute API, or None: nothing is sent
        self._pending: list[dict[str, str]] = []
        self._sender: asyncio.Task | None = None

    def port_changed(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if self.compute is None:
            return
        self._queue(events_for(before, after))

    def floating_ips_changed(self, ports: list[dict[str, Any]]) -> None:
        """A floating IP was associated with, or left, these ports: ``network-changed`` for their servers
        (whose network information then shows it), as Neutron's notifier sends."""
        self.network_changed(ports)

    def network_changed(self, ports: list[dict[str, Any]]) -> None:
        """These ports' addresses changed without an update of the port (a floating IP, a SLAAC subnet made
        or deleted on their network): ``network-changed`` for their servers."""
        if self.compute is None:
            return
        self._queue([_event("network-changed", server, port["id"]) for port in ports
                     for server in [_server_of(port)] if server])

    def _queue(self, events: list[dict[str, str]]) -> None:
        if not events:
            return
        self._pending.extend(events)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="network-compute-notifier")

    async def _send(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                response = await self.compute.post("/v2.1/os-server-external-events", json={"events": batch})
                if response.status_code == 404:  # the servers are gone (a delete's ports): nothing to tell
                    LOG.debug("no server of events %s exists any more", batch)
                elif response.status_code not in (200, 207):
                    LOG.warning("the compute service refused events %s: %s %s", batch, response.status_code,
                                response.text[:200])
            except Exception as exc:  # noqa: BLE001 - a compute API that is down loses these events, as Neutron's
                LOG.warning("could not send %d event(s) to the compute service: %s", len(batch), exc)

    async def stop(self) -> None:
        await finish_sending(self._sender)


async def finish_sending(sender: asyncio.Task | None) -> None:
    """Give a notifier's background sender 5 s to finish at shut-down; what is left then is dropped."""
    if sender is not None and not sender.done():
        try:
            await asyncio.wait_for(asyncio.shield(sender), 5)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - shutting down: what is left is dropped
            sender.cancel()
