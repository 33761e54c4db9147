"""Boot benchmark: N servers on H fake hosts through the compute REST API.

Prints servers/s to ACTIVE, p50/p95 time-to-ACTIVE, GET /servers/detail p50/p95
with every server present, `kilonova up` time-to-ready and its resident memory.

    .venv/bin/python benchmarks/boot.py [--servers 200] [--hosts 10] [--concurrency 16] [--profile FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cloud import new_cloud  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time the process has used so far (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all threads)."""
    return sum(cpu_split(pid))


def start_profiler(output: str | None, pid: int) -> subprocess.Popen | None:
    """py-spy sampling the cloud while it boots, written to ``output`` in its raw format.

    py-spy comes with the project's `bench` extra (next to this interpreter) or from PATH.
    """
    if not output:
        return None
    beside = Path(sys.executable).with_name("py-spy")
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if py_spy is None:
        sys.exit("--profile needs py-spy: pip install -e '.[bench]'")
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                             "--nonblocking", "--gil", "--output", output], stdout=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def token(cloud) -> tuple[str, str]:
    auth = cloud.auth()
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": auth["username"], "password": auth["password"], "domain": {"id": "default"}}}},
        "scope": {"project": {"name": auth["project_name"], "domain": {"id": "default"}}}}}
    async with httpx.AsyncClient() as client:
        response = await client.post(cloud.urls["identity"] + "/auth/tokens", json=body)
        response.raise_for_status()
        return response.headers["X-Subject-Token"], response.json()["token"]["project"]["id"]


async def run(args) -> None:
    cloud = new_cloud(hosts=args.hosts, config={
        "quota": {"instances": "-1", "cores": "-1", "ram": "-1"},
        "fake_driver": {"spawn_delay": "0"}})
    try:
        ready = cloud.start()
        idle_rss = rss_mb(cloud.proc.pid)
        tok, _project = await token(cloud)
        headers = {"X-Auth-Token": tok, "OpenStack-API-Version": "compute 2.60"}
        async with httpx.AsyncClient(base_url=cloud.urls["compute"], headers=headers, timeout=120,
                                     limits=httpx.Limits(max_connections=64)) as client:
            net = httpx.get(cloud.urls["network"] + "/v2.0/networks?name=private",
                            headers={"X-Auth-Token": tok}).json()["networks"][0]["id"]
            image = httpx.get(cloud.urls["image"] + "/v2/images?name=kilonova-tiny",
                              headers={"X-Auth-Token": tok}).json()["images"][0]["id"]
            submitted: dict[str, float] = {}
            active: dict[str, float] = {}
            queue = list(range(args.servers))
            # What the idle cloud burns (heartbeats, resource reports): taken off the boot's CPU figure,
            # so a slow run on a busy machine does not look costlier per boot.
            idle_from = cpu_seconds(cloud.proc.pid)
            await asyncio.sleep(2)
            idle_rate = (cpu_seconds(cloud.proc.pid) - idle_from) / 2
            profiler = start_profiler(args.profile, cloud.proc.pid)
            cpu_before = cpu_seconds(cloud.proc.pid)
            split_before = cpu_split(cloud.proc.pid)
            started = time.monotonic()

            async def creator() -> None:
                while queue:
                    i = queue.pop()
                    sent = time.monotonic()
                    response = await client.post("/servers", json={"server": {
                        "name": f"bench-{i}", "flavorRef": "1", "imageRef": image, "networks": [{"uuid": net}]}})
                    response.raise_for_status()
                    submitted[response.json()["server"]["id"]] = sent

            async def watcher() -> None:
                # Ask only for servers changed since the previous poll (Nova's changes-since filter),
                # so watching costs the cloud little while it boots.
                since = None
                while len(active) < args.servers:
                    polled_at = datetime.now(timezone.utc) - timedelta(seconds=1)
                    params = {"changes-since": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")} if since else {}
                    response = await client.get("/servers/detail", params=params)
                    if response.status_code != 200:
                        raise RuntimeError(f"GET /servers/detail: {response.status_code} {response.text}")
                    since = polled_at
                    now = time.monotonic()
                    for server in response.json()["servers"]:
                        if server["status"] == "ACTIVE" and server["id"] not in active:
                            active[server["id"]] = now
                        elif server["status"] == "ERROR":
                            raise RuntimeError(f"server {server['id']} failed: {server.get('fault')}")
                    if now - started > 600:
                        raise RuntimeError("benchmark timed out")
                    await asyncio.sleep(args.poll_interval)

            watch = asyncio.create_task(watcher())
            await asyncio.gather(*(creator() for _ in range(args.concurrency)))
            await watch
            elapsed = max(active.values()) - started
            boot_cpu = cpu_seconds(cloud.proc.pid) - cpu_before
            user_cpu, sys_cpu = (after - before for after, before in zip(cpu_split(cloud.proc.pid), split_before))
            stop_profiler(profiler)
            to_active = [active[uuid] - submitted[uuid] for uuid in active]

            detail_times = []
            for _ in range(args.detail_samples):
                t0 = time.perf_counter()
                response = await client.get("/servers/detail")
                detail_times.append((time.perf_counter() - t0) * 1000)
                assert len(response.json()["servers"]) == args.servers
        busy_rss = rss_mb(cloud.proc.pid)
        print(f"kilonova boot benchmark: {args.servers} servers, {args.hosts} fake hosts, "
              f"{args.concurrency} concurrent clients, spawn delay 0")
        print(f"  kilonova up time-to-ready:        {ready:.2f} s")
        print(f"  servers/s to ACTIVE:              {args.servers / elapsed:.1f}")
        net_cpu = boot_cpu - idle_rate * elapsed
        print(f"  cloud CPU per boot:               {net_cpu / args.servers * 1000:.1f} ms "
              f"({boot_cpu:.1f} s for {args.servers} less {idle_rate * elapsed:.1f} s idle, "
              f"load {os.getloadavg()[0]:.2f}; user {user_cpu:.1f} s, system {sys_cpu:.1f} s)")
        print(f"  time-to-ACTIVE p50 / p95:         {statistics.median(to_active) * 1000:.0f} ms / "
              f"{percentile(to_active, 95) * 1000:.0f} ms")
        print(f"  GET /servers/detail ({args.servers}) p50 / p95: {statistics.median(detail_times):.1f} ms / "
              f"{percentile(detail_times, 95):.1f} ms")
        print(f"  resident memory idle / after:     {idle_rss:.0f} MB / {busy_rss:.0f} MB")
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--detail-samples", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="seconds between the watcher's polls; each poll costs the cloud CPU too")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample the cloud with py-spy during the boots and write its raw stacks here")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
