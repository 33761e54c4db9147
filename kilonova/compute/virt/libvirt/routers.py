"""Routers on one host's dataplane: a network namespace per router that routes and NATs, as Neutron's L3 agent.

For router R (``S`` = the dataplane's 4-digit scope, see ``dataplane.scope_of``):

* namespace ``kilonova-router-R-S`` (Neutron's ``qrouter-R``) with IPv4 forwarding on;
* a leg per interface port P: veth ``qr-<P[:11]>`` in the namespace (the port's MAC and addresses, e.g. the
  subnet's gateway 10.0.0.1/24), its peer ``krq-<P[:7]>S`` on the network's bridge ``kbr-*``;
* the external gateway port G: ``qg-<G[:11]>`` in the namespace with its external address and, as /32, every
  floating IP the router carries; peer ``krg-<G[:7]>S`` on the external network's bridge; the default route
  via the external subnet's gateway;
* each IPv4 address a leg takes on (a floating IP too) announced by gratuitous ARP (``arping``);
* extra routes (``routes``) as ``proto static`` routes;
* nftables table ``ip kilonova`` (replaced whole, atomically, on each change): each floating IP DNATed to its
  fixed IP coming in and its fixed IP SNATed to it going out the gateway (a floating IP taken off has its
  connections' tracking state dropped, so none goes on through it); with ``enable_snat`` every other
  guest's traffic out the gateway SNATed to the gateway's address; traffic between the router's subnets is
  routed as it is, except a guest reaching another guest's floating IP (hairpin), masqueraded so that the
  answer comes back through the router.

The host side of an external network's bridge can carry that network's gateway address (DevStack's
``br-ex`` holds 172.24.4.1), so the host reaches floating IPs: ``ensure_external``.

Bridges are shared with the ports' dataplane (``dataplane.py``): whoever needs one makes it, and it goes when
the last of its users leaves (``dataplane.release_bridge``).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from kilonova.compute.virt.libvirt.dataplane import (DataplaneError, _ip, _link_exists, bridge_name, ensure_bridge,
                                                     release_bridge, scope_of)

LOG = logging.getLogger(__name__)
PREFIX = "kilonova-router-"
TABLE = "kilonova"
HAIRPIN_MARK = "0x4b4e"  # "KN": a connection from inside to a floating IP, masqueraded on its way back in


class RouterDataplane:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir          # the ports' dataplane's directory (<instances_path>/_networks)
        self.scope = scope_of(state_dir)
        self._lock = threading.Lock()

    def namespace(self, router_id: str) -> str:
        return f"{PREFIX}{router_id}-{self.scope}"

    def bridge(self, network_id: str) -> str:
        return bridge_name(network_id, self.scope)

    def host_end(self, kind: str, port_id: str) -> str:
        return f"kr{'g' if kind == 'qg' else 'q'}-{port_id[:7]}{self.scope}"

    def routers(self) -> set[str]:
        """The routers that have a namespace here (of this scope)."""
        suffix = f"-{self.scope}"
        found = set()
        for path in Path("/run/netns").glob(f"{PREFIX}*{suffix}"):
            router_id = path.name[len(PREFIX):-len(suffix)]
            if len(router_id) == 36:
                found.add(router_id)
        return found

    # ------------------------------------------------------------------ converge

    def apply(self, router: dict[str, Any]) -> None:
        """Make router ``router`` (as ``l3_agent.desired`` describes it) what it is here."""
        with self._lock:
            namespace = self.namespace(router["id"])
            if not Path("/run/netns", namespace).exists():
                _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _sysctl(namespace, "net.ipv4.ip_forward", "1")
            legs = [("qr", leg) for leg in router["interfaces"]]
            gateway = router.get("gateway")
            if gateway:
                legs.append(("qg", {**gateway, "addresses": [*gateway["addresses"], *(
                    f"{fip['floating']}/32" for fip in router["floating_ips"])]}))
            observed = _devices(namespace)
            wanted = {f"{kind}-{leg['port_id'][:11]}" for kind, leg in legs}
            for name in sorted(set(observed) - wanted):
                if name[:3] in ("qr-", "qg-"):
                    self._remove_leg(namespace, name)
            for kind, leg in legs:
                self._leg(namespace, kind, leg, observed.get(f"{kind}-{leg['port_id'][:11]}"))
            self._routes(namespace, router, gateway)
            _nft(namespace, ruleset(router))
            wanted_floating = {fip["floating"] for fip in router["floating_ips"]}
            for name, device in observed.items():
                if name.startswith("qg-"):
                    for address in device["addresses"]:
                        if address.endswith("/32") and address[:-3] not in wanted_floating:
                            _forget_connections(namespace, address[:-3])

    def remove(self, router_id: str) -> None:
        """The router's namespace, its legs and the bridges only it used."""
        with self._lock:
            namespace = self.namespace(router_id)
            if not Path("/run/netns", namespace).exists():
                return
            for name in _devices(namespace):
                if name[:3] in ("qr-", "qg-"):
                    self._remove_leg(namespace, name)
            _ip("netns", "del", namespace, check=False)

    def _leg(self, namespace: str, kind: str, leg: dict[str, Any], observed: dict | None) -> None:
        inside, outside = f"{kind}-{leg['port_id'][:11]}", self.host_end(kind, leg["port_id"])
        bridge = self.bridge(leg["network_id"])
        ensure_bridge(self.state_dir, bridge)
        if observed is None or not _link_exists(outside):
            if observed is not None:
                _ip("-n", namespace, "link", "del", inside, check=False)
            _ip("link", "del", outside, check=False)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
            observed = {"mac": "", "addresses": set(), "network": leg["network_id"]}
        if observed["mac"] != leg["mac"].lower():
            _ip("-n", namespace, "link", "set", inside, "address", leg["mac"])
        _ip("link", "set", outside, "master", bridge, "up")
        wanted = set(leg["addresses"])
        commands = [f"addr del {address} dev {inside}" for address in sorted(observed["addresses"] - wanted)]
        commands += [f"addr add {address} dev {inside}" for address in sorted(wanted - observed["addresses"])]
        _ip_batch(namespace, [*commands, f"link set {inside} up"])  # one process for 200 floating IPs too
        _announce(namespace, inside, sorted(wanted - observed["addresses"]))
        (self.state_dir / ".router-legs").mkdir(parents=True, exist_ok=True)
        (self.state_dir / ".router-legs" / outside).write_text(leg["network_id"])

    def _remove_leg(self, namespace: str, inside: str) -> None:
        kind, port_prefix = inside[:2], inside[3:]
        outside = self.host_end(kind, port_prefix)
        record = self.state_dir / ".router-legs" / outside
        network_id = record.read_text().strip() if record.exists() else None
        _ip("-n", namespace, "link", "del", inside, check=False)  # takes its peer on the bridge with it
        record.unlink(missing_ok=True)
        if network_id:
            release_bridge(self.state_dir, network_id, self.bridge(network_id))

    def _routes(self, namespace: str, router: dict[str, Any], gateway: dict | None) -> None:
        if gateway and gateway.get("gateway_ip"):
            _ip("-n", namespace, "route", "replace", "default", "via", gateway["gateway_ip"],
                "dev", f"qg-{gateway['port_id'][:11]}")
        else:
            _ip("-n", namespace, "route", "del", "default", check=False)
        shown = json.loads(_ip("-n", namespace, "-j", "route", "show", "proto", "static").stdout or "[]")
        observed = {(r["dst"], r.get("gateway")) for r in shown}
        wanted = {(str(ipaddress.ip_network(r["destination"])).removesuffix("/32"), r["nexthop"])
                  for r in router.get("routes") or [] if ":" not in r["destination"]}
        for destination, nexthop in sorted(observed - wanted, key=str):
            _ip("-n", namespace, "route", "del", destination, *(("via", nexthop) if nexthop else ()), check=False)
        for destination, nexthop in sorted(wanted - observed):
            result = _ip("-n", namespace, "route", "replace", destination, "via", nexthop, "proto", "static",
                         check=False)
            if result.returncode != 0:  # a nexthop no leg reaches (yet): the next change tries again
                LOG.warning("router %s: route %s via %s: %s", router["id"], destination, nexthop,
                            result.stderr.strip())

    # ------------------------------------------------------------------ the outside

    def ensure_external(self, network_id: str, gateway_cidr: str | None) -> None:
        """The host side of external network ``network_id``'s bridge with ``gateway_cidr`` (e.g. 172.24.4.1/24),
        unless another interface of the host has an address in that subnet already (another cloud's)."""
        if not gateway_cidr:
            return
        with self._lock:
            bridge = self.bridge(network_id)
            if not _link_exists(bridge):
                return  # no router of this host is on that network
            network = ipaddress.ip_interface(gateway_cidr).network
            for entry in json.loads(_ip("-j", "addr", "show").stdout or "[]"):
                for info in entry.get("addr_info", []):
                    if info.get("family") != "inet":
                        continue
                    held = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
                    if held.network.overlaps(network):
                        if entry["ifname"] != bridge and held != ipaddress.ip_interface(gateway_cidr):
                            LOG.info("%s already has %s: %s stays without an address", entry["ifname"], held,
                                     bridge)
                        return
            _ip("addr", "add", gateway_cidr, "dev", bridge)


