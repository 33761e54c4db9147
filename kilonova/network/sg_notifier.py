"""Telling compute hosts that their ports' security-group rules changed (Neutron's securitygroups_rpc).

A rule created or deleted or a group's ``stateful`` changed tells the hosts binding a port of the group; a
port whose groups, addresses, binding or port security changed tells its hosts (before and after) and those
binding a port of a group whose rules name one of its groups as ``remote_group_id`` (they hold the
members' addresses). The message, ``security_groups_changed(hosts, security_group_ids)``, is fanned out on
the ``security-groups`` target, which only compute agents that enforce security groups serve (the libvirt
driver's); each named host reads its ports' rules again through this API. Messages go in the background,
changes arriving together go as one, and none holds up or fails the request that caused it; a host that
misses one finds the change at its next periodic resync.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from kilonova.common.rpc import RPCClient
from kilonova.compute.versions import SECURITY_GROUPS
from kilonova.network.compute_notifier import finish_sending
from kilonova.network.db import security_groups as groups

LOG = logging.getLogger(__name__)
PORT_KEYS = ("security_groups", "binding_host_id", "port_security_enabled", "mac_address", "device_owner",
             "allowed_address_pairs")


def _addresses(port: dict[str, Any]) -> list[str]:
    return sorted(ip.get("ip_address") or "" for ip in port.get("fixed_ips") or [])


def port_matters(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    """Whether a port's change can change some host's rules."""
    if before is None or after is None:
        return True
    return any(before.get(k) != after.get(k) for k in PORT_KEYS) or _addresses(before) != _addresses(after)


class SecurityGroupNotifier:
    def __init__(self, db, transport) -> None:
        self.db = db
        self.transport = transport  # None: nothing is sent
        self._rules_of: set[str] = set()    # groups whose rules changed
        self._members_of: set[str] = set()  # groups whose members changed
        self._hosts: set[str] = set()
        self._sender: asyncio.Task | None = None

    def port_changed(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if not port_matters(before, after):
            return
        ports = [p for p in (before, after) if p]
        self._queue(set(), {g for p in ports for g in p.get("security_groups") or []},
                    {p["binding_host_id"] for p in ports if p.get("binding_host_id")})

    def groups_changed(self, group_ids) -> None:
        """The rules (or ``stateful``) of these groups changed."""
        self._queue(set(group_ids), set(), set())

    def _queue(self, rules_of: set[str], members_of: set[str], hosts: set[str]) -> None:
        if self.transport is None or not (rules_of or members_of or hosts):
            return
        self._rules_of |= rules_of
        self._members_of |= members_of
        self._hosts |= hosts
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="network-sg-notifier")

    async def _send(self) -> None:
        while self._rules_of or self._members_of or self._hosts:
            rules_of, members_of, hosts = sorted(self._rules_of), sorted(self._members_of), set(self._hosts)
            self._rules_of, self._members_of, self._hosts = set(), set(), set()
            group_ids = sorted({*rules_of, *members_of})
            try:
                hosts |= await self.db.read(groups.hosts_of_groups, rules_of, members_of)
            except Exception as exc:  # noqa: BLE001 - the hosts' periodic resync catches up
                LOG.warning("the hosts of security groups %s could not be read: %s", group_ids, exc)
            if not hosts:
                continue
            try:
                await RPCClient(self.transport, "security-groups", interface=SECURITY_GROUPS).fanout_cast(
                    "security_groups_changed", hosts=sorted(hosts), security_group_ids=group_ids)
            except Exception as exc:  # noqa: BLE001 - a host that missed it re-reads at its next resync
                LOG.info("compute hosts %s were not told of security group changes: %s", sorted(hosts), exc)

    async def stop(self) -> None:
        await finish_sending(self._sender)
