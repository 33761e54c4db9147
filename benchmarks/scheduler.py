"""Scheduler benchmark: decisions per second with N fake hosts, the default filters and every weigher, and a
server group in play.

    .venv/bin/python benchmarks/scheduler.py [--sizes 1000,10000] [--decisions 200] [--group-members 50]
                                             [--keep-claims]

For each size N, on fresh SQLite databases in a temporary directory (one cell):

* N compute nodes with their nova-compute services (32 VCPU / 128 GB / 2 TB each), every 10th host in an
  aggregate ``az1`` (an availability zone) with ``cpu_weight_multiplier`` metadata, so the per-aggregate
  multipliers are read; ``group-members`` servers of an anti-affinity group on the first hosts (rules:
  ``max_server_per_host`` 2), and 5 instances in an I/O-heavy state per 100 hosts (IoOpsWeigher has work);
* the real Placement app (in this process, over ASGI, SQLite) with one provider per node;
* ``SchedulerManager.select_destinations`` for one new server at a time with the group hint, claiming in
  Placement as a build does: the full decision (pre-filters, the Placement query, host states, every
  default filter, every weigher, the claim). Each decision's claim is deleted afterwards so the fleet
  stays the same size (Placement's answer is then the same each time); ``--keep-claims`` keeps them, as
  builds do (each answer differs from the last in the usage of the host chosen last).

Reported per size: decision p50 / p95 (ms), decisions/s sequentially, CPU per decision (process time: the
scheduler's and the in-process Placement's, and the scheduler's alone: outside the Placement calls, which a
deployment's Placement serves in its own process), and the share of the wall time spent in Placement's
``GET /allocation_candidates`` and the claim. Placement returns at most
``[filter_scheduler] max_placement_results`` (1000, upstream's default) candidates, so at 10,000 hosts the
filters and weighers see 1000 of them, as upstream's do.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kilonova.common.db import Database, migrate  # noqa: E402
from kilonova.common.testing import FakeValidator  # noqa: E402
from kilonova.compute import cells as cells_mod  # noqa: E402
from kilonova.compute.api.service import API_MIGRATIONS  # noqa: E402
from kilonova.compute.db import aggregates, instances, server_groups  # noqa: E402
from kilonova.compute.db.api_models import AggregateHost, APIBase, InstanceMapping  # noqa: E402
from kilonova.compute.db.cell_models import ComputeNode, Service  # noqa: E402
from kilonova.placement.objects.models import Inventory, ResourceClass, ResourceProvider  # noqa: E402
from kilonova.config import Config  # noqa: E402

FLAVOR = {"id": "1", "name": "m1.small", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0, "swap": 0,
          "extra_specs": {}}
CPU_INFO = json.dumps({"arch": "x86_64", "supported_instances": [["x86_64", "fake", "hvm"]]})


class TimedPlacement:
    """The scheduler's Placement client on the in-process app; time spent per call kind."""

    def __init__(self, http):
        self.http = http
        self.spent = {"candidates": 0.0, "claims": 0.0}
        self.cpu = 0.0  # process time inside Placement calls (the in-process Placement's work, and the client's)

    async def _timed(self, kind, call):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return await call
        finally:
            self.spent[kind] += time.perf_counter() - start
            self.cpu += time.process_time() - cpu

    async def get(self, path, **kw):
        kind = "candidates" if path == "/allocation_candidates" else "claims"
        return await self._timed(kind, self.http.get(path, **kw))

    async def put(self, path, **kw):
        return await self._timed("claims", self.http.put(path, **kw))

    async def delete(self, path, **kw):
        return await self.http.delete(path, **kw)


