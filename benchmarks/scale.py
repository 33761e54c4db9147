"""Scale benchmark: a distributed Kilonova (one process per service) over RabbitMQ and PostgreSQL/MariaDB.

Two cells; fake compute hosts spread over several compute processes (half of
the processes in cell1, half in cell2); servers booted through the compute API
by concurrent clients. Prints servers/s to ACTIVE, p50/p95 time-to-ACTIVE,
``GET /servers/detail?limit=1000`` p50 (merged across the cells), the
scheduler's decision time p50/p95 (as the conductor measured its
``select_destinations`` calls) and the resident memory of every process.

    .venv/bin/python benchmarks/scale.py [--hosts 1000] [--compute-processes 4] [--servers 5000]
                                         [--clients 8] [--db postgresql|mysql]
                                         [--schedulers 2] [--conductors 2] [--shared-broker]

By default the deployment gets a RabbitMQ node of its own (another node of the
machine's RabbitMQ installation, on free ports, deleted afterwards): the
distributed tests restart the machine's broker, which would disturb a run.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.distributed.cluster import Cluster  # noqa: E402
from tests.cloud import free_port_block  # noqa: E402
from tests.distributed.infra import Databases, private_broker, rabbit_vhost  # noqa: E402

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


@contextlib.contextmanager
def private_postgres(workdir: Path):
    """A throw-away PostgreSQL server (initdb as the postgres user); yields a function: names -> URLs.

    The machine's server allows 100 connections, which other users of the machine share; a
    deployment of a dozen processes with connection pools needs more.
    """
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    base = workdir / "postgres"
    base.mkdir()
    workdir.chmod(0o755)
    shutil.chown(base, "postgres")
    data = base / "data"
    port = free_port_block(1)

    def as_postgres(command: str) -> None:
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", command], check=True, timeout=120,
                       capture_output=True)

    as_postgres(f"{bindir}/initdb -D {data} -A trust -U postgres")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=600 -c shared_buffers=256MB"
    as_postgres(f"{bindir}/pg_ctl -D {data} -l {base}/postgres.log -w -o '{options}' start")

    def urls(names: list[str]) -> dict[str, str]:
        args = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres", "-q"]
        for name in names:
            args += ["-c", f'CREATE DATABASE "{name}"']
        subprocess.run(args, check=True, capture_output=True, timeout=120)
        return {name: f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}" for name in names}

    try:
        yield urls
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            as_postgres(f"{bindir}/pg_ctl -D {data} -m immediate stop")


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
        [("api", ["api"], None)]
        + [(f"conductor-{i + 1}", ["conductor"], cluster.variant(f"conductor-{i + 1}",
                                                                 {"DEFAULT": {"host": f"conductor-{i + 1}"}}))
           for i in range(args.conductors)]
        + [(f"scheduler-{i + 1}", ["scheduler"], cluster.variant(f"scheduler-{i + 1}",
                                                                 {"DEFAULT": {"host": f"scheduler-{i + 1}"}}))
           for i in range(args.schedulers)],
    ])
    for process in [cluster.start(name, services, config) for name, services, config in computes]:
        process.wait_ready(timeout=1800)
    cluster.write_clouds_yaml()
    return time.monotonic() - started


def scale_network(cluster: Cluster, token: str, servers: int) -> str:
    """A shared network with a subnet big enough for every server (the default one is a /24)."""
    network_api = f"http://127.0.0.1:{cluster.base_port + 4}/v2.0"
    headers = {"X-Auth-Token": token}
    prefix = min(24, 32 - max(servers + 16, 256).bit_length())
    network = httpx.post(f"{network_api}/networks", headers=headers,
                         json={"network": {"name": "scale", "shared": True}}).json()["network"]
    response = httpx.post(f"{network_api}/subnets", headers=headers, json={"subnet": {
        "name": "scale-subnet", "network_id": network["id"], "ip_version": 4, "cidr": f"10.64.0.0/{prefix}"}})
    assert response.status_code == 201, response.text
    # Every server's port counts against its project's port quota (Neutron's default: 500).
    response = httpx.put(f"{network_api}/quotas/{network['project_id']}", headers=headers,
                         json={"quota": {"port": -1}})
    assert response.status_code == 200, response.text
    return network["id"]


async def boot(cluster: Cluster, args) -> dict:
    token = cluster.token()
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.60"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cluster.base_port + 1}/v2.1", headers=headers,
                                 timeout=300, limits=httpx.Limits(max_connections=64)) as client:
        net = scale_network(cluster, token, args.servers)
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


async def scheduler_times(transport_url: str, conductors: int) -> list[float]:
    """Every conductor's measurements (a call reaches one of them: ask until each has answered)."""
    from kilonova.common.rpc import RPCClient, get_transport

    transport = get_transport(transport_url)
    seen: dict[tuple, list[float]] = {}
    try:
        for _ in range(conductors * 20):
            stats = await RPCClient(transport, "conductor", timeout=30).call("get_stats")
            seen.setdefault(tuple(stats["select_destinations"][:5]), stats["select_destinations"])
            if len(seen) >= conductors:
                break
    finally:
        await transport.close()
    return [t for times in seen.values() for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--compute-processes", type=int, default=4)
    parser.add_argument("--servers", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--db", choices=("postgresql", "mysql"), default="postgresql")
    parser.add_argument("--detail-samples", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--conductors", type=int, default=2)
    parser.add_argument("--shared-broker", action="store_true",
                        help="a vhost on the machine's RabbitMQ instead of a node of the run's own")
    parser.add_argument("--shared-db", action="store_true",
                        help="databases on the machine's PostgreSQL instead of a server of the run's own")
    args = parser.parse_args()
    # A run stopped with SIGTERM (e.g. by timeout) still stops its processes and drops its databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workdir = Path(tempfile.mkdtemp(prefix="kilonova-scale-"))
    databases = Databases(args.db) if args.shared_db or args.db == "mysql" else None
    try:
        with contextlib.ExitStack() as stack:
            transport_url = stack.enter_context(
                rabbit_vhost("kn-scale") if args.shared_broker else private_broker(workdir))
            make_dbs = databases.urls if databases else stack.enter_context(private_postgres(workdir))
            names = {s: s.replace("_database", "") if s != "database" else "cell1" for s in SECTIONS}
            created = make_dbs([*names.values(), "cell2"])
            cluster = Cluster(workdir, transport_url, {s: created[n] for s, n in names.items()}, extra={
                # Each compute process batches its hosts' heartbeats: Nova's default interval. A down time
                # above Nova's 60 s: the machine is shared, and a report can wait behind a burst of builds.
                "DEFAULT": {"report_interval": "10", "service_down_time": "120", "rpc_response_timeout": "120"},
                # Equally weighed hosts (a fresh fleet): spread concurrent requests over them.
                "filter_scheduler": {"shuffle_best_same_weighed_hosts": "true"},
                "quota": {"instances": "-1", "cores": "-1", "ram": "-1"},
                "conductor": {"reconcile_interval": "60"},
                "fake_driver": {"spawn_delay": "0"},
            })
            try:
                ready = deploy(cluster, transport_url, created["cell2"], args)
                result = asyncio.run(boot(cluster, args))
                decisions = asyncio.run(scheduler_times(transport_url, args.conductors))
                rss = {name: rss_mb(p.popen.pid) for name, p in cluster.processes.items()}
            except BaseException:
                print(cluster.logs())
                raise
            finally:
                cluster.stop()
    finally:
        if databases:
            databases.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    to_active, detail = result["to_active"], result["detail"]
    print(f"kilonova scale benchmark: {args.hosts} fake hosts in {args.compute_processes} compute processes, "
          f"2 cells, {args.servers} servers, {args.clients} clients, {args.schedulers} schedulers, "
          f"{args.conductors} conductors, RabbitMQ + {args.db}")
    print(f"  load average at the end (1/5/15 min):      {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
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
