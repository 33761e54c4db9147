"""Lifecycle benchmark: N servers on H fake hosts through resize+confirm, cold migration, live migration,
evacuation, rebuild and shelve+unshelve, through the compute REST API.

For each operation it prints operations/s (all N servers, from the first request to the last server back
in its end state), the p50/p95 time of one operation, and the cloud's CPU per operation (less what the
idle cloud burns). Every server counted is checked in the state the operation promises (ACTIVE, on
another host after a move, with the new flavor after a resize, ...). At the end the cloud is restarted
(evacuated hosts clean up then) and `kilonova manage placement audit` must find nothing leaked.

    .venv/bin/python benchmarks/lifecycle.py [--servers 200] [--hosts 10] [--concurrency 16] [--only resize,...]
        [--profile PREFIX]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.boot import cpu_seconds, percentile, start_profiler, stop_profiler, token  # noqa: E402
from tests.cloud import new_cloud  # noqa: E402

MICROVERSION = "2.91"
OPERATIONS = ("resize", "migrate", "live-migrate", "evacuate", "rebuild", "shelve")


class Failed(RuntimeError):
    pass


class Watcher:
    """One poller for every server: GET /servers/detail?changes-since=... (as the boot benchmark does), so
    watching 200 servers costs the cloud one small request per interval, not 200."""

    def __init__(self, client: httpx.AsyncClient, interval: float):
        self.client = client
        self.interval = interval
        self.servers: dict[str, dict] = {}
        self.changed = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _poll(self) -> None:
        since = None
        while True:
            polled_at = datetime.now(timezone.utc) - timedelta(seconds=1)
            params = {"changes-since": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")} if since else {}
            response = await self.client.get("/servers/detail", params=params)
            if response.status_code != 200:
                raise Failed(f"GET /servers/detail: {response.status_code} {response.text[:200]}")
            since = polled_at
            async with self.changed:
                for shown in response.json()["servers"]:
                    self.servers[shown["id"]] = shown
                self.changed.notify_all()
            await asyncio.sleep(self.interval)


WATCHER: Watcher | None = None


async def wait_until(client: httpx.AsyncClient, uuid: str, check: Callable[[dict], bool], what: str,
                     timeout: float = 300) -> dict:
    """Wait until ``check`` holds for the server as the watcher last saw it; ERROR (or the deadline) fails."""
    assert WATCHER is not None
    deadline = time.monotonic() + timeout
    async with WATCHER.changed:
        while True:
            shown = WATCHER.servers.get(uuid)
            if shown is not None and check(shown):
                return shown
            if shown is not None and shown["status"] == "ERROR":
                raise Failed(f"server {uuid} went to ERROR waiting for {what}: {shown.get('fault')}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failed(f"server {uuid} did not reach {what}: {shown and shown['status']}")
            try:
                await asyncio.wait_for(WATCHER.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


async def action(client: httpx.AsyncClient, uuid: str, body: dict, expect=(202, 200)) -> None:
    response = await client.post(f"/servers/{uuid}/action", json=body)
    if response.status_code not in expect:
        raise Failed(f"{next(iter(body))} of {uuid}: {response.status_code} {response.text[:300]}")


def host_of(shown: dict) -> str:
    return shown["OS-EXT-SRV-ATTR:host"]


def active_idle(shown: dict) -> bool:
    return shown["status"] == "ACTIVE" and shown["OS-EXT-STS:task_state"] is None


async def resize_and_confirm(client, srv: dict) -> None:
    target = "2" if srv["flavor"] == "1" else "1"
    await action(client, srv["id"], {"resize": {"flavorRef": target}})
    await wait_until(client, srv["id"], lambda s: s["status"] == "VERIFY_RESIZE", "VERIFY_RESIZE")
    await action(client, srv["id"], {"confirmResize": None}, expect=(204,))
    shown = await wait_until(client, srv["id"], active_idle, "ACTIVE after confirm")
    flavor = await client.get(f"/flavors/{target}")
    if shown["flavor"]["original_name"] != flavor.json()["flavor"]["name"]:
        raise Failed(f"server {srv['id']} has flavor {shown['flavor']} after its resize to {target}")
    srv["flavor"] = target
    srv["host"] = host_of(shown)  # a resize moves the server too


async def migrate_and_confirm(client, srv: dict) -> None:
    before = srv["host"]
    await action(client, srv["id"], {"migrate": None})
    await wait_until(client, srv["id"], lambda s: s["status"] == "VERIFY_RESIZE", "VERIFY_RESIZE")
    await action(client, srv["id"], {"confirmResize": None}, expect=(204,))
    shown = await wait_until(client, srv["id"], active_idle, "ACTIVE after confirm")
    if host_of(shown) == before:
        raise Failed(f"server {srv['id']} is still on {before} after its cold migration")
    srv["host"] = host_of(shown)


async def live_migrate(client, srv: dict) -> None:
    before = srv["host"]
    await action(client, srv["id"], {"os-migrateLive": {"host": None, "block_migration": "auto"}})
    shown = await wait_until(client, srv["id"], lambda s: active_idle(s) and host_of(s) != before,
                             "ACTIVE on another host")
    srv["host"] = host_of(shown)


async def evacuate(client, srv: dict) -> None:
    before = srv["host"]
    await action(client, srv["id"], {"evacuate": {}})
    shown = await wait_until(client, srv["id"], lambda s: active_idle(s) and host_of(s) != before,
                             "ACTIVE on another host after evacuation")
    srv["host"] = host_of(shown)


async def rebuild(client, srv: dict) -> None:
    await action(client, srv["id"], {"rebuild": {"imageRef": srv["image"], "name": srv["name"] + "-r"}})
    await wait_until(client, srv["id"], lambda s: active_idle(s) and s["name"] == srv["name"] + "-r",
                     "ACTIVE after rebuild")
    srv["name"] += "-r"


async def shelve_and_unshelve(client, srv: dict) -> None:
    await action(client, srv["id"], {"shelve": None})
    await wait_until(client, srv["id"], lambda s: s["status"] == "SHELVED_OFFLOADED" and
                     s["OS-EXT-STS:task_state"] is None, "SHELVED_OFFLOADED")
    await action(client, srv["id"], {"unshelve": None})
    shown = await wait_until(client, srv["id"], active_idle, "ACTIVE after unshelve")
    srv["host"] = host_of(shown)


async def run_phase(cloud, client, name: str, one, servers: list[dict], concurrency: int,
                    profile: str | None = None) -> dict:
    idle_from = cpu_seconds(cloud.proc.pid)
    await asyncio.sleep(1)
    idle_rate = cpu_seconds(cloud.proc.pid) - idle_from
    profiler = start_profiler(profile, cloud.proc.pid)
    queue = list(servers)
    durations: list[float] = []
    cpu_before = cpu_seconds(cloud.proc.pid)
    started = time.monotonic()

    async def worker() -> None:
        while queue:
            srv = queue.pop()
            t0 = time.monotonic()
            await one(client, srv)
            durations.append(time.monotonic() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(cloud.proc.pid) - cpu_before - idle_rate * elapsed
    stop_profiler(profiler)
    result = {"ops": len(servers), "per_s": len(servers) / elapsed, "p50": statistics.median(durations),
              "p95": percentile(durations, 95), "cpu_ms": cpu / len(servers) * 1000}
    print(f"  {name:<28} {result['per_s']:7.1f} ops/s   p50 {result['p50'] * 1000:6.0f} ms   "
          f"p95 {result['p95'] * 1000:6.0f} ms   CPU {result['cpu_ms']:6.1f} ms/op", flush=True)
    return result


async def set_forced_down(client, host: str, down: bool) -> None:
    services = (await client.get("/os-services", params={"binary": "nova-compute", "host": host})).json()
    service_id = services["services"][0]["id"]
    response = await client.put(f"/os-services/{service_id}", json={"forced_down": down})
    if response.status_code != 200:
        raise Failed(f"forced_down={down} of {host}: {response.status_code} {response.text[:200]}")


async def boot(client, image: str, net: str, count: int, concurrency: int) -> list[dict]:
    ids: list[str] = []

    async def creator(indexes: list[int]) -> None:
        for i in indexes:
            response = await client.post("/servers", json={"server": {
                "name": f"life-{i}", "flavorRef": "1", "imageRef": image, "networks": [{"uuid": net}]}})
            if response.status_code != 202:
                raise Failed(f"create: {response.status_code} {response.text[:200]}")
            ids.append(response.json()["server"]["id"])

    await asyncio.gather(*(creator(list(range(k, count, concurrency))) for k in range(concurrency)))
    servers = []
    for uuid in ids:
        shown = await wait_until(client, uuid, active_idle, "ACTIVE after boot", timeout=600)
        servers.append({"id": uuid, "host": host_of(shown), "flavor": "1", "image": image, "name": shown["name"]})
    return servers


def profile_file(args, operation: str) -> str | None:
    """``--profile PREFIX``: one py-spy file per operation, PREFIX.operation."""
    return f"{args.profile}.{operation}" if args.profile else None


def audit(cloud) -> str:
    result = subprocess.run([sys.executable, "-m", "kilonova.cli", "--config", str(cloud.config_file),
                             "--state-dir", str(cloud.state_dir), "manage", "placement", "audit"],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise Failed(f"the allocation audit found problems:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "clean"


async def run(args) -> None:
    wanted = args.only.split(",") if args.only else list(OPERATIONS)
    cloud = new_cloud(hosts=args.hosts, config={
        "quota": {"instances": "-1", "cores": "-1", "ram": "-1"},
        "fake_driver": {"spawn_delay": "0", "live_migration_delay": "0"},
        "DEFAULT": {"shelved_offload_time": "0"}})
    try:
        cloud.start()
        tok, _project = await token(cloud)
        headers = {"X-Auth-Token": tok, "OpenStack-API-Version": f"compute {MICROVERSION}"}
        async with httpx.AsyncClient(base_url=cloud.urls["compute"], headers=headers, timeout=120,
                                     limits=httpx.Limits(max_connections=64)) as client:
            net = httpx.get(cloud.urls["network"] + "/v2.0/networks?name=private",
                            headers={"X-Auth-Token": tok}).json()["networks"][0]["id"]
            image = httpx.get(cloud.urls["image"] + "/v2/images?name=kilonova-tiny",
                              headers={"X-Auth-Token": tok}).json()["images"][0]["id"]
            global WATCHER
            WATCHER = Watcher(client, args.poll_interval)
            await WATCHER.start()
            servers = await boot(client, image, net, args.servers, args.concurrency)
            print(f"kilonova lifecycle benchmark: {args.servers} servers on {args.hosts} fake hosts, "
                  f"{args.concurrency} concurrent clients, load {os.getloadavg()[0]:.2f}", flush=True)
            results = {}
            forced_down: list[str] = []
            phases = {"resize": ("resize + confirm", resize_and_confirm), "migrate": ("cold migrate + confirm",
                      migrate_and_confirm), "live-migrate": ("live migrate", live_migrate),
                      "rebuild": ("rebuild", rebuild), "shelve": ("shelve(offload) + unshelve", shelve_and_unshelve)}
            for name in wanted:
                if name == "evacuate":
                    # The servers of a fifth of the hosts, whose services are forced down.
                    down = sorted({s["host"] for s in servers})[: max(1, args.hosts // 5)]
                    for host in down:
                        await set_forced_down(client, host, True)
                    victims = [s for s in servers if s["host"] in down]
                    results[name] = await run_phase(cloud, client, f"evacuate ({len(victims)} servers)", evacuate,
                                                    victims, args.concurrency, profile_file(args, name))
                    # They stay forced down: upstream refuses to force a host up before its agent came back
                    # and cleaned up its evacuated guests (the restart below).
                    forced_down.extend(down)
                    continue
                label, one = phases[name]
                results[name] = await run_phase(cloud, client, label, one, servers, args.concurrency,
                                                profile_file(args, name))
            await WATCHER.stop()
        # A restart: hosts that were evacuated remove their stale guests and release what they held.
        cloud.stop()
        cloud.start()
        print(f"  allocation audit after a restart: {audit(cloud)}")
        if forced_down:
            tok, _project = await token(cloud)
            async with httpx.AsyncClient(base_url=cloud.urls["compute"], timeout=120, headers={
                    "X-Auth-Token": tok, "OpenStack-API-Version": f"compute {MICROVERSION}"}) as client:
                for host in forced_down:
                    await set_forced_down(client, host, False)
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="seconds between the watcher's polls; each poll costs the cloud CPU too")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="sample the cloud with py-spy (from PATH) during each operation and write its raw "
                             "stacks to PREFIX.OPERATION")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(OPERATIONS)}")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
