"""The routers' dataplane on the real host (root), without guests: network namespaces stand for two guests on
two tenant networks and for the outside world on the external network, and real traffic goes through a
router's namespace (routing, SNAT, floating IP DNAT, extra routes), as the L3 agent builds it."""
from __future__ import annotations

import json
import os
import time
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kilonova.compute.virt.libvirt.dataplane import ensure_bridge, release_bridge
from kilonova.compute.virt.libvirt.routers import RouterDataplane

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
                                reason="needs root, iproute2 and nftables (namespaces, bridges, NAT)")

# Accepts one TCP connection and prints the peer's address.
ACCEPT_ONE = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(1); s.settimeout(10); c, a = s.accept(); "
              "print(a[0], flush=True)")
# Echoes what it receives, forever (one connection).
ECHO = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(1); c, a = s.accept()\n"
        "while True:\n d = c.recv(100)\n if not d: break\n c.sendall(d)")
# Connects, and for each line on stdin sends it and prints the echo (or "no-echo" after 2 s).
TALK = ("import socket,sys; c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); "
        "c.settimeout(2); print('connected', flush=True)\n"
        "for line in sys.stdin:\n c.sendall(line.encode())\n"
        " try: print(c.recv(100).decode().strip() or 'closed', flush=True)\n"
        " except OSError: print('no-echo', flush=True)")
CONNECT = ("import socket,sys; c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); "
           "print('connected')")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=check)


