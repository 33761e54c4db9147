"""The security groups of this host's ports, read from the network service and handed to the driver.

The driver is told the whole desired state each time -- every port bound to this host with its groups'
rules, and the addresses of the groups those rules name as ``remote_group_id`` -- and converges to it (a
reconcile loop: events only say "look again"). It looks again when the network service casts
``security_groups_changed`` (a rule, a port's groups or addresses, or a remote group's members
changed), before a server's guest starts here, once at start-up (so a restarted agent re-applies every
port, and a port deleted meanwhile loses its rules), and every ``RESYNC_INTERVAL`` seconds in case a
cast was lost. Three requests a round, whatever the number of ports: this host's ports, their groups,
the remote groups' members. Only drivers that enforce security groups (libvirt) take part.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from kilonova.common.rpc import RPCError
from kilonova.compute.versions import SECURITY_GROUPS

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)
RESYNC_INTERVAL = 30.0
TARGET = "security-groups"
PORT_FIELDS = ("id", "network_id", "mac_address", "fixed_ips", "allowed_address_pairs", "security_groups",
               "port_security_enabled", "device_owner", "binding:host_id", "binding:profile")


class NetworkUnavailable(RuntimeError):
    pass


def _addresses(port: dict[str, Any]) -> list[str]:
    return [ip["ip_address"] for ip in port.get("fixed_ips") or []] + \
        [pair["ip_address"] for pair in port.get("allowed_address_pairs") or [] if pair.get("ip_address")]


class SecurityGroupSync:
    def __init__(self, agent: ComputeManager):
        self.agent = agent
        self._wanted = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._serving = False
        self._incoming: set[str] = set()  # ports of guests live-migrating here (migrating_to this host)

    @property
    def enabled(self) -> bool:
        return bool(getattr(self.agent.driver, "enforces_security_groups", False))

    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        transport = self.agent._transport
        if transport is not None:  # listening first: a change during the first read is heard
            try:
                await transport.serve(TARGET, _Endpoint(self), concurrency=1, version=SECURITY_GROUPS.latest)
                self._serving = True
            except RPCError as exc:  # another enforcing host of this process listens: the resync catches up
                LOG.warning("%s does not hear of security group changes at once: %s", self.agent.host, exc)
        try:
            await self.refresh()  # start-up: every port re-applied before any guest is started again
        except Exception as exc:  # noqa: BLE001 - the loop tries again
            LOG.warning("security groups of %s's ports not applied at start-up: %s", self.agent.host, exc)
            self._wanted.set()
        self._task = asyncio.create_task(self._loop(), name=f"compute-{self.agent.host}-security-groups")

    async def stop(self) -> None:
        if self._serving:
            await self.agent._transport.stop_serving(TARGET)
            self._serving = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def expect(self, port_ids: list[str]) -> None:
        """Ports of a guest about to live-migrate here: filtered before it runs here, not once they are bound."""
        if not self.enabled:
            return
        self._incoming |= set(port_ids)
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - the loop tries again; the migration goes on
            LOG.warning("security groups of ports %s coming to %s not applied yet: %s", port_ids, self.agent.host,
                        exc)
            self._wanted.set()

    def changed(self) -> None:
        """Something of this host's ports changed: look again soon (changes coming together are one round)."""
        self._wanted.set()

    async def _loop(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), RESYNC_INTERVAL)
            self._wanted.clear()
            try:
                await self.refresh()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - tried again soon, backing off to the resync interval
                failures += 1
                LOG.warning("security groups of %s's ports not applied (attempt %d): %s", self.agent.host,
                            failures, exc)
                await asyncio.sleep(min(RESYNC_INTERVAL, 0.5 * 2 ** failures))
                self._wanted.set()

    async def refresh(self) -> None:
        """Read the desired state and have the driver apply it (now; rounds do not overlap)."""
        if not self.enabled:
            return
        async with self._lock:
            ports, groups, members = await self.read()
            await self.agent.driver.update_port_filters(ports, groups, members)

    async def _get(self, path: str, params: list[tuple[str, str]]) -> Any:
        response = await self.agent.ports.network.get(path, params=params)
        if response.status_code != 200:
            raise NetworkUnavailable(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def read(self) -> tuple[list[dict], dict[str, dict], dict[str, list[str]]]:
        """(this host's compute ports, their groups by id with rules, remote group id -> member addresses)."""
        fields = [("fields", name) for name in PORT_FIELDS]
        ports = [port for port in (await self._get("/v2.0/ports", [("binding:host_id", self.agent.host),
                                                                   *fields]))["ports"]
                 if str(port.get("device_owner") or "").startswith("compute:")
                 and port.get("binding:host_id") == self.agent.host]
        ports += await self._incoming_ports({port["id"] for port in ports})
        group_ids = sorted({g for port in ports if port.get("port_security_enabled", True)
                            for g in port.get("security_groups") or []})
        groups: dict[str, dict] = {}
        if group_ids:
            found = await self._get("/v2.0/security-groups", [("id", g) for g in group_ids])
            groups = {group["id"]: group for group in found["security_groups"]}
        remote_ids = sorted({rule["remote_group_id"] for group in groups.values()
                             for rule in group.get("security_group_rules") or [] if rule.get("remote_group_id")})
        members: dict[str, list[str]] = {g: [] for g in remote_ids}
        if remote_ids:
            found = await self._get("/v2.0/ports", [*(("security_groups", g) for g in remote_ids),
                                                    ("fields", "security_groups"), ("fields", "fixed_ips"),
                                                    ("fields", "allowed_address_pairs")])
            for port in found["ports"]:
                for group_id in port.get("security_groups") or []:
                    if group_id in members:
                        members[group_id] += _addresses(port)
        return ports, groups, members

    async def _incoming_ports(self, bound_here: set[str]) -> list[dict]:
        """The ports still on their way here (a live migration's ``migrating_to``); the others are forgotten."""
        waiting = sorted(self._incoming - bound_here)
        if not waiting:
            self._incoming.clear()
            return []
        found = (await self._get("/v2.0/ports", [*(("id", p) for p in waiting),
                                                 *(("fields", name) for name in PORT_FIELDS)]))["ports"]
        coming = [port for port in found if (port.get("binding:profile") or {}).get("migrating_to") == self.agent.host]
        self._incoming = {port["id"] for port in coming}
        return coming


class _Endpoint:
    """What the ``security-groups`` target serves: the network service's word that some hosts must look again."""

    def __init__(self, sync: SecurityGroupSync):
        self._sync = sync

    async def security_groups_changed(self, hosts: list[str], security_group_ids: list[str] | None = None) -> None:
        if self._sync.agent.host in hosts:
            self._sync.changed()


def security_groups(agent: ComputeManager) -> SecurityGroupSync:
    """This host's sync (kept on the agent, made on first use)."""
    return vars(agent).setdefault("_security_groups", SecurityGroupSync(agent))
