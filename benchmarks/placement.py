"""Placement benchmark: Kilonova's Placement against upstream openstack-placement 16.0.0, same workload.

    .venv/bin/python benchmarks/placement.py [--sizes 1000,10000] [--samples 30] [--only kilonova|upstream]

Upstream is installed by this script into its own virtualenv (default
``~/.cache/kilonova-bench/placement-16.0.0``, from PyPI) and served on SQLite with
``[api] auth_strategy = noauth2`` on 127.0.0.1 by **waitress** (pure Python, one
process, 8 threads): uwsgi needs a compiler and Apache is not here, and a single
process keeps SQLite free of cross-process lock errors; Kilonova's Placement is
also one process (``kilonova serve placement``, uvicorn), on SQLite with noauth2.
The two servers run one after the other, never together.

For each size N (providers), on a fresh database:

* create N compute-node providers (VCPU 32 / MEMORY_MB 131072 / DISK_GB 2048
  inventory; HW_CPU_X86_AVX2 on every 3rd, CUSTOM_BENCH_GOLD on every 10th);
  every 10th also gets a child provider with SRIOV_NET_VF 8 (nested), and every
  10th is in one aggregate with 10 sharing providers (IPV4_ADDRESS 256,
  MISC_SHARES_VIA_AGGREGATE) -- creation rate printed;
* ``GET /allocation_candidates`` at microversion 1.39, sequentially, p50/p95:
  plain (VCPU:1,MEMORY_MB:512,DISK_GB:10), with limit=50, with a required trait,
  a nested query (a granular SRIOV_NET_VF group), a sharing query (IPV4_ADDRESS);
  also the server's CPU time per request (from /proc, steadier than wall time
  when other work shares the machine);
* allocation writes/s: 10 concurrent clients each PUT new consumers' allocations
  (VCPU 1, MEMORY_MB 64) against random providers for a fixed number of writes;
* sequential creation: one client creates N more providers one request after the other, each with 3
  requests (POST /resource_providers, PUT its inventories, PUT its traits): the total time, time per
  request and the server's CPU per request. The client is the standard library's ``http.client`` on one
  keep-alive connection (about 0.2 ms of CPU a request here; httpx takes 0.7 ms), so that the figure is
  mostly the server's.

The upstream/Kilonova ratio is printed for every figure.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = "openstack-placement==16.0.0"
VERSION = {"OpenStack-API-Version": "placement 1.39", "X-Auth-Token": "admin", "Accept": "application/json"}
QUERIES = {
    "plain": "resources=VCPU:1,MEMORY_MB:512,DISK_GB:10",
    "limit=50": "resources=VCPU:1,MEMORY_MB:512,DISK_GB:10&limit=50",
    "required trait": "resources=VCPU:1,MEMORY_MB:512,DISK_GB:10&required=HW_CPU_X86_AVX2",
    "nested": "resources=VCPU:1,MEMORY_MB:512&resources_NIC=SRIOV_NET_VF:1&group_policy=none",
    "sharing": "resources=VCPU:1,MEMORY_MB:512,IPV4_ADDRESS:1",
}
AGGREGATE = "5c6a2a46-0d2e-4d4b-9a3a-5b0c0c0ffee0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


# ---------------------------------------------------------------- the two servers

def upstream_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    marker = path / ".installed"
    if not marker.exists():
        print(f"installing {UPSTREAM} and waitress into {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", UPSTREAM, "waitress"], check=True)
        marker.write_text(UPSTREAM + "\n")
    return python


def start_upstream(venv: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    python = upstream_venv(venv)
    port = free_port()
    (workdir / "placement.conf").write_text(
        "[DEFAULT]\nlog_dir =\n[api]\nauth_strategy = noauth2\n"
        f"[placement_database]\nconnection = sqlite:///{workdir}/placement.sqlite\nsync_on_startup = true\n")
    env = dict(os.environ, OS_PLACEMENT_CONFIG_DIR=str(workdir))
    process = subprocess.Popen(
        [str(python), "-m", "waitress", "--listen", f"127.0.0.1:{port}", "--threads", "8",
         "placement.wsgi.api:application"], env=env, cwd=workdir,
        stdout=open(workdir / "server.log", "w"), stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def start_kilonova(workdir: Path) -> tuple[subprocess.Popen, str]:
    base = free_port()
    while True:   # five consecutive free ports
        try:
            for offset in range(5):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
            break
        except OSError:
            base = free_port()
    # No cap on candidates, as upstream's default (max_allocation_candidates = -1): the same work.
    (workdir / "kilonova.conf").write_text("[placement]\nauth_strategy = noauth2\nmax_allocation_candidates = -1\n")
    # This checkout's code (a worktree has no .venv of its own), run by the interpreter running this script.
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from kilonova.cli import main; sys.exit(main())",
         "--config", str(workdir / "kilonova.conf"), "--state-dir", str(workdir), "serve", "placement",
         "--base-port", str(base)],
        stdout=open(workdir / "server.log", "w"), stderr=subprocess.STDOUT, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return process, f"http://127.0.0.1:{base + 2}"


# ---------------------------------------------------------------- the workload

class ServerError(RuntimeError):
    """A 500: a failure of the service measured, never retried."""


# Building the workload (not measured) goes on past a server's own SQLite lock errors, which upstream
# answers with 500 "database is locked" under 6 concurrent writers; they are counted and printed.
SETUP_LOCK_ERRORS = {"count": 0}
_setup = threading.local()


def call(client: httpx.Client, method: str, path: str, expect=(200, 201, 204), **kw) -> httpx.Response:
    for _ in range(20):
        response = client.request(method, path, headers=VERSION, **kw)
        if response.status_code in expect:
            return response
        if response.status_code == 500 and getattr(_setup, "active", False) and "database is locked" in response.text:
            SETUP_LOCK_ERRORS["count"] += 1
            time.sleep(0.05)
            continue
        if response.status_code == 500:
            raise ServerError(f"{method} {path}: 500 {response.text[:300]}")
        if response.status_code in (409, 503):   # generation race or SQLite busy: retry
            time.sleep(0.05)
            continue
        break
    raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")


def make_provider(client: httpx.Client, index: int, name: str, inventory: dict, traits=(), parent=None,
                  aggregates=()) -> str:
    _setup.active = True
    try:
        return _make_provider(client, name, inventory, traits, parent, aggregates)
    finally:
        _setup.active = False


def _make_provider(client: httpx.Client, name: str, inventory: dict, traits, parent, aggregates) -> str:
    body = {"name": name, "uuid": str(uuid.uuid4())}
    if parent:
        body["parent_provider_uuid"] = parent
    rp = call(client, "POST", "/resource_providers", json=body).json()
    generation = rp["generation"]
    inventories = {rc: {"total": total, "max_unit": total} for rc, total in inventory.items()}
    generation = call(client, "PUT", f"/resource_providers/{rp['uuid']}/inventories", json={
        "resource_provider_generation": generation, "inventories": inventories}).json()["resource_provider_generation"]
    if traits:
        generation = call(client, "PUT", f"/resource_providers/{rp['uuid']}/traits", json={
            "resource_provider_generation": generation, "traits": list(traits)}).json()["resource_provider_generation"]
    if aggregates:
        call(client, "PUT", f"/resource_providers/{rp['uuid']}/aggregates", json={
            "resource_provider_generation": generation, "aggregates": list(aggregates)})
    return rp["uuid"]


def populate(url: str, size: int, workers: int = 6) -> tuple[list[str], float]:
    with httpx.Client(base_url=url, timeout=120) as client:
        call(client, "PUT", "/traits/CUSTOM_BENCH_GOLD", expect=(201, 204))
        for i in range(10):
            make_provider(client, i, f"shared-{i}", {"IPV4_ADDRESS": 256}, traits=["MISC_SHARES_VIA_AGGREGATE"],
                          aggregates=[AGGREGATE])
    local = threading.local()
    started = time.monotonic()

    def one(i: int) -> str:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        traits = (["HW_CPU_X86_AVX2"] if i % 3 == 0 else []) + (["CUSTOM_BENCH_GOLD"] if i % 10 == 0 else [])
        rp = make_provider(local.client, i, f"compute-{i}", {"VCPU": 32, "MEMORY_MB": 131072, "DISK_GB": 2048},
                           traits=traits, aggregates=[AGGREGATE] if i % 10 == 5 else ())
        if i % 10 == 0:
            make_provider(local.client, i, f"compute-{i}-nic", {"SRIOV_NET_VF": 8}, parent=rp)
        return rp

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        uuids = list(pool.map(one, range(size)))
    return uuids, time.monotonic() - started


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server process and its descendants so far, from /proc: a measure
    that other load on the machine distorts far less than wall time."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree = {pid}
    for _ in range(4):   # children, grandchildren, ...
        tree |= {p for p, (parent, _) in stats.items() if parent in tree}
    return sum(stats[p][1] for p in tree if p in stats)


def time_queries(url: str, samples: int, pid: int) -> dict[str, tuple[float, float, int, float]]:
    """Per query: p50 ms, p95 ms, candidates, server CPU ms per request (over the timed requests)."""
    result = {}
    with httpx.Client(base_url=url, timeout=300) as client:
        for label, query in QUERIES.items():
            times = []
            count = 0
            for attempt in range(samples + 2):
                if attempt == 2:   # after the two warm-up requests
                    cpu = server_cpu(pid)
                started = time.perf_counter()
                response = call(client, "GET", f"/allocation_candidates?{query}")
                times.append(time.perf_counter() - started)
                count = len(response.json()["allocation_requests"])
            cpu_ms = (server_cpu(pid) - cpu) * 1000 / samples
            times = sorted(times[2:])
            result[label] = (statistics.median(times) * 1000, times[int(len(times) * 0.95) - 1] * 1000
                             if len(times) > 1 else times[0] * 1000, count, cpu_ms)
    return result


def allocation_writes(url: str, providers: list[str], total: int = 1000, clients: int = 10) -> float:
    done = failed = 0
    errors: list[str] = []   # 500s, each counted as a failure and printed
    lock = threading.Lock()
    rng = random.Random(7)
    targets = [rng.choice(providers) for _ in range(total)]

    def worker(index: int) -> None:
        nonlocal done, failed
        with httpx.Client(base_url=url, timeout=120) as client:
            for target in targets[index::clients]:
                body = {"allocations": {target: {"resources": {"VCPU": 1, "MEMORY_MB": 64}}},
                        "project_id": "bench", "user_id": "bench", "consumer_generation": None,
                        "consumer_type": "INSTANCE"}
                try:
                    call(client, "PUT", f"/allocations/{uuid.uuid4()}", json=body, expect=(204,))
                except ServerError as error:
                    with lock:
                        failed += 1
                        errors.append(str(error))
                    continue
                except RuntimeError:   # e.g. upstream's "database is locked" on SQLite, 20 times over
                    with lock:
                        failed += 1
                    continue
                with lock:
                    done += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        print(f"    {failed} of {total} allocation writes failed ({len(errors)} of them 500s, not retried)",
              flush=True)
    for error in errors[:5]:
        print(f"      {error}", flush=True)
    return done / (time.monotonic() - started)


def sequential_creates(url: str, count: int, pid: int) -> tuple[float, float]:
    """(seconds, server CPU seconds) for ``count`` providers made by 3 sequential requests each."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = dict(VERSION, **{"Content-Type": "application/json"})

    def send(method: str, path: str, body: dict) -> dict:
        connection.request(method, path, body=json.dumps(body).encode(), headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    inventory = {rc: {"total": total, "max_unit": total}
                 for rc, total in (("VCPU", 32), ("MEMORY_MB", 131072), ("DISK_GB", 2048))}
    cpu = server_cpu(pid)
    started = time.perf_counter()
    for i in range(count):
        rp = send("POST", "/resource_providers", {"name": f"sequential-{i}", "uuid": str(uuid.uuid4())})
        generation = send("PUT", f"/resource_providers/{rp['uuid']}/inventories", {
            "resource_provider_generation": rp["generation"], "inventories": inventory})["resource_provider_generation"]
        send("PUT", f"/resource_providers/{rp['uuid']}/traits", {
            "resource_provider_generation": generation, "traits": ["HW_CPU_X86_AVX2", "CUSTOM_BENCH_GOLD"]})
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, server_cpu(pid) - cpu


def run_one(name: str, start, size: int, samples: int, writes: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"placement-bench-{name}-"))
    process, url = start(workdir)
    try:
        wait_up(url, process)
        providers, seconds = populate(url, size)
        print(f"  {name}: {size} providers created in {seconds:.1f}s"
              f" ({SETUP_LOCK_ERRORS['count']} 'database is locked' 500s retried while building them)", flush=True)
        SETUP_LOCK_ERRORS["count"] = 0
        figures = {"create_per_s": size / seconds, "queries": time_queries(url, samples, process.pid)}
        figures["writes_per_s"] = allocation_writes(url, providers, total=writes)
        seconds, cpu = sequential_creates(url, size, process.pid)
        print(f"  {name}: {size} more providers created by {3 * size} sequential requests in {seconds:.2f}s"
              f" (server CPU {cpu * 1000 / (3 * size):.2f} ms a request)", flush=True)
        figures["sequential_s"], figures["sequential_cpu_ms"] = seconds, cpu * 1000 / (3 * size)
        return figures
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def report(size: int, results: dict[str, dict]) -> None:
    names = list(results)
    print(f"\n== {size} providers ==")
    header = f"{'figure':<34}" + "".join(f"{n:>22}" for n in names) + ("   ratio (upstream/kilonova)"
                                                                       if len(names) == 2 else "")
    print(header)

    def row(label, values, better_low=True):
        text = f"{label:<34}" + "".join(f"{v:>22.1f}" for v in values)
        if len(values) == 2 and all(values):
            ratio = values[0] / values[1] if better_low else values[1] / values[0]
            text += f"   {ratio:>8.1f}x"
        print(text)

    for label in QUERIES:
        count = "/".join(str(results[n]["queries"][label][2]) for n in names)
        row(f"a_c {label} p50 ms [{count}]", [results[n]["queries"][label][0] for n in names])
        row(f"a_c {label} p95 ms", [results[n]["queries"][label][1] for n in names])
        row(f"a_c {label} server CPU ms/req", [results[n]["queries"][label][3] for n in names])
    row("allocation writes/s (10 clients)", [results[n]["writes_per_s"] for n in names], better_low=False)
    row("providers created/s (6 clients)", [results[n]["create_per_s"] for n in names], better_low=False)
    size_note = f"{size} x 3 sequential requests"
    row(f"{size_note} s", [results[n]["sequential_s"] for n in names])
    row("  ms a request", [results[n]["sequential_s"] * 1000 / (3 * size) for n in names])
    row("  server CPU ms a request", [results[n]["sequential_cpu_ms"] for n in names])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--samples", type=int, default=30, help="timed requests per query (after 2 warm-ups)")
    parser.add_argument("--writes", type=int, default=1000, help="allocation writes in the write test")
    parser.add_argument("--only", choices=["kilonova", "upstream"])
    parser.add_argument("--venv", default=str(Path.home() / ".cache" / "kilonova-bench" / "placement-16.0.0"))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}", flush=True)
    starters = {"upstream": lambda w: start_upstream(Path(args.venv), w), "kilonova": start_kilonova}
    if args.only:
        starters = {args.only: starters[args.only]}
    for size in (int(s) for s in args.sizes.split(",")):
        results = {}
        for name, start in starters.items():
            print(f"{name}: {size} providers ...", flush=True)
            results[name] = run_one(name, start, size, args.samples if size <= 2000 else max(10, args.samples // 3),
                                    args.writes)
        # columns: kilonova then upstream, ratio upstream/kilonova
        ordered = {k: results[k] for k in ("upstream", "kilonova") if k in results}
        report(size, ordered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
