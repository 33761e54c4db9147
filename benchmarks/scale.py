"""Scale benchmark: a distributed Kilonova (one process per service) over RabbitMQ and PostgreSQL/MariaDB.

Two cells; fake compute hosts spread over several compute processes (half of
the processes in cell1, half in cell2); servers booted through the compute API
by concurrent clients. Prints servers/s to ACTIVE, p50/p95 time-to-ACTIVE,
``GET /servers/detail?limit=1000`` p50 (merged across the cells), the
scheduler's decision time p50/p95 (as the conductor measured its
``select_destinations`` calls) and the resident memory of every process.

    .venv/bin/python benchmarks/scale.py [--hosts 1000] [--compute-processes 4] [--servers 5000]
                                         [--clients 8] [--db postgresql|mysql]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.distributed.cluster import Cluster  # noqa: E402
from tests.distributed.infra import Databases, rabbit_vhost  # noqa: E402

SECTIONS = ("database", "cell0_database", "api_database", "placement_database", "identity_database",
            "image_database", "network_database")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def deploy(cluster: Cluster, transport_url: str, cell2_url: str, args) -> float:
    """Operator's order: syncs and cell mappings, then the services. Returns seconds to all-ready."""
    started = time.monotonic()
    cluster.manage("api_db", "sync")
    cluster.manage("cell_v2", "map_cell0")
    cluster.manage("cell_v2", "create_cell", "--name", "cell1")
    cluster.manage("cell_v2", "create_cell", "--name", "cell2", "--database_connection", cell2_url,
                   "--transport-url", transport_url)
    cluster.manage("db", "sync")
    per_process = [args.hosts // args.compute_processes + (1 if i < args.hosts % args.compute_processes else 0)
                   for i in range(args.compute_processes)]
    computes = []
    for i, hosts in enumerate(per_process):
        cell = "cell1" if i < (args.compute_processes + 1) // 2 else "cell2"
        name = f"compute-{i + 1}"
        config = cluster.variant(name, {"compute": {"cell": cell},
                                        "fake_driver": {"hosts": str(hosts), "host_prefix": f"{cell}-p{i + 1}-h"}})
        computes.append((name, ["compute"], config))
    cluster.start_all([
        [("identity", ["identity"], None)],
        [("placement", ["placement"], None), ("image", ["image"], None), ("network", ["network"], None)],
        [("api", ["api"], None), ("conductor", ["conductor"], None), ("scheduler", ["scheduler"], None)],
    ])
    for process in [cluster.start(name, services, config) for name, services, config in computes]:
        process.wait_ready(timeout=1800)
    cluster.write_clouds_yaml()
    return time.monotonic() - started


