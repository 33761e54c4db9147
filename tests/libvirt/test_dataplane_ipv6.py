"""IPv6 on the libvirt dataplane, with a network namespace standing for the guest (root): the network's
dnsmasq sends router advertisements that make the guest's kernel configure its SLAAC and DHCPv6-stateless
addresses (not one of the stateful prefix), and answers DHCPv6 with a stateful subnet's IPAM address."""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from kilonova.compute.virt.libvirt.dataplane import Dataplane
from kilonova.network import ipam

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (bridges and namespaces)")

MAC = "fa:16:3e:21:10:05"
SLAAC = ipam.eui64("fd00:211::/64", MAC)
STATELESS = ipam.eui64("fd00:213::/64", MAC)

# A DHCPv6 client's Solicit (RFC 8415) with the MAC's DUID-LL and one IA_NA; prints the address offered.
SOLICIT = textwrap.dedent("""
    import socket, struct, sys
    interface, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
    def option(code, data):
        return struct.pack("!HH", code, len(data)) + data
    message = (b"\\x01\\x12\\x34\\x56" + option(1, struct.pack("!HH", 3, 1) + mac)
               + option(3, struct.pack("!III", 1, 0, 0)) + option(8, b"\\x00\\x00"))
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    sock.bind(("::", 546))
    sock.settimeout(2)
    for _ in range(10):
        sock.sendto(message, ("ff02::1:2", 547, 0, socket.if_nametoindex(interface)))
        try:
            reply = sock.recv(2048)
        except socket.timeout:
            continue
        def options(data):
            while len(data) >= 4:
                code, length = struct.unpack("!HH", data[:4])
                yield code, data[4:4 + length]
                data = data[4 + length:]
        for code, data in options(reply[4:]):
            if code == 3:
                for inner, value in options(data[12:]):
                    if inner == 5:
                        print(socket.inet_ntop(socket.AF_INET6, value[:16]))
                        sys.exit(0)
        print("no address in reply type", reply[0])
        sys.exit(1)
    print("no reply")
    sys.exit(1)
""")


def _vif(network_id: str) -> dict:
    return {"port_id": str(uuid.uuid4()), "network_id": network_id, "mac_address": MAC,
            "fixed_ips": [{"ip_address": "10.211.0.5", "subnet_id": "s4", "version": 4},
                          {"ip_address": SLAAC, "subnet_id": "slaac", "version": 6},
                          {"ip_address": "fd00:212::5", "subnet_id": "stateful", "version": 6},
                          {"ip_address": STATELESS, "subnet_id": "stateless", "version": 6}],
            "subnets": [{"id": "s4", "cidr": "10.211.0.0/24", "gateway_ip": "10.211.0.1", "ip_version": 4,
                         "enable_dhcp": True, "dns_nameservers": []},
                        {"id": "slaac", "cidr": "fd00:211::/64", "gateway_ip": "fd00:211::1", "ip_version": 6,
                         "enable_dhcp": True, "dns_nameservers": [], "ipv6_ra_mode": "slaac",
                         "ipv6_address_mode": "slaac"},
                        {"id": "stateful", "cidr": "fd00:212::/64", "gateway_ip": "fd00:212::1", "ip_version": 6,
                         "enable_dhcp": True, "dns_nameservers": ["fd00:212::53"],
                         "ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": "dhcpv6-stateful"},
                        {"id": "stateless", "cidr": "fd00:213::/64", "gateway_ip": "fd00:213::1", "ip_version": 6,
                         "enable_dhcp": True, "dns_nameservers": [], "ipv6_ra_mode": "dhcpv6-stateless",
                         "ipv6_address_mode": "dhcpv6-stateless"}]}


@pytest.fixture
def guest_namespace(host_packages):
    """A namespace with one interface (the port's MAC) whose other end joins a bridge: a guest's NIC."""
    suffix = uuid.uuid4().hex[:6]
    namespace, outside, inside = f"kntest-guest-{suffix}", f"ktgo-{suffix}", f"ktgi-{suffix}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    subprocess.run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace],
                   check=True)

    def attach(bridge: str) -> None:
        subprocess.run(["ip", "-n", namespace, "link", "set", inside, "address", MAC, "up"], check=True)
        subprocess.run(["ip", "link", "set", outside, "master", bridge, "up"], check=True)

    yield namespace, inside, attach
    subprocess.run(["ip", "link", "del", outside], capture_output=True)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _global_addresses(namespace: str, interface: str) -> list[str]:
    out = subprocess.run(["ip", "-n", namespace, "-6", "-o", "addr", "show", "dev", interface, "scope", "global"],
                         capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def test_slaac_from_router_advertisements_and_a_stateful_dhcpv6_address(tmp_path, guest_namespace):
    if shutil.which("dnsmasq") is None and not os.path.exists("/usr/sbin/dnsmasq"):
        pytest.skip("needs dnsmasq (Debian's dnsmasq-base; tests/libvirt/hostsetup.py installs it)")
    namespace, interface, attach = guest_namespace
    dataplane = Dataplane(tmp_path / "_networks", metadata=False)
    network = str(uuid.uuid4())
    vif = _vif(network)
    try:
        dataplane.plug(vif, "instance-6")
        hosts = (tmp_path / "_networks" / network / "hosts").read_text().split()
        assert hosts == [f"{MAC},10.211.0.5", f"{MAC},[fd00:212::5]"]  # DHCPv6 hands out the stateful one only
        attach(dataplane.bridge(network))
        deadline = time.monotonic() + 30
        while not {SLAAC, STATELESS} <= set(_global_addresses(namespace, interface)) and time.monotonic() < deadline:
            time.sleep(0.2)
        addresses = _global_addresses(namespace, interface)
        assert SLAAC in addresses, f"no SLAAC address from the advertisements: {addresses}"
        assert STATELESS in addresses, f"no address from the DHCPv6-stateless prefix: {addresses}"
        # the stateful subnet's prefix is advertised as managed, not autonomous: no address of it made here
        assert not [a for a in addresses if ipaddress.ip_address(a) in ipaddress.ip_network("fd00:212::/64")]
        ping = subprocess.run(["ip", "netns", "exec", dataplane.namespace(network), "ping", "-6", "-c", "1", "-W", "3",
                               SLAAC], capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        offered = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", SOLICIT, interface, MAC],
                                 capture_output=True, text=True, timeout=60)
        assert offered.stdout.strip() == "fd00:212::5", offered.stdout + offered.stderr
    finally:
        dataplane.unplug(vif)
    assert not os.path.exists(f"/run/netns/{dataplane.namespace(network)}")
