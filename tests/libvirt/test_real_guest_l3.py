"""Routers and floating IPs carrying a real guest's traffic (the L3 agent on the libvirt dataplane), through
`kilonova up` and the `openstack` CLI.

A network namespace stands for the outside world on the external network ``public`` (172.24.4.1, the
subnet's gateway, as DevStack's br-ex has it); a second guest on a second tenant network calls the first
through the router. The guest's
user-data script serves a line on TCP 7000 (which its security group lets in, with ping), connects to the outside on TCP 7001 every second, and prints
the metadata API's ``public-ipv4`` when it changes. ``router1`` (made by ``kilonova up``) joins ``private``
to ``public``; the test adds the second network's subnet to it.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kilonova.compute.virt.libvirt.dataplane import Dataplane
from kilonova.network import bootstrap
from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import libvirt_cloud, upload_guest, wait_console

HOST = "kilonova-l3-test"
OUTSIDE_ADDRESS = "172.24.4.1"

USER_DATA = f"""#!/bin/sh
printf '#!/bin/sh\\necho kilonova-l3-guest\\n' > /tmp/reply && chmod +x /tmp/reply
nc -ll -p 7000 -e /tmp/reply &
last=unset
while true; do
    echo from-guest | nc -w 2 {OUTSIDE_ADDRESS} 7001 >/dev/null 2>&1
    now=$(printf 'GET /latest/meta-data/public-ipv4 HTTP/1.0\\r\\n\\r\\n' | nc -w 2 169.254.169.254 80 \\
          | sed '1,/^\\r*$/d')
    if [ "$now" != "$last" ]; then echo "{MARKER} public-ipv4 ${{now:-none}}"; last=$now; fi
    sleep 1
done
"""

# The second guest: asks the first for its line on TCP 7000 every second, printing the answer when it changes.
CALLER = f"""#!/bin/sh
last=unset
while true; do
    now=$(nc -w 2 @ADDRESS@ 7000 2>/dev/null)
    if [ "$now" != "$last" ]; then echo "{MARKER} peer-reply ${{now:-none}}"; last=$now; fi
    sleep 1