class Stand:
    """A namespace with one veth onto a bridge: a guest, or the outside world."""

    def __init__(self, name: str, bridge: str, address: str, gateway: str | None):
        self.name = name
        self.host_end = host_end = f"kt{uuid.uuid4().hex[:10]}"
        _run("ip", "netns", "add", name)
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
        _run("ip", "link", "set", host_end, "master", bridge, "up")
        _run("ip", "-n", name, "addr", "add", address, "dev", "eth0")
        _run("ip", "-n", name, "link", "set", "eth0", "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        if gateway:
            _run("ip", "-n", name, "route", "add", "default", "via", gateway)

    def ping(self, address: str) -> bool:
        """One echo request answered within a second: for what must stay unreachable."""
        return _run("ip", "netns", "exec", self.name, "ping", "-c", "1", "-W", "1", address,
                    check=False).returncode == 0

    def reaches(self, address: str) -> bool:
        """An answer within 10 s (a request a second): for what must be reachable, however loaded the host."""
        return _run("ip", "netns", "exec", self.name, "ping", "-c", "1", "-w", "10", address,
                    check=False).returncode == 0

    def neighbour(self, address: str) -> str:
        """The MAC this stand's ARP cache holds for ``address`` ("" if none)."""
        entries = json.loads(_run("ip", "-n", self.name, "-j", "neigh", "show", address).stdout or "[]")
        return next((entry.get("lladdr", "") for entry in entries), "")

    def peer_seen_by(self, listener: "Stand", address: str, port: int) -> str:
        """Connect from here to ``address``:``port`` while ``listener`` accepts; the source it saw."""
        server = subprocess.Popen(["ip", "netns", "exec", listener.name, sys.executable, "-c", ACCEPT_ONE,
                                   str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(50):
                if _run("ip", "netns", "exec", self.name, sys.executable, "-c", CONNECT, address, str(port),
                        check=False).returncode == 0:
                    break
            out, err = server.communicate(timeout=15)
            return out.strip() or err.strip()
        finally:
            server.kill()

    def remove(self) -> None:
        _run("ip", "link", "del", self.host_end, check=False)  # at once (a namespace's devices go later)
        _run("ip", "netns", "del", self.name, check=False)


@pytest.fixture
def lab(tmp_path, host_packages):
    state = tmp_path / "_networks"
    dataplane = RouterDataplane(state)
    private, second, public = (str(uuid.uuid4()) for _ in range(3))
    for network in (private, second, public):
        ensure_bridge(state, dataplane.bridge(network))
    tag = uuid.uuid4().hex[:6]
    stands = {
        "guest": Stand(f"kt-guest-{tag}", dataplane.bridge(private), "10.71.0.5/24", "10.71.0.1"),
        "other": Stand(f"kt-other-{tag}", dataplane.bridge(second), "10.72.0.7/24", "10.72.0.1"),
        "outside": Stand(f"kt-outside-{tag}", dataplane.bridge(public), "172.31.71.1/24", None),
    }
    router_id = str(uuid.uuid4())
    router = {
        "id": router_id, "enable_snat": True, "routes": [], "floating_ips": [],
        "interfaces": [{"port_id": str(uuid.uuid4()), "network_id": private, "mac": "fa:16:3e:71:00:01",
                        "addresses": ["10.71.0.1/24"]}],
        "gateway": {"port_id": str(uuid.uuid4()), "network_id": public, "mac": "fa:16:3e:71:00:02",
                    "addresses": ["172.31.71.20/24"], "gateway_ip": "172.31.71.1", "prefixlen": 24},
    }
    yield dataplane, router, stands, (private, second, public)
    dataplane.remove(router_id)
    for stand in stands.values():
        stand.remove()
    for network in (private, second, public):
        release_bridge(state, network, dataplane.bridge(network))
    assert not any(Path("/sys/class/net", dataplane.bridge(n)).exists() for n in (private, second, public))


def test_a_router_routes_snats_and_dnats_floating_ips(lab):
    dataplane, router, stands, (private, second, public) = lab
    guest, other, outside = stands["guest"], stands["other"], stands["outside"]
    assert not guest.ping("172.31.71.1")  # no router yet

    dataplane.apply(router)
    assert router["id"] in dataplane.routers()
    # SNAT: the guest reaches the outside, which sees the router's gateway address.
    assert guest.reaches("172.31.71.1")
    assert guest.peer_seen_by(outside, "172.31.71.1", 7101) == "172.31.71.20"
    # Nothing reaches the guest from outside without a floating IP.
    _run("ip", "-n", outside.name, "route", "add", "10.71.0.0/24", "via", "172.31.71.20")
    assert not outside.ping("172.31.71.50")

    # A floating IP: reached there (ping and TCP), and the guest's own traffic leaves as it.
    # The router announces it (gratuitous ARP): the outside, which takes announcements as an upstream router
    # does, learns the gateway leg's MAC for it without asking.
    _run("ip", "netns", "exec", outside.name, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1")
    _run("ip", "-n", outside.name, "neigh", "flush", "dev", "eth0")
    router["floating_ips"] = [{"floating": "172.31.71.50", "fixed": "10.71.0.5"}]
    dataplane.apply(router)
    deadline = time.monotonic() + 15
    while outside.neighbour("172.31.71.50") != "fa:16:3e:71:00:02" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outside.neighbour("172.31.71.50") == "fa:16:3e:71:00:02"
    assert outside.reaches("172.31.71.50")
    assert outside.peer_seen_by(guest, "172.31.71.50", 7102) == "172.31.71.1"  # the source kept inside
    assert guest.peer_seen_by(outside, "172.31.71.1", 7103) == "172.31.71.50"

    # A connection made through the floating IP, cut when it is taken off (its tracking state dropped).
    echo = subprocess.Popen(["ip", "netns", "exec", guest.name, sys.executable, "-c", ECHO, "7107"])
    talk = None
    try:
        for _ in range(50):
            talk = subprocess.Popen(["ip", "netns", "exec", outside.name, sys.executable, "-c", TALK, "172.31.71.50",
                                     "7107"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if talk.stdout.readline().strip() == "connected":
                break
            talk.wait()
        talk.stdin.write("one\n")
        talk.stdin.flush()
        assert talk.stdout.readline().strip() == "one"
        router["floating_ips"] = []
        dataplane.apply(router)
        talk.stdin.write("two\n")
        talk.stdin.flush()
        assert talk.stdout.readline().strip() == "no-echo"
        router["floating_ips"] = [{"floating": "172.31.71.50", "fixed": "10.71.0.5"}]
        dataplane.apply(router)
    finally:
        for process in (echo, talk):
            if process is not None:
                process.kill()
                process.wait()

    # A second subnet on another network, routed through the router (no NAT between them).
    router["interfaces"].append({"port_id": str(uuid.uuid4()), "network_id": second, "mac": "fa:16:3e:71:00:03",
                                 "addresses": ["10.72.0.1/24"]})
    dataplane.apply(router)
    assert other.reaches("10.71.0.5")
    assert guest.peer_seen_by(other, "10.72.0.7", 7104) == "10.71.0.5"
    # Hairpin: a guest of another subnet reaches the floating IP too.
    assert other.reaches("172.31.71.50")

    # An extra route: 192.0.2.0/24 via the other guest.
    router["routes"] = [{"destination": "192.0.2.0/24", "nexthop": "10.72.0.7"}]
    dataplane.apply(router)
    shown = _run("ip", "-n", dataplane.namespace(router["id"]), "route", "show", "192.0.2.0/24").stdout
    assert "via 10.72.0.7" in shown
    router["routes"] = []
    dataplane.apply(router)
    assert not _run("ip", "-n", dataplane.namespace(router["id"]), "route", "show", "192.0.2.0/24").stdout.strip()

    # Disassociated: no longer reached; the interface removed: the second network no longer routed.
    router["floating_ips"] = []
    router["interfaces"] = router["interfaces"][:1]
    dataplane.apply(router)
    assert not outside.ping("172.31.71.50")
    assert not other.ping("10.71.0.5")
    assert guest.peer_seen_by(outside, "172.31.71.1", 7105) == "172.31.71.20"

    # No SNAT: the guest's traffic leaves with its own address (the outside routes back to it here).
    router["enable_snat"] = False
    dataplane.apply(router)
    assert guest.peer_seen_by(outside, "172.31.71.1", 7106) == "10.71.0.5"

    dataplane.remove(router["id"])
    assert router["id"] not in dataplane.routers()
    assert not Path("/run/netns", dataplane.namespace(router["id"])).exists()


def test_the_host_side_of_an_external_bridge_takes_its_gateway(lab):
    dataplane, router, stands, (_private, _second, public) = lab
    stands["outside"].remove()  # the host is the outside world now
    dataplane.apply(router)
    dataplane.ensure_external(public, "172.31.71.1/24")
    bridge = dataplane.bridge(public)
    assert "172.31.71.1/24" in _run("ip", "-o", "addr", "show", "dev", bridge).stdout
    assert _run("ping", "-c", "1", "-W", "1", "172.31.71.20", check=False).returncode == 0
    dataplane.ensure_external(public, "172.31.71.1/24")  # again: nothing changes
    dataplane.remove(router["id"])  # the bridge (and its address) goes with the last router on it
    assert not Path("/sys/class/net", bridge).exists()


def test_the_host_does_not_answer_arp_on_a_bridge_for_its_other_addresses(tmp_path, host_packages):
    """Another interface of the host holds 172.31.72.1 (as another cloud's external bridge holds 172.24.4.1): a
    router on this cloud's bridges must reach the outside namespace with that address, not the host."""
    state = tmp_path / "_networks"
    dataplane = RouterDataplane(state)
    network, elsewhere = str(uuid.uuid4()), f"kt{uuid.uuid4().hex[:10]}"
    _run("ip", "link", "add", elsewhere, "type", "veth", "peer", "name", f"{elsewhere}p")
    _run("ip", "addr", "add", "172.31.72.1/24", "dev", elsewhere)
    _run("ip", "link", "set", elsewhere, "up")
    ensure_bridge(state, dataplane.bridge(network))
    asking = Stand(f"kt-asking-{uuid.uuid4().hex[:6]}", dataplane.bridge(network), "172.31.72.9/24", None)
    outside = Stand(f"kt-outside-{uuid.uuid4().hex[:6]}", dataplane.bridge(network), "172.31.72.1/24", None)
    try:
        assert asking.reaches("172.31.72.1")
        shown = _run("ip", "-n", asking.name, "neigh", "show", "172.31.72.1").stdout
        mac = _run("ip", "-n", outside.name, "-br", "link", "show", "eth0").stdout.split()[2]
        assert mac in shown, shown
        assert Path(f"/proc/sys/net/ipv4/conf/{dataplane.bridge(network)}/arp_ignore").read_text().strip() == "1"
    finally:
        for stand in (asking, outside):
            stand.remove()
        _run("ip", "link", "del", elsewhere, check=False)
        release_bridge(state, network, dataplane.bridge(network))
