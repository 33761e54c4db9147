"""This host's security-group rules in the kernel: ``nft_rules`` rendered, applied with ``nft -f``.

Each change is one batch on ``nft``'s standard input, which the kernel applies atomically (all of it
or none): the first apply of a life, any apply after a failed one, and one that finds nothing changed
but the tables gone (flushed by hand) replace both tables whole (so a restarted agent owns exactly
what it renders, and a port gone while it was down leaves no chain); the others rewrite only the
group and port chains and remote-group sets whose text changed. A host with no filtered port holds
no tables.

The ``nft`` command rather than the Python bindings (``python3-nftables``): the bindings are
packaged for Debian's own interpreter, not a virtualenv's, and a batch is text either way; one
short-lived process per change keeps libnftables' cache out of this long-running service, and its
error message is what an operator would get typing the batch in by hand.
"""
from __future__ import annotations

import logging
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kilonova.compute.virt.libvirt import nft_rules
from kilonova.compute.virt.libvirt.dataplane import tap_name
from kilonova.compute.virt.libvirt.nft_rules import PortFilter

LOG = logging.getLogger(__name__)
BRIDGE_SYSCTLS = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables")


class FirewallError(RuntimeError):
    pass


@dataclass
class _Applied:
    ports: dict[str, PortFilter] = field(default_factory=dict)
    groups: dict[str, list[dict]] = field(default_factory=dict)           # group id -> its rules
    sets: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (remote group, version) -> addresses
    bridges: set[str] = field(default_factory=set)                        # each with its conntrack zone


def enable_bridge_netfilter() -> None:
    """Bridged IP must reach nftables' inet hooks (br_netfilter), where connection tracking is."""
    for name in BRIDGE_SYSCTLS:
        path = Path("/proc/sys/net/bridge", name)
        try:
            if path.read_text().strip() != "1":
                LOG.warning("setting net.bridge.%s = 1: security groups filter bridged traffic", name)
                path.write_text("1")
        except OSError as exc:
            raise FirewallError(f"net.bridge.{name} cannot be read or set ({exc}): security groups cannot be "
                                "enforced without br_netfilter") from exc


