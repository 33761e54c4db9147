"""The network dataplane of one host: a Linux bridge per network, DHCP for exactly the IPAM addresses.

For network N (``X`` = its id's first 7 characters + this service's 4-digit scope, ``S``, from its
state directory, so that several clouds on one machine keep apart):

* bridge ``kbr-X`` in the host namespace; libvirt adds a tap ``tap<port id[:11]>`` per port to it;
* network namespace ``kilonova-dhcp-N-S`` holding the veth ``kns-X`` (peer ``kve-X`` on the bridge)
  with the address of this host's DHCP port on the subnet (``network:dhcp``, as Neutron's DHCP agent
  has one; the subnet's gateway address belongs to the router interface that holds it, see
  ``routers.py``), so the host side reaches guests from there
  (``ip netns exec kilonova-dhcp-N ping <guest>``) without touching the host's own routes. A subnet
  without DHCP has no such port: the namespace then takes the gateway address, as before routers;
* ``dnsmasq`` in that namespace answering DHCP with static ``dhcp-host`` entries only
  (MAC -> IPAM address); it re-reads them on SIGHUP. It hands out the gateway as the default route
  and, as Neutron's DHCP agent for metadata, a route to 169.254.169.254 via its own address
  (option 121, which carries the default route too). A subnet with ``enable_dhcp`` false gets none
  (its guests configure themselves, e.g. from the config drive's network_data.json). For IPv6 subnets
  it sends router advertisements (SLAAC) and answers DHCPv6 as their modes say (``dhcp6.py``), each
  subnet's gateway address on the namespace's veth;
* the metadata API (``metadata.py``) on 169.254.169.254:80 in that namespace.

The veth, namespace and dnsmasq exist while a port of the network is plugged on this host and are
removed with its last port; the bridge too, unless a router's leg is still on it (``release_bridge``).
Every name is one this service creates itself.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from kilonova.compute.virt.libvirt import dhcp6

LOG = logging.getLogger(__name__)
METADATA_ADDRESS = "169.254.169.254"
METADATA_MODULE = "kilonova.compute.virt.libvirt.metadata"


class DataplaneError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise DataplaneError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def scope_of(state_dir: Path) -> str:
    """4 hex digits naming this service's dataplane: two clouds on one machine (test clouds do that, and
    their default networks share an id) must not share bridges, namespaces or DHCP servers."""
    return hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:4]


def _key(network_id: str, scope: str) -> str:
    return f"{network_id[:7]}{scope}"  # 11 characters: interface names are at most 15


def bridge_name(network_id: str, scope: str = "") -> str:
    return f"kbr-{_key(network_id, scope)}"


def tap_name(port_id: str) -> str:
    return f"tap{port_id[:11]}"


def namespace_name(network_id: str, scope: str = "") -> str:
    return f"kilonova-dhcp-{network_id}-{scope}" if scope else f"kilonova-dhcp-{network_id}"


def _running(pid: int) -> bool:
    """Whether the process still runs. An exited one is a zombie until its parent reaps it, and dnsmasq's
    parent is init (it daemonizes), which may take seconds to: a zombie holds no socket any more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _link_exists(name: str) -> bool:
    """Whether this process's network namespace has interface ``name`` (an ioctl: no ``ip`` process on a guest's
    start path, and right also where /sys shows another namespace, e.g. under ``nsenter --net``)."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def _namespace_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


@contextlib.contextmanager
def _bridges_locked(state_dir: Path):
    """Bridges are shared by the ports' dataplane and the routers' (maybe in another process): one of them at
    a time makes or removes one."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".bridges.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_bridge(state_dir: Path, bridge: str) -> None:
    with _bridges_locked(state_dir):
        if not _link_exists(bridge):
            _ip("link", "add", bridge, "type", "bridge")
            _ip("link", "set", bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0", check=False)
        _host_stays_quiet(bridge)
        _ip("link", "set", bridge, "up")


def _host_stays_quiet(bridge: str) -> None:
    """The host answers ARP on the bridge only for an address the bridge itself holds (arp_ignore 1): by default
    Linux answers for any of its addresses on any interface, so a guest or router asking for 10.0.0.1 or
    172.24.4.1 would get the host's MAC whenever another interface of the host (another cloud's external bridge,
    a VPN) has that address."""
    with contextlib.suppress(OSError):  # no IPv4 configuration for it (a kernel without it): nothing to quiet
        Path(f"/proc/sys/net/ipv4/conf/{bridge}/arp_ignore").write_text("1")


def release_bridge(state_dir: Path, network_id: str, bridge: str) -> None:
    """Remove ``bridge`` once nothing is on it: no port of the network plugged here, no interface left on it."""
    with _bridges_locked(state_dir):
        members = Path("/sys/class/net", bridge, "brif")
        in_use = (state_dir / network_id / "ports.json").exists() or (members.exists() and any(members.iterdir()))
        if not in_use:
            _ip("link", "del", bridge, check=False)


def dhcp_options(subnet: dict | None, subnets6: list[dict]) -> str:
    """dnsmasq's options file: the IPv4 subnet's default route, metadata route and DNS servers, the IPv6 ones'."""
    options = dhcp6.options(subnets6)
    if subnet is not None:
        gateway = subnet.get("gateway_ip")
        if gateway:
            options.append(f"option:router,{gateway}")
        if subnet.get("dhcp_server"):  # the metadata API is here, not behind the router
            routes = [f"{METADATA_ADDRESS}/32,{subnet['dhcp_server']}"] + ([f"0.0.0.0/0,{gateway}"] if gateway else [])
            options.append("option:classless-static-route," + ",".join(routes))
        if subnet.get("dns_nameservers"):
            options.append("option:dns-server," + ",".join(subnet["dns_nameservers"]))
    return "\n".join(options) + "\n"


class Dataplane:
    def __init__(self, state_dir: Path, dnsmasq: str = "dnsmasq", metadata: bool = True):
        self.state_dir = state_dir          # <instances_path>/_networks/<network id>/
        self.dnsmasq = dnsmasq
        self.metadata = metadata            # serve the metadata API in each network's namespace
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()       # bridges and host files are changed from worker threads
        self.scope = scope_of(state_dir)
        self.firewall = None                # the host's security-group rules (firewall.py), when enforced

    def bridge(self, network_id: str) -> str:
        return bridge_name(network_id, self.scope)

    def namespace(self, network_id: str) -> str:
        return namespace_name(network_id, self.scope)

    def veth(self, network_id: str) -> tuple[str, str]:
        """(the end on the bridge, the end in the namespace)."""
        key = _key(network_id, self.scope)
        return f"kve-{key}", f"kns-{key}"

    def _dir(self, network_id: str) -> Path:
        return self.state_dir / network_id

    # ------------------------------------------------------------------ ports

    def plug(self, vif: dict, instance_uuid: str | None = None) -> None:
        """Make ``vif``'s network ready on this host and let DHCP hand out its address."""
        self.plug_bridge(vif, instance_uuid)
        self.serve(vif)

    def plug_bridge(self, vif: dict, instance_uuid: str | None = None) -> None:
        """Record ``vif`` on its network and make the network's bridge: all libvirt needs to start the guest
        (it adds the port's tap to the bridge). ``serve`` does the rest, which the guest needs once booted."""
        network_id = vif["network_id"]
        with self._lock:  # recorded with the bridge, so that another port's unplug never removes the bridge
            directory = self._dir(network_id)
            directory.mkdir(parents=True, exist_ok=True)
            ports = self._ports(network_id)
            ports[vif["port_id"]] = {"mac": vif["mac_address"], "device_id": instance_uuid, "ips": [
                ip["ip_address"] for ip in vif.get("fixed_ips", []) if ip.get("version", 4) == 4],
                "ips6": dhcp6.host_addresses(vif)}
            (directory / "ports.json").write_text(json.dumps(ports))
            self._ensure_bridge(network_id)

    def serve(self, vif: dict) -> None:
        """The network of a plugged ``vif``: its gateway and metadata API, and DHCP handing out its address."""
        network_id = vif["network_id"]
        subnets = [s for s in vif.get("subnets") or [] if s.get("ip_version", 4) == 4 and s.get("cidr")]
        with self._lock:
            subnets6 = self._subnets6(network_id, dhcp6.subnets_of(vif))
            if subnets or subnets6:
                self._ensure_gateway(network_id, subnets[0] if subnets else None, subnets6)
            dhcp = [s for s in subnets if s.get("enable_dhcp") is not False]  # enable_dhcp=False: no dnsmasq
            if dhcp or dhcp6.dnsmasq_arguments(subnets6):
                self._ensure_dnsmasq(network_id, dhcp[0] if dhcp else None, subnets6)
                if dhcp and dhcp[0].get("dhcp_server"):  # a DHCP port known only now (an older host's namespace)
                    self._write_file(network_id, "opts", dhcp_options(dhcp[0], subnets6))
                self._write_hosts(network_id, self._ports(network_id))
                self._reload_dhcp(network_id)  # dnsmasq re-reads its hosts and options files

    def unplug(self, vif: dict) -> None:
        """Forget ``vif``; the last port of a network takes the network's dataplane with it."""
        network_id = vif["network_id"]
        with self._lock:
            ports = self._ports(network_id)
            ports.pop(vif["port_id"], None)
            _ip("link", "del", tap_name(vif["port_id"]), check=False)  # libvirt normally removed it already
            if self.firewall is not None:
                self.firewall.remove_port(vif["port_id"])
            if ports:
                (self._dir(network_id) / "ports.json").write_text(json.dumps(ports))
                self._write_hosts(network_id, ports)
                self._reload_dhcp(network_id)
            else:
                self._teardown(network_id)

    def _subnets6(self, network_id: str, seen: list[dict]) -> list[dict]:
        """The network's IPv6 subnets its ports here have shown so far (kept with the network: a port whose
        addresses leave one out must not take it from the others)."""
        path = self._dir(network_id) / "subnets6.json"
        known = {s["id"]: s for s in (json.loads(path.read_text()) if path.exists() else [])}
        if any(known.get(s["id"]) != s for s in seen):
            known.update({s["id"]: s for s in seen})
            path.write_text(json.dumps(list(known.values())))
        return list(known.values())

    def _ports(self, network_id: str) -> dict:
        path = self._dir(network_id) / "ports.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # ------------------------------------------------------------------ bridge and namespace

    def _ensure_bridge(self, network_id: str) -> None:
        ensure_bridge(self.state_dir, self.bridge(network_id))

    def _ensure_gateway(self, network_id: str, subnet: dict | None, subnets6: list[dict] = ()) -> None:
        """The namespace on the bridge holding this host's DHCP address on the IPv4 subnet (its gateway address
        when it has no DHCP port) and the IPv6 subnets' gateway addresses, and the metadata API in it."""
        namespace = self.namespace(network_id)
        outside, inside = self.veth(network_id)
        if not _namespace_exists(namespace):
            _ip("netns", "add", namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")
        if not _link_exists(outside):
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge(network_id), "up")
        present = _ip("-n", namespace, "-o", "addr", "show", "dev", inside).stdout
        if subnet is not None:
            network = ipaddress.ip_network(subnet["cidr"])
            own = subnet.get("dhcp_server") or subnet.get("gateway_ip") or str(next(network.hosts()))
            address = f"{own}/{network.prefixlen}"
            held = {word for word in present.split() if "/" in word and word[0].isdigit() and "." in word}
            for other in sorted(held - {address}):
                if ipaddress.ip_interface(other).network == network:  # the gateway, taken before routers held it
                    _ip("-n", namespace, "addr", "del", other, "dev", inside, check=False)
            if address not in held:
                _ip("-n", namespace, "addr", "add", address, "dev", inside)
        for address in dhcp6.interface_addresses(subnets6):
            if f"{address} " not in present:  # nodad: usable at once, for dnsmasq to serve its prefix
                _ip("-n", namespace, "addr", "add", address, "dev", inside, "nodad")
        _ip("-n", namespace, "link", "set", inside, "up")
        if self.metadata and self._pid(network_id, "metadata.pid", METADATA_MODULE.encode()) is None:
            self._start_metadata(network_id)

    def _ensure_dnsmasq(self, network_id: str, subnet: dict | None, subnets6: list[dict] = ()) -> None:
        """dnsmasq for the first IPv4 subnet with DHCP and the IPv6 subnets; restarted when the IPv6 subnets
        it serves changed (they are command-line ranges)."""
        pid, ranges = self._dnsmasq_pid(network_id), self._dir(network_id) / "ranges6"
        wanted = "\n".join(dhcp6.dnsmasq_arguments(subnets6))
        if pid is not None and (ranges.read_text() if ranges.exists() else "") != wanted:
            self._stop_dnsmasq(pid)
            pid = None
        if pid is None:
            self._start_dnsmasq(network_id, self.veth(network_id)[1], subnet, subnets6)
            ranges.write_text(wanted)

    def _start_metadata(self, network_id: str) -> None:
        """The metadata API on 169.254.169.254:80 in the namespace (guests reach it by DHCP's route to it)."""
        namespace = self.namespace(network_id)
        if METADATA_ADDRESS not in _ip("-n", namespace, "-o", "addr", "show", "dev", "lo").stdout:
            _ip("-n", namespace, "addr", "add", f"{METADATA_ADDRESS}/32", "dev", "lo")
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", METADATA_MODULE,
             str(self.state_dir.parent), network_id],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        (self._dir(network_id) / "metadata.pid").write_text(str(process.pid))
        self._children[network_id] = process  # reaped on teardown

    def _start_dnsmasq(self, network_id: str, interface: str, subnet: dict | None, subnets6: list[dict]) -> None:
        directory = self._dir(network_id)
        hosts, opts, pid = directory / "hosts", directory / "opts", directory / "dnsmasq.pid"
        hosts.touch()
        ranges = dhcp6.dnsmasq_arguments(subnets6)
        if subnet is not None:
            network = ipaddress.ip_network(subnet["cidr"])
            ranges.insert(0, f"--dhcp-range={network.network_address},static,{network.netmask},86400s")
        opts.write_text(dhcp_options(subnet, subnets6))
        for path in (directory, hosts, opts):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        command = ["ip", "netns", "exec", self.namespace(network_id), self.dnsmasq,
                   "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=0", "--bind-interfaces",
                   f"--interface={interface}", "--except-interface=lo", f"--pid-file={pid}",
                   f"--dhcp-hostsfile={hosts}", f"--dhcp-optsfile={opts}", "--dhcp-authoritative",
                   "--leasefile-ro", "--dhcp-no-override", "--user=root",  # reads its files under the state dir
                   *ranges]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise DataplaneError(f"dnsmasq for network {network_id} did not start: {result.stderr.strip()}")
        for _ in range(50):
            if self._dnsmasq_pid(network_id):
                return
            time.sleep(0.05)
        raise DataplaneError(f"dnsmasq for network {network_id} wrote no pid file")

    def _dnsmasq_pid(self, network_id: str) -> int | None:
        path = self._dir(network_id) / "dnsmasq.pid"
        return self._pid(network_id, "dnsmasq.pid", str(path).encode())

    def _pid(self, network_id: str, pid_file: str, marker: bytes) -> int | None:
        """The pid in ``pid_file`` when that process is alive and is ours (its command line has ``marker``)."""
        try:
            pid = int((self._dir(network_id) / pid_file).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if marker in cmdline and network_id.encode() in cmdline else None

    def _write_hosts(self, network_id: str, ports: dict) -> None:
        lines = [f"{port['mac']},{ip}" for port in ports.values() for ip in port["ips"]]
        lines += [f"{port['mac']},[{ip}]" for port in ports.values() for ip in port.get("ips6", [])]
        self._write_file(network_id, "hosts", "\n".join(lines) + "\n")

    def _write_file(self, network_id: str, name: str, text: str) -> None:
        """One of dnsmasq's files, replaced whole (it may be reading it)."""
        path = self._dir(network_id) / name
        partial = path.with_suffix(".new")
        partial.write_text(text)
        os.chmod(partial, 0o644)
        partial.rename(path)

    def _reload_dhcp(self, network_id: str) -> None:
        pid = self._dnsmasq_pid(network_id)
        if pid:
            os.kill(pid, signal.SIGHUP)

    @staticmethod
    def _stop_dnsmasq(pid: int) -> None:
        """Stop a dnsmasq and wait until it let go of its DHCP sockets."""
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _running(pid):
                return
            time.sleep(0.02)

    def _teardown(self, network_id: str) -> None:
        pids = [pid for pid in (self._dnsmasq_pid(network_id),
                                self._pid(network_id, "metadata.pid", METADATA_MODULE.encode())) if pid]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        child = self._children.pop(network_id, None)
        if child is not None and child.pid in pids:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(2)
        for _ in range(100):
            if not any(_running(pid) for pid in pids):
                break
            time.sleep(0.02)
        _ip("link", "del", self.veth(network_id)[0], check=False)
        if _namespace_exists(self.namespace(network_id)):
            _ip("netns", "del", self.namespace(network_id), check=False)
        shutil.rmtree(self._dir(network_id), ignore_errors=True)
        release_bridge(self.state_dir, network_id, self.bridge(network_id))  # unless a router's leg is on it
