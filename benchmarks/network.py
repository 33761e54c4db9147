"""Network API benchmark: G security groups of R rules each, then P ports in them, through the Neutron API of
an all-in-one Kilonova (issue 13: 1,000 ports in 50 groups of 20 rules).

Prints groups/s and rules/s to create them, ports/s to create the ports (each in 3 of the groups, on its own
network's subnet), the p50/p95 of one port create, GET /v2.0/ports and /v2.0/security-groups of everything,
and the cloud's CPU per port (less what the idle cloud burns). Every port is checked to be in the groups it
asked for. Then the dataplane half (root and nft; `benchmarks/firewall_apply.py`): the time the libvirt
host's firewall takes to apply one port change when it already holds --host-ports guest ports (target under
50 ms), on real tap devices and nftables tables in a network namespace.

    .venv/bin/python benchmarks/network.py [--groups 50] [--rules 20] [--ports 1000] [--concurrency 16]
                                           [--host-ports 200] [--only api|dataplane]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import firewall_apply  # noqa: E402
from benchmarks.boot import cpu_seconds, percentile, token  # noqa: E402
from tests.cloud import new_cloud  # noqa: E402


async def _timed_posts(client: httpx.AsyncClient, path: str, bodies: list[dict], concurrency: int
                       ) -> tuple[float, list[float], list[dict]]:
    """(wall seconds, per-request seconds, answers) of POSTing ``bodies`` with ``concurrency`` clients."""
    queue = list(enumerate(bodies))
    answers: list[dict] = [{}] * len(bodies)
    times: list[float] = []

    async def worker() -> None:
        while queue:
            index, body = queue.pop()
            sent = time.perf_counter()
            response = await client.post(path, json=body)
            if response.status_code != 201:
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
            times.append(time.perf_counter() - sent)
            answers[index] = response.json()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, times, answers


async def _timed_get(client: httpx.AsyncClient, path: str, samples: int = 5) -> list[float]:
    times = []
    for _ in range(samples):
        sent = time.perf_counter()
        response = await client.get(path)
        response.raise_for_status()
        times.append((time.perf_counter() - sent) * 1000)
    return times


async def run(args) -> None:
    cloud = new_cloud(hosts=1)
    try:
        cloud.start()
        tok, project = await token(cloud)
        async with httpx.AsyncClient(base_url=cloud.urls["network"], headers={"X-Auth-Token": tok}, timeout=120,
                                     limits=httpx.Limits(max_connections=64)) as client:
            quota = {"security_group": args.groups + 1, "security_group_rule": -1, "port": args.ports + 100}
            (await client.put(f"/v2.0/quotas/{project}", json={"quota": quota})).raise_for_status()
            network = (await client.post("/v2.0/networks", json={"network": {"name": "bench"}})).json()["network"]
            (await client.post("/v2.0/subnets", json={"subnet": {
                "network_id": network["id"], "cidr": "10.200.0.0/20", "ip_version": 4}})).raise_for_status()
            idle_from = cpu_seconds(cloud.proc.pid)
            await asyncio.sleep(2)
            idle_rate = (cpu_seconds(cloud.proc.pid) - idle_from) / 2

            group_time, _, created = await _timed_posts(
                client, "/v2.0/security-groups",
                [{"security_group": {"name": f"bench-{g}"}} for g in range(args.groups)], args.concurrency)
            group_ids = [answer["security_group"]["id"] for answer in created]
            rules = [{"security_group_rule": {"security_group_id": group_id, "direction": "ingress",
                                              "protocol": "tcp", "port_range_min": 1000 + r,
                                              "port_range_max": 1000 + r, "remote_ip_prefix": "10.0.0.0/8"}}
                     for group_id in group_ids for r in range(args.rules)]
            rule_time, _, _ = await _timed_posts(client, "/v2.0/security-group-rules", rules, args.concurrency)

            wanted = {p: sorted(group_ids[(p + k) % len(group_ids)] for k in range(3)) for p in range(args.ports)}
            cpu_before = cpu_seconds(cloud.proc.pid)
            port_time, port_times, answers = await _timed_posts(
                client, "/v2.0/ports",
                [{"port": {"network_id": network["id"], "name": f"bench-{p}", "security_groups": wanted[p]}}
                 for p in range(args.ports)], args.concurrency)
            port_cpu = cpu_seconds(cloud.proc.pid) - cpu_before - idle_rate * port_time
            for p, answer in enumerate(answers):
                if sorted(answer["port"]["security_groups"]) != wanted[p]:
                    raise RuntimeError(f"port {p} is in {answer['port']['security_groups']}, not {wanted[p]}")
            list_ports = await _timed_get(client, f"/v2.0/ports?network_id={network['id']}")
            list_groups = await _timed_get(client, "/v2.0/security-groups")
        print(f"kilonova network benchmark: {args.groups} security groups of {args.rules} rules, {args.ports} ports "
              f"in 3 groups each, {args.concurrency} concurrent clients")
        print(f"  security groups/s:                {args.groups / group_time:.1f}")
        print(f"  rules/s:                          {len(rules) / rule_time:.1f}")
        print(f"  ports/s:                          {args.ports / port_time:.1f}")
        print(f"  one port create p50 / p95:        {statistics.median(port_times) * 1000:.0f} ms / "
              f"{percentile(port_times, 95) * 1000:.0f} ms")
        print(f"  cloud CPU per port:               {port_cpu / args.ports * 1000:.1f} ms "
              f"(load {os.getloadavg()[0]:.2f})")
        print(f"  GET /v2.0/ports ({args.ports}) p50:        {statistics.median(list_ports):.0f} ms")
        print(f"  GET /v2.0/security-groups ({args.groups + 1}) p50: {statistics.median(list_groups):.0f} ms")
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--host-ports", type=int, default=200, help="guest ports on the dataplane's host")
    parser.add_argument("--only", choices=("api", "dataplane"))
    args = parser.parse_args()
    if args.only != "dataplane":
        asyncio.run(run(args))
    if args.only != "api":
        if os.geteuid() != 0 or not shutil.which("nft"):
            print("dataplane half skipped: it needs root and nft (Debian's nftables)")
        else:
            firewall_apply.report(firewall_apply.run(args.host_ports, args.groups, args.rules))


if __name__ == "__main__":
    main()
