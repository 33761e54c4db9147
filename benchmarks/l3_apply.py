"""How long the L3 agent's dataplane takes to apply one floating IP change to a router (root, nftables).

    python benchmarks/l3_apply.py [--floating-ips 200] [--rounds 20]

Builds a router namespace with an interface and a gateway on scratch bridges (``routers.RouterDataplane``,
as the L3 agent does), gives it N floating IPs, then times ``apply`` for one association added and taken
off again, N times each, and prints the median and spread. It is the dataplane's part of "a change applies
within a second"; the agent's reading of the router through the network API comes on top (a few requests).
"""
from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kilonova.compute.virt.libvirt.dataplane import ensure_bridge, release_bridge  # noqa: E402
from kilonova.compute.virt.libvirt.routers import RouterDataplane  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floating-ips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataplane = RouterDataplane(Path(tmp) / "_networks")
        private, public = str(uuid.uuid4()), str(uuid.uuid4())
        for network in (private, public):
            ensure_bridge(dataplane.state_dir, dataplane.bridge(network))
        external = list(ipaddress.ip_network("100.64.0.0/16").hosts())
        router = {
            "id": str(uuid.uuid4()), "enable_snat": True, "routes": [],
            "interfaces": [{"port_id": str(uuid.uuid4()), "network_id": private, "mac": "fa:16:3e:00:00:01",
                            "addresses": ["10.123.0.1/16"]}],
            "gateway": {"port_id": str(uuid.uuid4()), "network_id": public, "mac": "fa:16:3e:00:00:02",
                        "addresses": [f"{external[0]}/16"], "gateway_ip": str(external[-1]), "prefixlen": 16},
            "floating_ips": [{"floating": str(external[i + 1]), "fixed": f"10.123.{i // 250}.{i % 250 + 2}"}
                             for i in range(args.floating_ips)],
        }
        try:
            started = time.perf_counter()
            dataplane.apply(router)
            first = time.perf_counter() - started
            added, removed = [], []
            extra = {"floating": str(external[args.floating_ips + 1]), "fixed": "10.123.200.200"}
            for _ in range(args.rounds):
                router["floating_ips"].append(extra)
                started = time.perf_counter()
                dataplane.apply(router)
                added.append(time.perf_counter() - started)
                router["floating_ips"].pop()
                started = time.perf_counter()
                dataplane.apply(router)
                removed.append(time.perf_counter() - started)
        finally:
            dataplane.remove(router["id"])
            for network in (private, public):
                release_bridge(dataplane.state_dir, network, dataplane.bridge(network))
    print(f"router with {args.floating_ips} floating IPs: first apply {first * 1000:.0f} ms")
    for label, times in (("associate one", added), ("disassociate one", removed)):
        print(f"{label}: median {statistics.median(times) * 1000:.0f} ms, "
              f"min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f} ({len(times)} rounds)")


if __name__ == "__main__":
    main()
