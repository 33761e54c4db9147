"""The dataplane half of benchmarks/network.py: how long the libvirt host's firewall takes to apply one port
change when it already holds N guest ports (issue 13: 200, target under 50 ms).

No guests are needed: a network namespace stands for the host, with a bridge and N real tap devices on it
(``ip tuntap``), and the driver's own ``Firewall`` (real ``nft``, real tables) applies the ports of G groups of
R rules (each port in 3 groups; each group's last rule lets its own members in, through a remote-group set).
Timed, each from the driver's call to nft's return: the first apply of all ports; one port moved to other
groups (its chains and the remote-group sets it leaves and joins); one rule added to a group (its ~N*3/G ports);
and a re-apply with nothing changed.
"""
from __future__ import annotations

import resource
import statistics
import subprocess
import time
import uuid

from kilonova.compute.virt.libvirt.firewall import Firewall


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _groups(count: int, rules: int) -> dict[str, dict]:
    groups = {}
    for g in range(count):
        group_id = f"{uuid.UUID(int=g + 1)}"
        listed = [{"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 1000 + r,
                   "port_range_max": 1000 + r, "remote_ip_prefix": "10.0.0.0/8"} for r in range(rules - 1)]
        listed.append({"direction": "ingress", "ethertype": "IPv4", "remote_group_id": group_id})
        groups[group_id] = {"id": group_id, "stateful": True, "security_group_rules": listed}
    return groups


def _members(ports: list[dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for port in ports:
        for group_id in port["security_groups"]:
            found.setdefault(group_id, []).append(port["fixed_ips"][0]["ip_address"])
    return found


CPU: list[float] = []  # CPU ms (this process and nft) of each timed apply


def _cpu() -> float:
    return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime")) * 1000


def _timed(firewall: Firewall, ports, groups) -> tuple[float, int]:
    started, cpu = time.perf_counter(), _cpu()
    commands = firewall.apply_ports(ports, groups, _members(ports), lambda network_id: "br0")
    CPU.append(_cpu() - cpu)
    return (time.perf_counter() - started) * 1000, commands


def run(ports: int = 200, groups: int = 50, rules: int = 20, rounds: int = 20) -> dict:
    namespace = f"kbench-fw-{uuid.uuid4().hex[:6]}"
    _run("ip", "netns", "add", namespace)
    try:
        _run("ip", "-n", namespace, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", namespace, "link", "set", "br0", "up")
        group_table = _groups(groups, rules)
        group_ids = list(group_table)
        port_list = []
        for p in range(ports):
            port_id = f"{p:08x}-0000-4000-8000-{uuid.uuid4().hex[:12]}"
            tap = f"tap{port_id[:11]}"
            _run("ip", "-n", namespace, "tuntap", "add", tap, "mode", "tap")
            _run("ip", "-n", namespace, "link", "set", tap, "master", "br0", "up")
            mac = f"fa:16:3e:00:{p >> 8:02x}:{p & 255:02x}"
            port_list.append({"id": port_id, "network_id": "n", "mac_address": mac,
                              "fixed_ips": [{"ip_address": f"10.{(p >> 8) + 1}.{p & 255}.10"}],
                              "security_groups": [group_ids[(p + k) % groups] for k in range(3)],
                              "port_security_enabled": True})
        firewall = Firewall(f"b{uuid.uuid4().hex[:3]}", netns=namespace)
        first, first_commands = _timed(firewall, port_list, group_table)
        CPU.clear()
        moves, move_commands = [], []
        for r in range(rounds):
            port = port_list[r % ports]
            port["security_groups"] = [group_ids[(r * 7 + k) % groups] for k in range(3)]
            elapsed, commands = _timed(firewall, port_list, group_table)
            moves.append(elapsed)
            move_commands.append(commands)
        move_cpu = list(CPU)
        rule_adds = []
        for r in range(rounds):
            group = group_table[group_ids[r % groups]]
            group["security_group_rules"].append({"direction": "ingress", "ethertype": "IPv4", "protocol": "udp",
                                                  "port_range_min": 5000 + r, "port_range_max": 5000 + r})
            rule_adds.append(_timed(firewall, port_list, group_table)[0])
        unchanged = [_timed(firewall, port_list, group_table)[0] for _ in range(5)]
        listing = subprocess.run(["ip", "netns", "exec", namespace, "nft", "list", "ruleset"], capture_output=True,
                                 text=True, check=True).stdout
        return {"ports": ports, "groups": groups, "rules": rules, "first_ms": first, "first_commands": first_commands,
                "move_ms": moves, "move_commands": statistics.median(move_commands), "move_cpu_ms": move_cpu,
                "rule_ms": rule_adds,
                "unchanged_ms": unchanged, "ruleset_lines": listing.count("\n")}
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def report(figures: dict) -> None:
    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print(f"kilonova dataplane firewall: {figures['ports']} guest ports (taps on one bridge), "
          f"{figures['groups']} groups "
          f"of {figures['rules']} rules, 3 groups a port ({figures['ruleset_lines']} lines of ruleset)")
    print(f"  first apply of every port:        {figures['first_ms']:.0f} ms ({figures['first_commands']} commands)")
    print(f"  one port's groups changed p50/p95: {statistics.median(figures['move_ms']):.1f} / "
          f"{p(figures['move_ms'], 0.95):.1f} ms ({figures['move_commands']:.0f} commands; CPU "
          f"{statistics.median(figures['move_cpu_ms']):.1f} ms, nft's and the driver's)")
    print(f"  one rule added to a group p50/p95: {statistics.median(figures['rule_ms']):.1f} / "
          f"{p(figures['rule_ms'], 0.95):.1f} ms")
    print(f"  nothing changed p50:               {statistics.median(figures['unchanged_ms']):.1f} ms")