def _forget_connections(namespace: str, address: str) -> None:
    """Drop the router's connection tracking state of a floating IP it no longer carries (as Neutron's agent
    does): an established connection through it must not go on being NATed. Needs ``conntrack``
    (conntrack-tools); without it such connections last until their state times out."""
    if shutil.which("conntrack") is None:
        LOG.warning("conntrack is not installed: connections through floating IP %s go on until they time out",
                    address)
        return
    for direction in ("--orig-dst", "--reply-dst"):  # connections to it, and those it SNATed out
        subprocess.run(["ip", "netns", "exec", namespace, "conntrack", "-D", direction, address],
                       capture_output=True, timeout=30)


def _announce(namespace: str, device: str, addresses: list[str]) -> None:
    """Gratuitous ARP for the IPv4 addresses a router leg just took on, as Neutron's L3 agent sends: a
    neighbour that cached another MAC for the address (a floating IP moved here from another router) or
    asked for it before it existed (a failed entry) reaches it at once instead of after its cache times
    out. In the background, a few at a time: arping spends a second per announcement."""
    ipv4 = [address.split("/")[0] for address in addresses if ":" not in address]
    if not ipv4 or shutil.which("arping") is None:
        return

    def send() -> None:
        for start in range(0, len(ipv4), 16):
            senders = [subprocess.Popen(["ip", "netns", "exec", namespace, "arping", "-U", "-c", "2", "-I", device,
                                         address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                       for address in ipv4[start:start + 16]]
            for sender in senders:
                sender.wait()

    threading.Thread(target=send, name=f"garp-{device}", daemon=True).start()


def _ip_batch(namespace: str, commands: list[str]) -> None:
    result = subprocess.run(["ip", "-force", "-n", namespace, "-batch", "-"], input="\n".join(commands) + "\n",
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise DataplaneError(f"ip -n {namespace} -batch: {result.stderr.strip()}")


def _sysctl(namespace: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    subprocess.run(["ip", "netns", "exec", namespace, "sh", "-c", f"echo {value} > {path}"], check=True,
                   capture_output=True, timeout=30)


def _devices(namespace: str) -> dict[str, dict]:
    """The namespace's interfaces: name -> {mac, addresses (as "a.b.c.d/n")}."""
    devices = {}
    for entry in json.loads(_ip("-n", namespace, "-j", "addr", "show").stdout or "[]"):
        devices[entry["ifname"]] = {
            "mac": (entry.get("address") or "").lower(),
            "addresses": {f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])
                          if a.get("family") == "inet"}}
    return devices


def ruleset(router: dict[str, Any]) -> str:
    """The router's nftables table (``nft -f`` input that replaces it whole)."""
    gateway = router.get("gateway")
    prerouting, output, postrouting = [], [], []
    if gateway:
        qg = f"qg-{gateway['port_id'][:11]}"
        postrouting.append(f"meta mark {HAIRPIN_MARK} masquerade")
        postrouting.append(f'oifname != "{qg}" accept')
        for fip in router["floating_ips"]:
            floating, fixed = fip["floating"], fip["fixed"]
            prerouting.append(f'iifname "{qg}" ip daddr {floating} dnat to {fixed}')
            prerouting.append(f'iifname != "{qg}" ip daddr {floating} meta mark set {HAIRPIN_MARK} dnat to {fixed}')
            output.append(f"ip daddr {floating} dnat to {fixed}")
            postrouting.append(f"ip saddr {fixed} snat to {floating}")
        own = [a.split("/")[0] for a in gateway["addresses"] if ":" not in a]
        if router.get("enable_snat", True) and own:
            postrouting.append(f"snat to {own[0]}")

    def chain(name: str, hook: str, priority: str, rules: list[str]) -> str:
        body = "".join(f"    {rule}\n" for rule in rules)
        return (f"  chain {name} {{\n    type nat hook {hook} priority {priority}; policy accept;\n{body}  }}\n")

    return (f"table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n"
            + chain("prerouting", "prerouting", "dstnat", prerouting)
            + chain("output", "output", "-100", output)
            + chain("postrouting", "postrouting", "srcnat", postrouting) + "}\n")


def _nft(namespace: str, text: str) -> None:
    result = subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=text, capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0:
        raise DataplaneError(f"nft in {namespace}: {result.stderr.strip()}")