def build_databases(conf, n: int, members: int) -> tuple[Database, cells_mod.Cells, str, dict[str, str]]:
    api_db = Database(conf.get("api_database", "connection"), name="bench-api")
    migrate(api_db, API_MIGRATIONS, APIBase.metadata)
    cells_mod.setup_cells(conf, api_db)
    cells = cells_mod.Cells(api_db)
    cells.load()
    cell = cells.default
    names = [f"compute{i:05d}" for i in range(n)]

    def hosts(session):
        # In bulk (10,000 hosts one by one take minutes): what services.report and compute_nodes.upsert write.
        now = datetime.utcnow()
        session.execute(sa.insert(Service), [
            {"id": i + 1, "uuid": str(uuid.uuid4()), "host": name, "binary": "nova-compute", "topic": "compute",
             "last_seen_up": now, "updated_at": now, "created_at": now} for i, name in enumerate(names)])
        nodes = {name: str(uuid.uuid4()) for name in names}
        session.execute(sa.insert(ComputeNode), [
            {"uuid": nodes[name], "service_id": i + 1, "host": name, "hypervisor_hostname": name,
             "hypervisor_type": "fake", "hypervisor_version": 1000 + i % 3, "vcpus": 32, "memory_mb": 131072,
             "local_gb": 2048, "cpu_info": CPU_INFO, "host_ip": "10.0.0.1", "created_at": now}
            for i, name in enumerate(names)])
        return nodes

    nodes = cell.db.run_sync(hosts)
    group_uuid = str(uuid.uuid4())
    member_uuids = [str(uuid.uuid4()) for _ in range(members)]

    def servers(session):
        for index, member in enumerate(member_uuids + [str(uuid.uuid4()) for _ in range(n // 20)]):
            busy = index >= members
            instances.create(session, {
                "uuid": member, "display_name": f"m{index}", "project_id": "bench", "user_id": "bench",
                "flavor": FLAVOR, "vm_state": "building" if busy else "active", "power_state": 1,
                "host": names[(index // 2) % n], "node": names[(index // 2) % n], "availability_zone": "nova",
                "security_groups": ["default"]})

    cell.db.run_sync(servers)

    def api(session):
        server_groups.create(session, {"uuid": group_uuid, "name": "bench", "project_id": "bench",
                                       "user_id": "bench", "policy": "anti-affinity",
                                       "rules": {"max_server_per_host": 2}}, -1)
        server_groups.add_members(session, group_uuid, member_uuids, -1)
        # The members' instance mappings, as a create writes them: a group's members are the mapped ones.
        now = datetime.utcnow()
        session.execute(sa.insert(InstanceMapping), [
            {"instance_uuid": member, "cell_id": None, "project_id": "bench", "user_id": "bench",
             "queued_for_delete": False, "created_at": now} for member in member_uuids])
        made = aggregates.create(session, "az1", "az1")
        aggregates.set_metadata(session, made["id"], {"cpu_weight_multiplier": "2.0"})
        now = datetime.utcnow()
        session.execute(sa.insert(AggregateHost), [{"host": name, "aggregate_id": made["id"], "created_at": now}
                                                   for name in names[::10]])

    api_db.run_sync(api)
    return api_db, cells, group_uuid, nodes


async def build_placement(state_dir: Path, nodes: dict[str, str]):
    from kilonova.common.clients import Endpoints
    from kilonova.common.service import ServiceEnv
    from kilonova.placement.service import PlacementService

    svc = PlacementService(ServiceEnv(conf=Config.load(state_dir=state_dir / "placement"), endpoints=Endpoints(),
                                      transport=None),
                           validator=FakeValidator({"t": ("scheduler", "service", ["service", "admin"])}))
    svc.prepare()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://placement",
                             headers={"X-Auth-Token": "t", "OpenStack-API-Version": "placement 1.36"})
    # The providers and inventories written in bulk (the API creates about 10 a second on a loaded machine);
    # Placement's capacity index reads them at the first query, as it reads any change.
    classes = {"VCPU": (32, 4.0), "MEMORY_MB": (131072, 1.0), "DISK_GB": (2048, 1.0)}

    def providers(session):
        ids = dict(session.execute(sa.select(ResourceClass.name, ResourceClass.id)
                                   .where(ResourceClass.name.in_(list(classes)))).all())
        now = datetime.utcnow()
        session.execute(sa.insert(ResourceProvider), [
            {"id": i + 1, "uuid": node, "name": name, "generation": 1, "root_provider_id": i + 1, "created_at": now}
            for i, (name, node) in enumerate(nodes.items())])
        session.execute(sa.insert(Inventory), [
            {"resource_provider_id": i + 1, "resource_class_id": ids[rc], "total": total, "reserved": 0,
             "min_unit": 1, "max_unit": total, "step_size": 1, "allocation_ratio": ratio, "created_at": now}
            for i in range(len(nodes)) for rc, (total, ratio) in classes.items()])

    svc.db.run_sync(providers)
    check = await http.get(f"/resource_providers/{next(iter(nodes.values()))}/inventories")
    assert check.status_code == 200 and set(check.json()["inventories"]) == set(classes), check.text
    return svc, http


async def run_size(n: int, decisions: int, members: int, keep_claims: bool = False) -> dict:
    from kilonova.compute.scheduler.manager import SchedulerManager

    with tempfile.TemporaryDirectory(prefix="kn-sched-bench-") as tmp:
        state = Path(tmp)
        conf = Config.load(state_dir=state)
        # No agent heartbeats here: the fleet's services stay up however long setting it up takes.
        conf.set("DEFAULT", "service_down_time", "86400")
        started = time.perf_counter()
        api_db, cells, group, nodes = build_databases(conf, n, members)
        svc, http = await build_placement(state, nodes)
        setup = time.perf_counter() - started
        # As a running service does after start-up (kilonova/aio.py): what set-up made is out of the full passes.
        gc.collect()
        gc.freeze()
        placement = TimedPlacement(http)
        scheduler = SchedulerManager(conf, placement, cells)
        spec = {"project_id": "bench", "user_id": "bench", "flavor": FLAVOR, "num_instances": 1,
                "image": {"id": "img", "disk_format": "qcow2", "properties": {"hw_architecture": "x86_64"}},
                "availability_zone": None, "scheduler_hints": {"group": group}}
        for _ in range(3):  # warm-up: caches, prepared statements
            uuid_ = str(uuid.uuid4())
            await scheduler.select_destinations(spec, [uuid_])
            await http.delete(f"/allocations/{uuid_}")
        placement.spent, placement.cpu = {"candidates": 0.0, "claims": 0.0}, 0.0
        times, cpu, wall0 = [], 0.0, time.perf_counter()
        for _ in range(decisions):
            uuid_ = str(uuid.uuid4())
            start, cpu0 = time.perf_counter(), time.process_time()
            [selection] = await scheduler.select_destinations(spec, [uuid_])
            times.append(time.perf_counter() - start)
            cpu += time.process_time() - cpu0
            assert selection[0]["host"]
            if not keep_claims:
                await http.delete(f"/allocations/{uuid_}")
        wall = time.perf_counter() - wall0
        await http.aclose()
        svc.db.close()
        for cell in cells.all():
            cell.db.close()
        api_db.close()
        gc.unfreeze()
    times.sort()
    total = sum(times)
    return {"hosts": n, "setup_s": round(setup, 1), "p50_ms": round(statistics.median(times) * 1000, 2),
            "p95_ms": round(times[int(len(times) * 0.95) - 1] * 1000, 2), "per_s": round(decisions / total, 1),
            "cpu_ms": round(cpu / decisions * 1000, 2),
            "scheduler_cpu_ms": round((cpu - placement.cpu) / decisions * 1000, 2),
            "candidates_share": round(placement.spent["candidates"] / total, 2),
            "claims_share": round(placement.spent["claims"] / total, 2), "wall_s": round(wall, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--group-members", type=int, default=50)
    parser.add_argument("--keep-claims", action="store_true",
                        help="keep each decision's claim, as builds do: every answer then differs from the last "
                             "in one provider's usage (by default each claim is deleted: the same answer each time)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    for n in (int(s) for s in args.sizes.split(",")):
        result = asyncio.run(run_size(n, args.decisions, args.group_members, args.keep_claims))
        print(f"{n} hosts: decision p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, {result['per_s']} "
              f"decisions/s, CPU {result['cpu_ms']} ms/decision ({result['scheduler_cpu_ms']} ms outside the Placement "
              f"calls); Placement candidates "
              f"{result['candidates_share']:.0%} and claims {result['claims_share']:.0%} of the time "
              f"(setup {result['setup_s']} s)", flush=True)
        print(json.dumps(result), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