done
"""

# The outside world's TCP 7001: prints the source address of every connection.
RECORD_PEERS = ("import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                "s.bind(('0.0.0.0', 7001)); s.listen(16)\n"
                "while True:\n c, a = s.accept(); print(a[0], flush=True); c.close()")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=check)


class Namespace:
    """A namespace with one veth onto a bridge of the cloud's dataplane."""

    def __init__(self, bridge: str, address: str):
        tag = uuid.uuid4().hex[:8]
        self.name, self.host_end = f"kilonova-l3t-{tag}", f"kl3{tag}"
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.host_end, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        _run("ip", "link", "set", self.host_end, "master", bridge, "up")
        _run("ip", "-n", self.name, "addr", "add", address, "dev", "eth0")
        _run("ip", "-n", self.name, "link", "set", "eth0", "up")
        _run("ip", "-n", self.name, "link", "set", "lo", "up")

    def ping(self, address: str) -> bool:
        return _run("ip", "netns", "exec", self.name, "ping", "-c", "1", "-W", "1", address,
                    check=False).returncode == 0

    def read_line(self, address: str, port: int) -> str:
        script = (f"import socket; c=socket.create_connection(('{address}', {port}), timeout=3); "
                  "print(c.recv(100).decode().strip())")
        result = _run("ip", "netns", "exec", self.name, sys.executable, "-c", script, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def remove(self) -> None:
        _run("ip", "link", "del", self.host_end, check=False)
        _run("ip", "netns", "del", self.name, check=False)


def _wait(what: str, check, timeout: float = 30) -> float:
    """Seconds until ``check()`` held (polled); fails saying ``what`` when it never does."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout:.0f} s")


def _console_after(cloud, server: str, anchor: str, text: str, timeout: float = 30) -> None:
    """Wait for ``text`` on the console after the last ``anchor`` line."""
    with cloud.http("compute") as api:
        def after() -> str:
            output = api.post(f"/servers/{server}/action", json={"os-getConsoleOutput": {}}).json()["output"]
            return output.rsplit(anchor, 1)[-1]
        _wait(f"{text!r} after {anchor!r} on the console of {server}", lambda: text in after(), timeout)


def _bridge_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def cloud(guest):
    # The outside world is a namespace here, not the host.
    with libvirt_cloud({"DEFAULT": {"host": HOST},
                        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
                        "libvirt": {"shutdown_timeout": "20"},
                        "l3": {"host_gateway": "false"}}) as instance:
        yield instance


@pytest.fixture(scope="module")
def outside(cloud):
    """The outside world: 172.24.4.1 on the external network's bridge (which router1's gateway brings)."""
    dataplane = Dataplane(Path(cloud.state_dir, "instances", "_networks"))
    bridge = dataplane.bridge(bootstrap.PUBLIC_NETWORK_ID)
    _wait(f"the external bridge {bridge} (router1's gateway)", lambda: _bridge_exists(bridge))
    namespace = Namespace(bridge, f"{OUTSIDE_ADDRESS}/24")
    peers = subprocess.Popen(["ip", "netns", "exec", namespace.name, sys.executable, "-u", "-c", RECORD_PEERS],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    os.set_blocking(peers.stdout.fileno(), False)
    namespace.peers = peers
    namespace.seen = []
    yield namespace
    peers.kill()
    peers.wait()
    namespace.remove()


def _latest_peer(outside: Namespace) -> str | None:
    while True:
        line = outside.peers.stdout.readline()
        if not line:
            break
        outside.seen.append(line.strip())
    return outside.seen[-1] if outside.seen else None


def _peer_becomes(outside: Namespace, address: str) -> bool:
    outside.seen.clear()
    return _latest_peer(outside) == address


def test_a_guest_behind_router1_and_its_floating_ip(cloud, guest, outside, tmp_path):
    os_ = cloud.openstack
    image = upload_guest(cloud, guest, "l3")
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.l3")
    script = tmp_path / "user-data"
    script.write_text(USER_DATA)
    # The guest's security group lets ping and its TCP 7000 in (egress is open by default).
    os_("security", "group", "rule", "create", "--proto", "icmp", "default")
    os_("security", "group", "rule", "create", "--proto", "tcp", "--dst-port", "7000", "default")
    server = os_("server", "create", "--flavor", "real.l3", "--image", image["id"], "--network", "private",
                 "--config-drive", "True", "--user-data", str(script), "--wait", "l3-vm", fmt_json=True,
                 timeout=180)
    uuid_ = server["id"]
    log = wait_console(cloud, uuid_, f"{MARKER} public-ipv4 none", timeout=120)
    address = next(line.split()[3].split("/")[0] for line in log.splitlines() if f"{MARKER} dhcp eth0" in line)
    # The router port holds the gateway address; DHCP (and the metadata API) answer from an address of their own.
    assert f"{MARKER} dhcp eth0 {address}/24 router 10.0.0.1" in log
    assert f"{MARKER} metadata-api " in log and f"{MARKER} metadata-api unreachable" not in log
    [dhcp] = os_("port", "list", "--device-owner", "network:dhcp", "--network", "private", "--long",
                 fmt_json=True)
    dhcp_address = dhcp["Fixed IP Addresses"][0]["ip_address"]
    assert dhcp_address != "10.0.0.1"
    dataplane = Dataplane(Path(cloud.state_dir, "instances", "_networks"))
    held = _run("ip", "-n", dataplane.namespace(bootstrap.NETWORK_ID), "-o", "addr", "show").stdout
    assert f"{dhcp_address}/24" in held and "10.0.0.1/" not in held

    # SNAT: the guest reaches the outside through router1, which the outside sees as the router's gateway.
    router = os_("router", "show", "router1", fmt_json=True)
    gateway_address = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    _wait(f"the guest's connection from {gateway_address}", lambda: _latest_peer(outside) == gateway_address, 60)
    assert not outside.ping(address)  # the guest's own address is not routed from outside

    # A floating IP: the real CLI, as a user would; NATed within about a second.
    fip = os_("floating", "ip", "create", "public", fmt_json=True)["floating_ip_address"]
    assert not outside.ping(fip)
    os_("server", "add", "floating", "ip", uuid_, fip)
    took = _wait(f"ping of {fip}", lambda: outside.ping(fip), 10)
    print(f"floating IP {fip} answered {took:.2f} s after the association")
    assert outside.read_line(fip, 7000) == "kilonova-l3-guest"
    _wait(f"the guest's connection from {fip}", lambda: _peer_becomes(outside, fip), 15)
    wait_console(cloud, uuid_, f"{MARKER} public-ipv4 {fip}", timeout=30)
    addresses = os_("server", "show", uuid_, fmt_json=True)["addresses"]
    assert fip in str(addresses["private"])

    # A second subnet on another network, routed by router1: a second guest there reaches the first.
    os_("network", "create", "l3-second")
    os_("subnet", "create", "--network", "l3-second", "--subnet-range", "10.97.0.0/24", "l3-second-subnet")
    os_("router", "add", "subnet", "router1", "l3-second-subnet")
    caller = tmp_path / "caller"
    caller.write_text(CALLER.replace("@ADDRESS@", address))
    second = os_("server", "create", "--flavor", "real.l3", "--image", image["id"], "--network", "l3-second",
                 "--config-drive", "True", "--user-data", str(caller), "--wait", "l3-vm2", fmt_json=True,
                 timeout=180)["id"]
    log = wait_console(cloud, second, f"{MARKER} peer-reply kilonova-l3-guest", timeout=120)
    assert f"{MARKER} dhcp eth0 10.97.0." in log and "router 10.97.0.1" in log
    os_("router", "remove", "subnet", "router1", "l3-second-subnet")
    _console_after(cloud, second, f"{MARKER} peer-reply kilonova-l3-guest", f"{MARKER} peer-reply none")
    os_("server", "delete", "--wait", second, timeout=120)

    # Disassociated: the floating IP no longer reaches the guest, whose traffic leaves as the router again.
    os_("server", "remove", "floating", "ip", uuid_, fip)
    _wait(f"{fip} unanswered", lambda: not outside.ping(fip), 10)
    assert outside.read_line(fip, 7000) == ""
    _wait(f"the guest's connection from {gateway_address} again", lambda: _peer_becomes(outside, gateway_address),
          15)
    _console_after(cloud, uuid_, f"{MARKER} public-ipv4 {fip}", f"{MARKER} public-ipv4 none")

    # A server of a release before DHCP ports: its network information without one, its network's namespace on
    # the gateway address. Once the cloud restarts, it learns the port and the namespace leaves the gateway.
    cloud.stop()
    with sqlite3.connect(Path(cloud.state_dir) / "cell1.sqlite") as db:
        info = json.loads(db.execute("SELECT network_info FROM instances WHERE uuid = ?", (uuid_,)).fetchone()[0])
        for vif in info:
            for subnet in vif["subnets"]:
                subnet.pop("dhcp_server", None)
        db.execute("UPDATE instances SET network_info = ? WHERE uuid = ?", (json.dumps(info), uuid_))
    Path(cloud.state_dir, "instances", uuid_, "network_info.json").write_text(json.dumps(info))
    namespace, inside = dataplane.namespace(bootstrap.NETWORK_ID), dataplane.veth(bootstrap.NETWORK_ID)[1]
    _run("ip", "-n", namespace, "addr", "del", f"{dhcp_address}/24", "dev", inside)
    _run("ip", "-n", namespace, "addr", "add", "10.0.0.1/24", "dev", inside)
    cloud.start(timeout=180)

    def namespace_holds() -> str:
        return _run("ip", "-n", namespace, "-o", "-4", "addr", "show", "dev", inside).stdout

    _wait("the DHCP namespace back on its port's address",
          lambda: f"{dhcp_address}/24" in namespace_holds() and "10.0.0.1/" not in namespace_holds(), 60)
    os_("server", "delete", "--wait", uuid_, timeout=120)
