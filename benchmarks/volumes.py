"""Volume benchmark: N volumes created and attached to servers on fake hosts, through the REST APIs.

Prints volumes/s created (POST to available), attaches/s (POST os-volume_attachments to the volume in-use),
p50/p95 of each, detaches/s, and the cloud's CPU per operation.

    .venv/bin/python benchmarks/volumes.py [--volumes 200] [--servers 20] [--hosts 4] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.boot import cpu_seconds, percentile  # noqa: E402
from tests.cloud import new_cloud  # noqa: E402

async def _until(check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        await asyncio.sleep(0.2)


async def _status(volumes: httpx.AsyncClient, base: str, volume_id: str, wanted: str) -> None:
    async def check() -> bool:
        return (await volumes.get(f"{base}/volumes/{volume_id}")).json()["volume"]["status"] == wanted
    await _until(check)


async def _timed(limit: asyncio.Semaphore, work) -> float:
    async with limit:
        started = time.monotonic()
        await work()
        return time.monotonic() - started


def _line(name: str, durations: list[float], wall: float, cpu: float) -> str:
    return (f"{name:<8} {len(durations) / wall:7.1f} ops/s   p50 {percentile(durations, 50) * 1000:6.0f} ms   "
            f"p95 {percentile(durations, 95) * 1000:6.0f} ms   cloud CPU {cpu / len(durations) * 1000:5.1f} ms/op")


async def run(args: argparse.Namespace, cloud) -> None:
    token = cloud.token("kilonova-demo")
    headers = {"X-Auth-Token": token}
    async with httpx.AsyncClient(base_url=cloud.urls["compute"], headers=headers, timeout=60) as compute, \
            httpx.AsyncClient(base_url=cloud.urls["block-storage"], headers=headers, timeout=60) as volumes:
        conn = cloud.sdk("kilonova-demo")
        base = f"/v3/{conn.current_project_id}"
        image, network = conn.image.find_image("kilonova-tiny").id, conn.network.find_network("private").id
        servers = []
        for i in range(args.servers):
            reply = await compute.post("/servers", json={"server": {
                "name": f"bench-{i}", "flavorRef": "1", "imageRef": image, "networks": [{"uuid": network}]}})
            servers.append(reply.json()["server"]["id"])
        for server in servers:
            async def active(server=server) -> bool:
                return (await compute.get(f"/servers/{server}")).json()["server"]["status"] == "ACTIVE"
            await _until(active)
        limit = asyncio.Semaphore(args.concurrency)
        made: list[str] = []

        async def create() -> None:
            reply = await volumes.post(f"{base}/volumes", json={"volume": {"size": 1}})
            made.append(reply.json()["volume"]["id"])
            await _status(volumes, base, made[-1], "available")

        pid = cloud.proc.pid
        cpu, wall = cpu_seconds(pid), time.monotonic()
        created = await asyncio.gather(*(_timed(limit, create) for _ in range(args.volumes)))
        print(_line("create", created, time.monotonic() - wall, cpu_seconds(pid) - cpu))

        async def attach(volume_id: str, server: str) -> None:
            reply = await compute.post(f"/servers/{server}/os-volume_attachments",
                                       json={"volumeAttachment": {"volumeId": volume_id}})
            assert reply.status_code == 200, reply.text
            await _status(volumes, base, volume_id, "in-use")

        pairs = [(v, servers[i % len(servers)]) for i, v in enumerate(made)]
        cpu, wall = cpu_seconds(pid), time.monotonic()
        attached = await asyncio.gather(*(_timed(limit, lambda p=p: attach(*p)) for p in pairs))
        print(_line("attach", attached, time.monotonic() - wall, cpu_seconds(pid) - cpu))

        async def detach(volume_id: str, server: str) -> None:
            reply = await compute.delete(f"/servers/{server}/os-volume_attachments/{volume_id}")
            assert reply.status_code == 202, reply.text
            await _status(volumes, base, volume_id, "available")

        cpu, wall = cpu_seconds(pid), time.monotonic()
        detached = await asyncio.gather(*(_timed(limit, lambda p=p: detach(*p)) for p in pairs))
        print(_line("detach", detached, time.monotonic() - wall, cpu_seconds(pid) - cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=200)
    parser.add_argument("--servers", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.volumes > args.servers * 24:
        parser.error("at most 24 volumes a server (/dev/vdb ... /dev/vdy)")
    cloud = new_cloud(hosts=args.hosts, config={"fake_driver": {"fail_spawn_hosts": ""},
                                                "quota": {"instances": "-1", "cores": "-1", "ram": "-1"},
                                                "volume": {"quota_volumes": "-1", "quota_gigabytes": "-1"}})
    cloud.start()
    try:
        print(f"{args.volumes} volumes on {args.servers} servers, {args.hosts} fake hosts, "
              f"concurrency {args.concurrency}")
        asyncio.run(run(args, cloud))
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
