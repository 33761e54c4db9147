"""Many hosts: a controller and two compute hosts as network namespaces on a bridge, two cells.

The test builds a small network: a bridge in the root namespace holding the controller's
address (.1), and one network namespace per compute host (.11, .12) joined to it by a veth
pair. The controller's services (APIs, conductor, scheduler) run in the root namespace and
listen on the bridge address; each compute process runs inside its namespace
(``ip netns exec``) and reaches the controller only over the bridge: the APIs at the
controller's address, RabbitMQ through a forwarder the test binds on that address (the
broker listens on 127.0.0.1 only; the machine's configuration is left alone). host1 is in
cell1 and host2 in cell2, each cell with its own vhost. The image API runs on a host of its
own (a third namespace, .13, reaching its database through a forwarder too): ``[endpoints]``
says where each API is, so the catalog and the other services find it there. Servers booted
with the openstack CLI and openstacksdk land on both hosts and are deleted. Namespaces, veths
and the bridge are removed at the end, also when the test fails.
"""
from __future__ import annotations

import contextlib
import ipaddress
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.distributed.cluster import READY, Cluster
from tests.distributed.forwarder import Forwarder
from tests.distributed.infra import POSTGRES, RABBIT, Databases, rabbit_vhost

SECTIONS = ("database", "cell0_database", "api_database", "placement_database", "identity_database",
            "image_database", "network_database")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 for the test bridge that no interface of the machine uses yet (192.168.250.0/24 first)."""
    used = ip("-4", "-o", "addr", "show").stdout
    for third in range(250, 256):
        net = ipaddress.IPv4Network(f"192.168.{third}.0/24")
        if f" 192.168.{third}." not in used:
            return net
    raise RuntimeError("no free 192.168.250-255.0/24 subnet for the test bridge")


class Network:
    """The bridge, the namespaces and their veth pairs; ``close`` removes what was created."""

    def __init__(self, hosts: list[str]):
        tag = uuid.uuid4().hex[:5]
        self.subnet = _free_subnet()
        self.controller_ip = str(self.subnet[1])
        self.bridge = f"br-kn-{tag}"
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self._links: list[str] = []
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            self._links.append(self.bridge)
            ip("addr", "add", f"{self.controller_ip}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for index, host in enumerate(hosts, start=1):
                namespace = f"kn-{host}-{tag}"
                ip("netns", "add", namespace)
                self.namespaces[host] = namespace
                outside = f"vkn{tag}{index}"
                ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                self._links.append(outside)
                ip("link", "set", outside, "master", self.bridge)
                ip("link", "set", outside, "up")
                address = str(self.subnet[10 + index])
                self.addresses[host] = address
                for args in (["addr", "add", f"{address}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                             ["link", "set", "lo", "up"]):
                    ip("-n", namespace, *args)
        except BaseException:
            self.close()
            raise

    def run_in(self, host: str, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.namespaces[host], *command], capture_output=True,
                              text=True, timeout=30)

    def close(self) -> None:
        for namespace in self.namespaces.values():
            ip("netns", "del", namespace, check=False)  # takes the namespace's end of each veth with it
        for link in reversed(self._links):
            ip("link", "del", link, check=False)


def _netns_usable() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    probe = f"kn-probe-{uuid.uuid4().hex[:6]}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    bridge = f"br-knp-{uuid.uuid4().hex[:4]}"
    made = ip("link", "add", bridge, "type", "bridge", check=False)
    if made.returncode != 0:
        return f"cannot create a bridge: {made.stderr.strip()}"
    ip("link", "del", bridge, check=False)
    return None


class NamespacedProcess:
    """A ``kilonova serve`` process started inside a network namespace (what ``Cluster`` needs of one)."""

    def __init__(self, name: str, namespace: str, args: list[str], log: Path):
        self.name = name
        self.log = log
        self._fh = open(log, "w")
        # ``ip netns exec`` execs the command: the PID is the service's, signals reach it directly.
        self.popen = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-m", "kilonova.cli",
                                       *args], stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            if READY in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read_text()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._fh.close()


@pytest.fixture(scope="module")
def deployment():
    reason = _netns_usable()
    if reason:
        pytest.skip(f"multi-host test needs network namespaces and bridges: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-multihost-"))
    databases = Databases("postgresql")
    with contextlib.ExitStack() as stack:
        network = Network(["host1", "host2", "imagehost"])
        stack.callback(network.close)
        top = stack.enter_context(rabbit_vhost("kn-mh-top"))
        vhosts = {cell: stack.enter_context(rabbit_vhost(f"kn-mh-{cell}")) for cell in ("cell1", "cell2")}
        # The hosts reach the broker at the controller's address on the bridge.
        broker = stack.enter_context(Forwarder(RABBIT, (network.controller_ip, RABBIT[1])))
        outside = {cell: url.replace(f"@{RABBIT[0]}:{RABBIT[1]}/", f"@{network.controller_ip}:{broker.port}/")
                   for cell, url in vhosts.items()}
        names = {section: section.replace("_database", "") if section != "database" else "cell1"
                 for section in SECTIONS}
        created = databases.urls([*names.values(), "cell2"])
        # Every API on the controller except the image API, on a host of its own.
        endpoints = {f"{service}_host": network.controller_ip
                     for service in ("identity", "compute", "placement", "network")}
        endpoints["image_host"] = network.addresses["imagehost"]
        cluster = Cluster(workdir, top, {section: created[name] for section, name in names.items()},
                          extra={"DEFAULT": {"my_ip": network.controller_ip}, "endpoints": endpoints})
        try:
            cluster.manage("api_db", "sync")
            cluster.manage("cell_v2", "map_cell0")
            # The mappings hold the URLs the controller uses; a host's own config names its cell's
            # vhost at the address it can reach.
            cluster.manage("cell_v2", "create_cell", "--name", "cell1", "--transport-url", vhosts["cell1"])
            cluster.manage("cell_v2", "create_cell", "--name", "cell2", "--database_connection", created["cell2"],
                           "--transport-url", vhosts["cell2"])
            cluster.manage("db", "sync")
            cluster.start_all([[("identity", ["identity"], None)]])
            database = stack.enter_context(Forwarder(POSTGRES, (network.controller_ip, 0)))
            image_config = cluster.variant("imagehost", {
                "DEFAULT": {"host": "imagehost", "my_ip": network.addresses["imagehost"],
                            "transport_url": top.replace(f"@{RABBIT[0]}:{RABBIT[1]}/",
                                                         f"@{network.controller_ip}:{broker.port}/")},
                "image_database": {"connection": created["image"].replace(
                    f"@{POSTGRES[0]}:{POSTGRES[1]}/", f"@{network.controller_ip}:{database.port}/")}})
            image = NamespacedProcess("image", network.namespaces["imagehost"],
                                      ["--config", str(image_config), "serve", "image"], workdir / "image.log")
            cluster.processes[image.name] = image
            cluster.start_all([[("placement", ["placement"], None), ("network", ["network"], None)]])
            image.wait_ready(90)
            cluster.start_all([
                [("api", ["api"], None), ("conductor", ["conductor"], None), ("scheduler", ["scheduler"], None)],
            ])
            for host, cell in (("host1", "cell1"), ("host2", "cell2")):
                # my_ip is the host's own address; [endpoints] (shared) says where the APIs are.
                config = cluster.variant(f"compute-{host}", {
                    "DEFAULT": {"transport_url": outside[cell], "host": host, "my_ip": network.addresses[host]},
                    "compute": {"cell": cell}, "fake_driver": {"hosts": "1", "host_prefix": f"{host}-node"}})
                process = NamespacedProcess(f"compute-{host}", network.namespaces[host],
                                            ["--config", str(config), "serve", "compute"],
                                            workdir / f"compute-{host}.log")
                cluster.processes[process.name] = process
            for host in ("host1", "host2"):
                cluster.processes[f"compute-{host}"].wait_ready(90)
            cluster.write_clouds_yaml()
            cluster.network = network
            yield cluster
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.stop()
            databases.drop_all()
            shutil.rmtree(workdir, ignore_errors=True)


def wait_for(check, timeout: float, what: str, cluster=None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{cluster.logs()}" if cluster else ""))
        time.sleep(0.5)


def test_hosts_in_namespaces_only_reach_the_controller_over_the_bridge(deployment):
    network = deployment.network
    for host, address in network.addresses.items():
        shown = network.run_in(host, "ip", "-4", "-o", "addr", "show", "eth0")
        assert f"inet {address}/24" in shown.stdout
        # The controller's loopback services are not this host's loopback.
        probe = network.run_in(host, sys.executable, "-c",
                               "import socket; s = socket.socket(); s.settimeout(2);"
                               f"print(s.connect_ex(('127.0.0.1', {RABBIT[1]})))")
        assert probe.stdout.strip() != "0"
    services = wait_for(lambda: (lambda rows: rows if {r["Host"] for r in rows if r["State"] == "up"}
                                 >= {"host1-node1", "host2-node1"} else None)(
        deployment.openstack("compute", "service", "list", "--service", "nova-compute", fmt_json=True)),
        60, "both compute hosts up", deployment)
    assert {row["Host"] for row in services} == {"host1-node1", "host2-node1"}
    listed = deployment.manage("cell_v2", "list_cells").stdout
    assert "| cell1 " in listed and "| cell2 " in listed


def test_the_catalog_points_at_the_host_each_api_runs_on(deployment):
    network = deployment.network
    endpoints = deployment.openstack("endpoint", "list", fmt_json=True)
    hosts = {(row["Service Type"], row["Interface"]): row["URL"].split("//", 1)[1].rsplit(":", 1)[0]
             for row in endpoints}
    assert len(hosts) == 21  # 7 service types (block storage as block-storage and volumev3), 3 interfaces each
    for (service_type, _), host in hosts.items():
        assert host == (network.addresses["imagehost"] if service_type == "image" else network.controller_ip)
    # The CLI finds the image API through the catalog, on its own host.
    assert "kilonova-tiny" in {row["Name"] for row in deployment.openstack("image", "list", fmt_json=True)}


def test_servers_land_on_both_hosts_and_are_deleted(deployment):
    deployment.openstack("aggregate", "create", "--zone", "zone2", "host2-zone")
    deployment.openstack("aggregate", "add", "host", "host2-zone", "host2-node1")
    first = deployment.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                 "--network", "private", "--availability-zone", "nova", "--wait", "mh-1",
                                 fmt_json=True, timeout=120)
    assert first["status"] == "ACTIVE"

    import openstack
    import yaml

    auth = yaml.safe_load(deployment.clouds_yaml.read_text())["clouds"]["kilonova"]["auth"]
    conn = openstack.connect(region_name="RegionOne", **auth)
    try:
        image = conn.image.find_image("kilonova-tiny")
        flavor = conn.compute.find_flavor("m1.tiny")
        net = conn.network.find_network("private")
        second = conn.compute.create_server(name="mh-2", image_id=image.id, flavor_id=flavor.id,
                                            networks=[{"uuid": net.id}], availability_zone="zone2")
        second = conn.compute.wait_for_server(second, wait=120)
        assert second.status == "ACTIVE"
        hosts = {server.name: server.compute_host for server in conn.compute.servers(details=True)}
        assert hosts == {"mh-1": "host1-node1", "mh-2": "host2-node1"}
        conn.compute.delete_server(second)
        conn.compute.wait_for_delete(second, wait=120)
        deployment.openstack("server", "delete", "--wait", first["id"], timeout=120)
        assert deployment.openstack("server", "list", fmt_json=True) == []
        # Placement holds nothing for them any more, on either host.
        headers = {"OpenStack-API-Version": "placement 1.36"}
        providers = conn.placement.get("/resource_providers", headers=headers).json()["resource_providers"]
        assert len(providers) == 2
        for provider in providers:
            usages = conn.placement.get(f"/resource_providers/{provider['uuid']}/usages", headers=headers).json()
            assert not any(usages["usages"].values()), (provider["name"], usages)
    finally:
        conn.close()
