"""A real guest on a dual-stack network through `kilonova up` with the libvirt driver: its kernel takes its
SLAAC address from the router advertisements of the network's namespace, the address the network service
gave its port (the EUI-64 of its MAC), and answers ping6 there once an IPv6 ICMP rule lets it; a SLAAC subnet
added to the network while it runs gives it a second address the same way."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from kilonova.compute.virt.libvirt.dataplane import Dataplane
from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import console_lines, libvirt_cloud, upload_guest, wait_console

HOST = "kilonova-ipv6-test"


@pytest.fixture(scope="module")
def cloud(guest):
    with libvirt_cloud({"DEFAULT": {"host": HOST},
                        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"}}) as instance:
        yield instance


def _ping6(namespace: str, address: str, timeout: float = 60) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(["ip", "netns", "exec", namespace, "ping", "-6", "-c", "1", "-W", "1", address],
                                capture_output=True, text=True, timeout=10)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_a_guest_takes_its_slaac_address_and_answers_there(cloud, guest):
    conn = cloud.sdk()
    image = upload_guest(cloud, guest, "ipv6")
    flavor = conn.compute.create_flavor(name="real.ipv6", ram=128, disk=1, vcpus=1)
    network = conn.network.create_network(name="dual")
    conn.network.create_subnet(network_id=network.id, ip_version=4, cidr="10.66.0.0/24")
    slaac = conn.network.create_subnet(network_id=network.id, ip_version=6, cidr="fd00:66::/64",
                                       ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    server = cloud.openstack("server", "create", "--flavor", flavor.name, "--image", image["id"], "--network",
                             "dual", "--config-drive", "true", "--wait", "v6-vm", fmt_json=True, timeout=180)
    port = next(conn.network.ports(device_id=server["id"]))
    address = next(ip["ip_address"] for ip in port.fixed_ips if ip["subnet_id"] == slaac.id)
    assert {"version": 6, "addr": address} in [
        {"version": a["version"], "addr": a["addr"]} for a in conn.compute.get_server(server["id"]).addresses["dual"]]

    log = wait_console(cloud, server["id"], f"{MARKER} ipv6 ", timeout=120)
    assert f"{address}/64" in console_lines(log, "ipv6")[-1].split()  # the kernel made the same address
    network_data = json.loads(console_lines(log, "network_data")[0])
    assert {"type": "ipv6_slaac", "ip_address": address, "netmask": "ffff:ffff:ffff:ffff::"}.items() <= next(
        n for n in network_data["networks"] if n["type"].startswith("ipv6")).items()

    namespace = Dataplane(Path(cloud.state_dir, "instances", "_networks")).namespace(network.id)
    refused = _ping6(namespace, address, timeout=3)
    assert refused.returncode != 0, "the default group lets no ICMPv6 echo in from outside it"
    default = next(conn.network.security_groups(name="default", project_id=conn.current_project_id))
    cloud.openstack("security", "group", "rule", "create", "--ethertype", "IPv6", "--protocol", "ipv6-icmp",
                    default.id)
    answered = _ping6(namespace, address)
    assert answered.returncode == 0, answered.stdout + answered.stderr

    # A SLAAC subnet added to the network later: the port gets its address there (network-changed), the host's
    # dnsmasq advertises the new prefix, and the guest makes the same address.
    later = conn.network.create_subnet(network_id=network.id, ip_version=6, cidr="fd00:67::/64",
                                       ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    port = conn.network.get_port(port.id)
    second = next(ip["ip_address"] for ip in port.fixed_ips if ip["subnet_id"] == later.id)
    wait_console(cloud, server["id"], f"{second}/64", timeout=90)
    answered = _ping6(namespace, second)
    assert answered.returncode == 0, answered.stdout + answered.stderr

    cloud.openstack("server", "delete", "--wait", server["id"], timeout=120)
