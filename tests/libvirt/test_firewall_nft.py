"""The firewall in the kernel (root, nft): two "guests" (network namespaces on veths, standing for taps) on a
bridge in a namespace of their own that stands for the host; their traffic, not the rule text, is checked."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from kilonova.compute.virt.libvirt import nft_rules
from kilonova.compute.virt.libvirt.firewall import Firewall
from kilonova.compute.virt.libvirt.nft_rules import PortFilter

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
                                reason="needs root, nft (Debian's nftables) and iproute2")
EGRESS = [{"direction": "egress", "ethertype": "IPv4"}]
ICMP_IN = {"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def host(host_packages):
    """Namespaces: the host (bridge br0, ports v1 v2) and guests a (10.9.0.1) and b (10.9.0.2)."""
    tag = uuid.uuid4().hex[:6]
    names = {"host": f"kfw-{tag}-h", "a": f"kfw-{tag}-a", "b": f"kfw-{tag}-b"}
    for name in names.values():
        _ip("netns", "add", name)
    try:
        h = names["host"]
        _ip("-n", h, "link", "add", "br0", "type", "bridge")
        _ip("-n", h, "link", "set", "br0", "up")
        for n, guest in ((1, "a"), (2, "b")):
            _ip("-n", h, "link", "add", f"v{n}", "type", "veth", "peer", "name", "eth0", "netns", names[guest])
            _ip("-n", h, "link", "set", f"v{n}", "master", "br0", "up")
            _ip("-n", names[guest], "link", "set", "eth0", "address", f"fa:16:3e:00:00:0{n}", "up")
            _ip("-n", names[guest], "addr", "add", f"10.9.0.{n}/24", "dev", "eth0")
        yield names
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ping(names, guest: str, address: str, source: str | None = None) -> bool:
    """One echo request answered within a second: for what the firewall must drop."""
    command = ["ip", "netns", "exec", names[guest], "ping", "-c1", "-W1", *(["-I", source] if source else []), address]
    return subprocess.run(command, capture_output=True).returncode == 0


def reaches(names, guest: str, address: str) -> bool:
    """An answer within 10 s (a request a second): for what the firewall must let through, however loaded the
    host is."""
    command = ["ip", "netns", "exec", names[guest], "ping", "-c1", "-w10", address]
    return subprocess.run(command, capture_output=True).returncode == 0


def apply(fw: Firewall, a_rules, b_rules, members=None, only_a=False) -> None:
    """a in group ga, b in group gb, with those rules."""
    ports = [PortFilter("pa", fw.number("pa"), "v1", "br0", "fa:16:3e:00:00:01", ["10.9.0.1"], groups=["ga"]),
             PortFilter("pb", fw.number("pb"), "v2", "br0", "fa:16:3e:00:00:02", ["10.9.0.2"], groups=["gb"])]
    fw.apply(ports[:1] if only_a else ports, {"ga": a_rules, "gb": b_rules}, members or {})


def test_ingress_is_denied_until_a_rule_allows_it_and_replies_pass_statefully(host):
    fw = Firewall("t001", netns=host["host"])
    apply(fw, EGRESS, EGRESS)
    assert not ping(host, "a", "10.9.0.2")
    apply(fw, EGRESS, EGRESS + [ICMP_IN])
    assert reaches(host, "a", "10.9.0.2")      # the reply goes back through a's default-deny ingress: established
    if shutil.which("conntrack"):  # tracked in the bridge's own zone
        tracked = subprocess.run(["ip", "netns", "exec", host["host"], "conntrack", "-L", "-p", "icmp"],
                                 capture_output=True, text=True).stdout
        assert f"zone={nft_rules.zone('br0')}" in tracked, tracked
    assert not ping(host, "b", "10.9.0.1")  # a has no ICMP rule
    apply(fw, EGRESS, EGRESS)
    assert not ping(host, "a", "10.9.0.2")


def test_a_remote_group_lets_its_members_in(host):
    fw = Firewall("t002", netns=host["host"])
    member = {"direction": "ingress", "ethertype": "IPv4", "remote_group_id": "g"}
    apply(fw, EGRESS, EGRESS + [member], {("g", 4): ["10.9.0.7"]})
    assert not ping(host, "a", "10.9.0.2")
    apply(fw, EGRESS, EGRESS + [member], {("g", 4): ["10.9.0.1", "10.9.0.7"]})
    assert reaches(host, "a", "10.9.0.2")


def test_a_spoofed_source_is_dropped_and_a_removed_port_is_unfiltered(host):
    fw = Firewall("t003", netns=host["host"])
    apply(fw, EGRESS, EGRESS + [ICMP_IN])
    _ip("-n", host["a"], "addr", "add", "10.9.0.9/24", "dev", "eth0")
    assert reaches(host, "a", "10.9.0.2") and not ping(host, "a", "10.9.0.2", source="10.9.0.9")
    fw.remove_port("pb")
    fw.remove_port("pa")
    listing = subprocess.run(["ip", "netns", "exec", host["host"], "nft", "list", "ruleset"], capture_output=True,
                             text=True).stdout
    assert "kilonova-t003" not in listing  # the last port took the tables (and their hooks) with it
    assert reaches(host, "b", "10.9.0.1")


def test_a_new_firewall_replaces_what_an_earlier_life_left(host):
    old = Firewall("t004", netns=host["host"])
    apply(old, EGRESS, EGRESS)
    assert not ping(host, "a", "10.9.0.2")
    restarted = Firewall("t004", netns=host["host"])
    apply(restarted, EGRESS, EGRESS, only_a=True)  # b's port went while it was down
    assert reaches(host, "a", "10.9.0.2")
    listing = subprocess.run(["ip", "netns", "exec", host["host"], "nft", "list", "table", "inet", "kilonova-t004"],
                             capture_output=True, text=True).stdout
    assert "ingress-pb" not in listing and "ingress-pa" in listing


def test_tables_flushed_by_hand_come_back_at_the_next_apply(host):
    fw = Firewall("t005", netns=host["host"])
    apply(fw, EGRESS, EGRESS)
    assert not ping(host, "a", "10.9.0.2")
    subprocess.run(["ip", "netns", "exec", host["host"], "nft", "flush", "ruleset"], check=True)
    assert reaches(host, "a", "10.9.0.2")
    apply(fw, EGRESS, EGRESS)  # nothing changed, as the agent's periodic resync finds it
    assert not ping(host, "a", "10.9.0.2")
