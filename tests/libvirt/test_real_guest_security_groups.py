"""Security groups enforced on a real guest (libvirt driver, `kilonova up`): traffic from network namespaces on
the guest's network -- the network's own namespace (the outside world, not in any group) and two more on its
bridge standing for another guest in a group and one in none -- reaches the guest only as its groups' rules
say, within seconds of each change."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid as uuidlib
from pathlib import Path

import pytest

from kilonova.compute.virt.libvirt.dataplane import Dataplane
from kilonova.compute.virt.libvirt.nft_rules import table_name
from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import libvirt_cloud, upload_guest, wait_console

HOST = "kilonova-sg-test"
pytestmark = pytest.mark.skipif(not shutil.which("nft"), reason="needs nft (Debian's nftables)")


@pytest.fixture(scope="module")
def cloud(guest):
    with libvirt_cloud({"DEFAULT": {"host": HOST},
                        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
                        "libvirt": {"shutdown_timeout": "5"}}) as instance:
        yield instance


def _pings(namespace: str, address: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", namespace, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True).returncode == 0


PROBE = ("import socket,sys\ns=socket.socket();s.settimeout(1.5)\ntry:\n s.connect((sys.argv[1],int(sys.argv[2])))"
         "\n print('open')\nexcept ConnectionRefusedError:\n print('refused')\nexcept OSError:\n print('filtered')")


def _tcp(namespace: str, address: str, port: int) -> str:
    """'refused' or 'open': the SYN reached the guest (it has no listener: it answers RST); 'filtered': dropped."""
    return subprocess.run(["ip", "netns", "exec", namespace, "python3", "-c", PROBE, address, str(port)],
                          capture_output=True, text=True).stdout.strip()


def _within(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@pytest.fixture
def outsider():
    """A namespace on the guest's bridge with an address and MAC of its own: (make(bridge, mac, ip), name)."""
    made = []

    def make(bridge: str, mac: str, address: str) -> str:
        name, tag = f"ksg-{uuidlib.uuid4().hex[:8]}", uuidlib.uuid4().hex[:6]
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append((name, f"ksgv{tag}"))
        subprocess.run(["ip", "link", "add", f"ksgv{tag}", "type", "veth", "peer", "name", "eth0", "netns", name],
                       check=True)
        subprocess.run(["ip", "link", "set", f"ksgv{tag}", "master", bridge, "up"], check=True)
        for args in (["link", "set", "eth0", "address", mac, "up"], ["addr", "add", f"{address}/24", "dev", "eth0"]):
            subprocess.run(["ip", "-n", name, *args], check=True)
        return name

    yield make
    for name, veth in made:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_security_groups_on_a_real_guest(cloud, guest, outsider):
    os_ = cloud.openstack
    image = upload_guest(cloud, guest, "sg")
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.sg")
    web = os_("security", "group", "create", "web", fmt_json=True)  # egress anywhere; no ingress
    friends = os_("security", "group", "create", "friends", fmt_json=True)
    server = os_("server", "create", "--flavor", "real.sg", "--image", image["id"], "--network", "private",
                 "--security-group", "web", "--wait", "sg-vm", fmt_json=True, timeout=180)
    uuid = server["id"]
    address = re.search(r"10\.0\.0\.\d+", json.dumps(server["addresses"])).group(0)
    log = wait_console(cloud, uuid, f"{MARKER} ready")
    assert f"{MARKER} dhcp eth0 {address}/24" in log  # DHCP in and out, through default-deny ingress
    network_id = os_("network", "show", "private", fmt_json=True)["id"]
    dataplane = Dataplane(Path(cloud.state_dir, "instances", "_networks"))
    outside = dataplane.namespace(network_id)
    port_id = os_("port", "list", "--device-id", uuid, fmt_json=True)[0]["ID"]

    # ICMP: not answered until a rule lets it in.
    assert not _pings(outside, address)
    os_("security", "group", "rule", "create", "--proto", "icmp", "web")
    assert _within(lambda: _pings(outside, address))

    with cloud.sdk() as sdk:
        # TCP 22: dropped, then reaching the guest (which refuses: nothing listens), then dropped again.
        assert _tcp(outside, address, 22) == "filtered"
        rule = sdk.network.create_security_group_rule(security_group_id=web["id"], direction="ingress",
                                                      ethertype="IPv4", protocol="tcp", port_range_min=22,
                                                      port_range_max=22)
        created = time.monotonic()
        chain = ["nft", "list", "chain", "inet", table_name(dataplane.scope), f"sg-{web['id']}-in"]
        assert _within(lambda: "dport 22" in subprocess.run(chain, capture_output=True, text=True).stdout)
        print(f"rule created -> in the host's nftables after {time.monotonic() - created:.2f} s")
        assert _within(lambda: _tcp(outside, address, 22) == "refused")
        assert _tcp(outside, address, 23) == "filtered"
        sdk.network.delete_security_group_rule(rule)
        assert _within(lambda: _tcp(outside, address, 22) == "filtered")

        # remote_group_id: a member of `friends` (a port of the network with its address) gets in, others not.
        for icmp in sdk.network.security_group_rules(security_group_id=web["id"], protocol="icmp"):
            sdk.network.delete_security_group_rule(icmp)
        assert _within(lambda: not _pings(outside, address))
        member_port = sdk.network.create_port(network_id=network_id, security_group_ids=[friends["id"]],
                                              fixed_ips=[{"ip_address": "10.0.0.201"}])
        bridge = dataplane.bridge(network_id)
        member = outsider(bridge, member_port.mac_address, "10.0.0.201")
        stranger = outsider(bridge, "fa:16:3e:77:77:77", "10.0.0.202")
        sdk.network.create_security_group_rule(security_group_id=web["id"], direction="ingress",
                                               ethertype="IPv4", remote_group_id=friends["id"])
        assert _within(lambda: _pings(member, address))
        assert not _pings(stranger, address) and not _pings(outside, address)
        # The member leaves the group: its address leaves the guest's rules.
        sdk.network.update_port(member_port, security_group_ids=[])
        assert _within(lambda: not _pings(member, address))

        # port_security_enabled false: no filtering at all.
        sdk.network.update_port(port_id, security_group_ids=[], port_security_enabled=False)
        assert _within(lambda: _pings(stranger, address))
        assert _tcp(outside, address, 23) == "refused"
        sdk.network.update_port(port_id, port_security_enabled=True, security_group_ids=[web["id"]])
        assert _within(lambda: not _pings(stranger, address))

    # A restarted agent applies every port's rules again, here after the host lost them while it was down.
    cloud.stop()
    for family in ("bridge", "inet"):
        subprocess.run(["nft", "delete", "table", family, table_name(dataplane.scope)], check=True)
    assert _pings(stranger, address)  # the guest runs on, unfiltered
    cloud.start(timeout=180)
    assert _within(lambda: not _pings(stranger, address))

    # A deleted server's port leaves no chain behind.
    os_("server", "delete", "--wait", uuid, timeout=120)
    listing = subprocess.run(["nft", "list", "table", "inet", table_name(dataplane.scope)], capture_output=True,
                             text=True).stdout
    assert port_id not in listing