async def boot(cluster: Cluster, args) -> dict:
    token = cluster.token()
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.60"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cluster.base_port + 1}/v2.1", headers=headers,
                                 timeout=300, limits=httpx.Limits(max_connections=64)) as client:
        net = httpx.get(f"http://127.0.0.1:{cluster.base_port + 4}/v2.0/networks?name=private",
                        headers={"X-Auth-Token": token}).json()["networks"][0]["id"]
        image = httpx.get(f"http://127.0.0.1:{cluster.base_port + 3}/v2/images?name=kilonova-tiny",
                          headers={"X-Auth-Token": token}).json()["images"][0]["id"]
        submitted: dict[str, float] = {}
        active: dict[str, float] = {}
        failed: dict[str, object] = {}
        queue = list(range(args.servers))
        started = time.monotonic()

        refused: list[str] = []

        async def creator() -> None:
            while queue:
                i = queue.pop()
                sent = time.monotonic()
                try:
                    response = await client.post("/servers", json={"server": {
                        "name": f"scale-{i}", "flavorRef": "1", "imageRef": image, "networks": [{"uuid": net}]}})
                except httpx.HTTPError as exc:
                    refused.append(repr(exc))
                    continue
                if response.status_code != 202:
                    refused.append(f"{response.status_code} {response.text[:200]}")
                    continue
                submitted[response.json()["server"]["id"]] = sent

        async def watcher() -> None:
            since = None
            while len(active) + len(failed) + len(refused) < args.servers:
                polled_at = datetime.now(timezone.utc) - timedelta(seconds=1)
                params = {"changes-since": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")} if since else {}
                response = await client.get("/servers/detail", params=params)
                since = polled_at
                now = time.monotonic()
                for server in response.json()["servers"]:
                    if server["status"] == "ACTIVE" and server["id"] not in active:
                        active[server["id"]] = now
                    elif server["status"] == "ERROR" and server["id"] not in failed:
                        failed[server["id"]] = server.get("fault")
                if now - started > args.timeout:
                    raise RuntimeError(f"timed out: {len(active)} ACTIVE, {len(failed)} ERROR")
                await asyncio.sleep(0.2)

        watch = asyncio.create_task(watcher())
        await asyncio.gather(*(creator() for _ in range(args.clients)))
        await watch
        elapsed = max(active.values()) - started
        to_active = [active[uuid] - submitted[uuid] for uuid in active if uuid in submitted]
        detail = []
        for _ in range(args.detail_samples):
            t0 = time.perf_counter()
            response = await client.get("/servers/detail", params={"limit": 1000})
            detail.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
    return {"elapsed": elapsed, "active": len(active), "failed": failed, "refused": refused,
            "to_active": to_active, "detail": detail}


async def scheduler_times(transport_url: str) -> list[float]:
    from kilonova.common.rpc import RPCClient, get_transport

    transport = get_transport(transport_url)
    try:
        stats = await RPCClient(transport, "conductor", timeout=30).call("get_stats")
    finally:
        await transport.close()
    return stats["select_destinations"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--compute-processes", type=int, default=4)
    parser.add_argument("--servers", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--db", choices=("postgresql", "mysql"), default="postgresql")
    parser.add_argument("--detail-samples", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kilonova-scale-"))
    databases = Databases(args.db)
    try:
        with rabbit_vhost("kn-scale") as transport_url:
            names = {s: s.replace("_database", "") if s != "database" else "cell1" for s in SECTIONS}
            created = databases.urls([*names.values(), "cell2"])
            cluster = Cluster(workdir, transport_url, {s: created[n] for s, n in names.items()}, extra={
                # Heartbeats of a large fake fleet are one conductor write each: keep them to ~10/s.
                "DEFAULT": {"report_interval": str(max(10, args.hosts // 10)),
                            "service_down_time": str(max(60, args.hosts // 10 * 6)), "rpc_response_timeout": "120"},
                "quota": {"instances": "-1", "cores": "-1", "ram": "-1"},
                "conductor": {"reconcile_interval": "60"},
                "fake_driver": {"spawn_delay": "0"},
            })
            try:
                ready = deploy(cluster, transport_url, created["cell2"], args)
                result = asyncio.run(boot(cluster, args))
                decisions = asyncio.run(scheduler_times(transport_url))
                rss = {name: rss_mb(p.popen.pid) for name, p in cluster.processes.items()}
            except BaseException:
                print(cluster.logs())
                raise
            finally:
                cluster.stop()
    finally:
        databases.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    to_active, detail = result["to_active"], result["detail"]
    print(f"kilonova scale benchmark: {args.hosts} fake hosts in {args.compute_processes} compute processes, "
          f"2 cells, {args.servers} servers, {args.clients} clients, RabbitMQ + {args.db}")
    print(f"  deployment ready (syncs + every process):  {ready:.1f} s")
    print(f"  servers ACTIVE / ERROR / refused by API:   {result['active']} / {len(result['failed'])} / "
          f"{len(result['refused'])}")
    print(f"  servers/s to ACTIVE:                       {result['active'] / result['elapsed']:.1f}")
    print(f"  time-to-ACTIVE p50 / p95:                  {statistics.median(to_active) * 1000:.0f} ms / "
          f"{percentile(to_active, 95) * 1000:.0f} ms")
    print(f"  GET /servers/detail?limit=1000 p50 / p95:  {statistics.median(detail):.0f} ms / "
          f"{percentile(detail, 95):.0f} ms")
    if decisions:
        print(f"  scheduler decision p50 / p95:              {statistics.median(decisions) * 1000:.0f} ms / "
              f"{percentile(decisions, 95) * 1000:.0f} ms")
    print("  resident memory (MB): " + ", ".join(f"{name} {mb:.0f}" for name, mb in rss.items()))
    if result["failed"]:
        print("  first failure:", next(iter(result["failed"].values())))
    if result["refused"]:
        print("  first refusal:", result["refused"][0])


if __name__ == "__main__":
    main()
