"""IPv6 subnets through the real `openstack` CLI, and a server on a dual-stack network (fake driver) showing
its IPv4, SLAAC (EUI-64 of its MAC) and DHCPv6-stateful addresses."""
from __future__ import annotations

import ipaddress
import subprocess
import uuid

import pytest

from tests.cloud import wait_for

DEMO = "kilonova-demo"


@pytest.fixture(scope="module")
def dual_stack(cloud):
    conn = cloud.sdk(DEMO)
    name = f"dual-{uuid.uuid4().hex[:6]}"
    network = conn.network.create_network(name=name)
    v4 = conn.network.create_subnet(network_id=network.id, ip_version=4, cidr="10.77.0.0/24", name=f"{name}-v4")
    yield conn, network, v4
    for server in [s for s in conn.compute.servers() if s.name.startswith(name)]:
        conn.compute.delete_server(server, force=True)
        conn.compute.wait_for_delete(server, wait=60)
    wait_for(lambda: not list(conn.network.ports(network_id=network.id)), "the servers' ports to go")
    conn.network.delete_network(network)


def test_slaac_subnet_through_the_cli_and_a_server_with_both_addresses(cloud, dual_stack):
    conn, network, v4 = dual_stack
    slaac = cloud.openstack("subnet", "create", "--network", network.name, "--ip-version", "6",
                            "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "slaac",
                            "--subnet-range", "fd00:77::/64", f"{network.name}-slaac", cloud=DEMO, fmt_json=True)
    assert (slaac["ip_version"], slaac["ipv6_ra_mode"], slaac["ipv6_address_mode"]) == (6, "slaac", "slaac")
    assert slaac["cidr"] == "fd00:77::/64" and slaac["gateway_ip"] == "fd00:77::1"
    stateful = conn.network.create_subnet(network_id=network.id, ip_version=6, cidr="fd00:78::/64",
                                          ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful")

    server = conn.compute.create_server(name=f"{network.name}-vm", flavor_id="1", networks=[{"uuid": network.id}],
                                        image_id=conn.image.find_image("kilonova-tiny").id)
    shown = cloud.wait_status(server.id, "ACTIVE", cloud=DEMO)
    port = next(conn.network.ports(device_id=server.id))
    eui64 = ipaddress.ip_address("fd00:77::") + int.from_bytes(
        bytes([int(port.mac_address[:2], 16) ^ 2]) + bytes.fromhex(port.mac_address[3:8].replace(":", ""))
        + b"\xff\xfe" + bytes.fromhex(port.mac_address[9:].replace(":", "")), "big")
    assert sorted((ip["subnet_id"], ip["ip_address"]) for ip in port.fixed_ips) == sorted([
        (v4.id, "10.77.0.2"), (slaac["id"], str(eui64)), (stateful.id, "fd00:78::2")])
    assert all(address in str(shown["addresses"]) for address in ("10.77.0.2", str(eui64), "fd00:78::2"))
    addresses = conn.compute.get_server(server.id).addresses[network.name]
    assert sorted((a["version"], a["addr"]) for a in addresses) == sorted([
        (4, "10.77.0.2"), (6, str(eui64)), (6, "fd00:78::2")])


def test_a_mode_combination_neutron_refuses_is_refused_through_the_cli(cloud, dual_stack):
    _, network, _ = dual_stack
    refused = cloud.openstack("subnet", "create", "--network", network.name, "--ip-version", "6",
                              "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "dhcpv6-stateful",
                              "--subnet-range", "fd00:79::/64", f"{network.name}-bad", cloud=DEMO, check=False)
    assert isinstance(refused, subprocess.CompletedProcess) and refused.returncode != 0
    assert ("ipv6_ra_mode set to 'slaac' with ipv6_address_mode set to 'dhcpv6-stateful' is not valid"
            in refused.stderr)