class Firewall:
    def __init__(self, scope: str, nft: str = "nft", netns: str | None = None):
        self.scope = scope
        self.command = (["ip", "netns", "exec", netns] if netns else []) + [nft, "-f", "-"]
        self._applied: _Applied | None = None  # None: the kernel's tables are not known to be ours
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what the rules are made of

    def number(self, port_id: str) -> int:
        """The port's mark on this host (stable while this object lives)."""
        if port_id not in self._numbers:
            used = set(self._numbers.values())
            self._numbers[port_id] = next(n for n in range(1, nft_rules.IN_MASK + 1) if n not in used)
        return self._numbers[port_id]

    def filters(self, ports: list[dict], groups: dict[str, dict], bridge_of: Callable[[str], str]) -> list[PortFilter]:
        """The network service's ports (with port security) as this host filters them."""
        found = []
        for port in sorted(ports, key=lambda p: p["id"]):
            if not port.get("port_security_enabled", True):
                continue
            own = [groups[g] for g in port.get("security_groups") or [] if g in groups]
            found.append(PortFilter(
                port_id=port["id"], number=self.number(port["id"]), tap=tap_name(port["id"]),
                bridge=bridge_of(port["network_id"]), mac=port["mac_address"],
                addresses=[ip["ip_address"] for ip in port.get("fixed_ips") or []],
                pairs=list(port.get("allowed_address_pairs") or []),
                # Neutron's rule: a port is stateful unless its groups are all stateless.
                stateful=not own or any(group.get("stateful", True) for group in own),
                groups=[g for g in port.get("security_groups") or [] if g in groups]))
        return found

    def apply_ports(self, ports: list[dict], groups: dict[str, dict], members: dict[str, list[str]],
                    bridge_of: Callable[[str], str]) -> int:
        """``apply`` for the network service's view: ports, groups by id, remote group id -> addresses."""
        filters = self.filters(ports, groups, bridge_of)
        rules = {group_id: list(group.get("security_group_rules") or []) for group_id, group in groups.items()}
        sets = {(group_id, version): addresses for group_id, addresses in members.items() for version in (4, 6)}
        return self.apply(filters, rules, sets)

    # ------------------------------------------------------------------ applying

    def apply(self, ports: list[PortFilter], rules: dict[str, list[dict]],
              members: dict[tuple[str, int], list[str]]) -> int:
        """Make the kernel hold exactly ``ports``' chains, their groups' chains (``rules``: group id -> its
        rules) and the remote-group sets those use; returns how many commands went to nft (0: no change)."""
        with self._lock:
            groups = {g: list(rules.get(g, [])) for port in ports for g in port.groups}
            wanted = _Applied({port.port_id: port for port in ports}, groups,
                              {key: sorted(members.get(key, [])) for group_rules in groups.values()
                               for key in nft_rules.remote_groups(group_rules)},
                              {port.bridge for port in ports})
            for port_id in list(self._numbers):
                if port_id not in wanted.ports:
                    del self._numbers[port_id]
            if not wanted.ports:  # nothing to filter: no tables (and no hooks every packet would pass)
                commands = nft_rules.drop_tables(self.scope) if self._applied != _Applied() else []
                if commands:
                    self._run(commands)
                self._applied = _Applied()
                return len(commands)
            commands = [] if self._applied is None or not self._applied.ports else self._changes(self._applied, wanted)
            if not commands and (self._applied is None or not self._applied.ports or not self._tables_present()):
                commands = self._replace_all(wanted)  # first of a life, or the tables went (a flush by hand)
            if commands:
                try:
                    self._run(commands)
                except FirewallError:
                    if self._applied is None:
                        raise
                    LOG.warning("an incremental nftables change failed; replacing the tables whole")
                    self._applied = None
                    commands = self._replace_all(wanted)
                    self._run(commands)
            self._applied = wanted
            return len(commands)

    def remove_port(self, port_id: str) -> None:
        """Take one port's chains away now (its guest is gone); the next apply agrees."""
        with self._lock:
            if self._applied is None or port_id not in self._applied.ports:
                return
            current = _Applied(dict(self._applied.ports), dict(self._applied.groups), dict(self._applied.sets),
                               set(self._applied.bridges))
            current.ports.pop(port_id)
            if not current.ports:
                current = _Applied()
                commands = nft_rules.drop_tables(self.scope)
            else:
                commands = self._changes(self._applied, current)
            try:
                self._run(commands)
            except FirewallError as exc:
                LOG.warning("the rules of port %s stay until the next apply: %s", port_id, exc)
                self._applied = None  # the next apply replaces everything
                return
            self._applied = current
            self._numbers.pop(port_id, None)

    def clear(self) -> None:
        """Remove both tables (the host's last port went, or the service is uninstalled)."""
        with self._lock:
            self._run(nft_rules.drop_tables(self.scope))
            self._applied = _Applied()

    def _replace_all(self, wanted: _Applied) -> list[str]:
        commands = [*nft_rules.drop_tables(self.scope), nft_rules.base_tables(self.scope)]
        for bridge in sorted(wanted.bridges):
            commands += nft_rules.add_zone(self.scope, bridge)
        for (group_id, version), members in sorted(wanted.sets.items()):
            commands += nft_rules.add_set(self.scope, group_id, version, members)
        for group_id, rules in sorted(wanted.groups.items()):
            commands += nft_rules.add_group(self.scope, group_id, rules)
        for port in wanted.ports.values():
            commands += nft_rules.add_port(self.scope, port)
        return commands

    def _changes(self, applied: _Applied, wanted: _Applied) -> list[str]:
        """Sets and groups first (what ports jump to and rules look up), removals last."""
        commands: list[str] = []
        for bridge in sorted(wanted.bridges - applied.bridges):
            commands += nft_rules.add_zone(self.scope, bridge)
        for key, members in sorted(wanted.sets.items()):
            if applied.sets.get(key) != members:
                commands += nft_rules.add_set(self.scope, *key, members)
        for group_id, rules in sorted(wanted.groups.items()):
            if applied.groups.get(group_id) != rules:
                commands += nft_rules.add_group(self.scope, group_id, rules)
        for port_id, port in wanted.ports.items():
            old = applied.ports.get(port_id)
            if old == port:
                continue
            if old is not None and (old.number, old.tap, old.stateful) == (port.number, port.tap, port.stateful):
                commands += nft_rules.change_port(self.scope, old, port)  # only the chains that differ
                continue
            if old is not None:
                commands += nft_rules.delete_port(self.scope, old)
            commands += nft_rules.add_port(self.scope, port)
        for port_id, port in applied.ports.items():
            if port_id not in wanted.ports:
                commands += nft_rules.delete_port(self.scope, port)
        for group_id in sorted(applied.groups.keys() - wanted.groups.keys()):
            commands += nft_rules.delete_group(self.scope, group_id)
        for key in sorted(applied.sets.keys() - wanted.sets.keys()):
            commands += nft_rules.delete_set(self.scope, *key)
        for bridge in sorted(applied.bridges - wanted.bridges):
            commands += nft_rules.delete_zone(self.scope, bridge)
        return commands

    def _tables_present(self) -> bool:
        """Whether the kernel still holds our tables (a base chain listed: cheap, whatever the port count)."""
        table = nft_rules.table_name(self.scope)
        listing = [*self.command[:-2], "list", "chain", "inet", table, "ingress"]
        bridge = [*self.command[:-2], "list", "chain", "bridge", table, "prerouting"]
        try:
            return all(subprocess.run(command, capture_output=True, timeout=30).returncode == 0
                       for command in (listing, bridge))
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _run(self, commands: list[str]) -> None:
        batch = "\n".join(commands) + "\n"
        try:
            result = subprocess.run(self.command, input=batch, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"nft could not be run: {exc}") from exc
        if result.returncode != 0:
            raise FirewallError(f"nft refused the security group rules: {result.stderr.strip()[:2000]}")
