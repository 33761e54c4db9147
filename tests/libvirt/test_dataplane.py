"""The network dataplane on the real host (root): what a port of a subnet without DHCP gets."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from kilonova.compute.virt.libvirt.dataplane import Dataplane

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (bridges and namespaces)")


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def test_a_subnet_with_dhcp_disabled_gets_a_gateway_but_no_dnsmasq(tmp_path):
    dataplane = Dataplane(tmp_path / "_networks", metadata=False)
    network = str(uuid.uuid4())
    vif = {"port_id": str(uuid.uuid4()), "network_id": network, "mac_address": "fa:16:3e:00:00:09",
           "fixed_ips": [{"ip_address": "10.209.0.5", "version": 4}],
           "subnets": [{"id": "s", "cidr": "10.209.0.0/24", "gateway_ip": "10.209.0.1", "ip_version": 4,
                        "enable_dhcp": False}]}
    namespace, bridge = dataplane.namespace(network), dataplane.bridge(network)
    try:
        dataplane.plug(vif, "instance-1")
        assert _link_exists(bridge)
        addresses = subprocess.run(["ip", "-n", namespace, "-o", "addr", "show"], capture_output=True,
                                   text=True).stdout
        assert "10.209.0.1/24" in addresses  # the host still reaches the network's guests
        assert dataplane._dnsmasq_pid(network) is None
        assert not (tmp_path / "_networks" / network / "dnsmasq.pid").exists()
    finally:
        dataplane.unplug(vif)
    assert not _link_exists(bridge) and not _link_exists(dataplane.veth(network)[0])
    assert not Path("/run/netns", namespace).exists()


def test_an_exited_process_not_yet_reaped_counts_as_stopped():
    """dnsmasq daemonizes: once killed it stays a zombie until init reaps it, which here takes seconds; the
    last port's teardown (a live migration's source clean-up) must not wait for that."""
    from kilonova.compute.virt.libvirt.dataplane import _running

    child = subprocess.Popen(["sleep", "30"])
    assert _running(child.pid)
    child.kill()
    for _ in range(500):  # until the kernel made it a zombie (nobody reaps it yet)
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            break
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}").exists() and not _running(child.pid)
    child.wait()
    assert not _running(child.pid)


def test_a_dhcp_port_known_later_takes_the_namespace_off_the_gateway(tmp_path):
    """A namespace made before the host knew its DHCP port held the subnet's gateway (as before routers); once a
    port's network information names the DHCP port, the namespace holds that address instead (the router leg owns
    the gateway) and dnsmasq, told to re-read its options, routes the metadata API to it (option 121)."""
    dataplane = Dataplane(tmp_path / "_networks", metadata=False)
    network = str(uuid.uuid4())
    subnet = {"id": "s", "cidr": "10.208.0.0/24", "gateway_ip": "10.208.0.1", "ip_version": 4}
    old = {"port_id": str(uuid.uuid4()), "network_id": network, "mac_address": "fa:16:3e:00:00:0a",
           "fixed_ips": [{"ip_address": "10.208.0.5", "version": 4}], "subnets": [subnet]}
    new = {**old, "port_id": str(uuid.uuid4()), "mac_address": "fa:16:3e:00:00:0b",
           "fixed_ips": [{"ip_address": "10.208.0.6", "version": 4}],
           "subnets": [{**subnet, "dhcp_server": "10.208.0.2"}]}
    namespace = dataplane.namespace(network)

    def addresses() -> str:
        return subprocess.run(["ip", "-n", namespace, "-o", "-4", "addr", "show"], capture_output=True,
                              text=True).stdout

    try:
        dataplane.plug(old, "instance-1")
        assert "10.208.0.1/24" in addresses()
        opts = tmp_path / "_networks" / network / "opts"
        assert "option:router,10.208.0.1" in opts.read_text() and "classless" not in opts.read_text()
        dataplane.plug(new, "instance-2")
        assert "10.208.0.2/24" in addresses() and "10.208.0.1/" not in addresses()
        assert "option:classless-static-route,169.254.169.254/32,10.208.0.2,0.0.0.0/0,10.208.0.1" in opts.read_text()
        assert dataplane._dnsmasq_pid(network) is not None
    finally:
        dataplane.unplug(new)
        dataplane.unplug(old)
    assert not Path("/run/netns", namespace).exists()
