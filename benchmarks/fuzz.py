"""Hostile-input fuzzing of all six APIs, for much longer than the test suite does (issue 12).

    .venv/bin/python benchmarks/fuzz.py [--examples 5000] [--services compute,image] [--seed N]

Starts its own all-in-one cloud (two fake hosts), reads the ids it has, then sends ``--examples``
requests drawn by tests/hostile_fuzz.py (the same fuzzer as tests/functional/test_hostile_fuzz.py,
random rather than derandomized, so each run tries new inputs; ``--seed`` repeats one). Prints the
rate, the cloud's CPU per request, the statuses per service, every failure (a 5xx other than 501,
or no answer) and the tracebacks in the cloud's log. Exits 1 when there is any failure or traceback.
"""
from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import hostile_fuzz  # noqa: E402
from tests.cloud import new_cloud  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the cloud's process tree (its compute agents and workers included)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--services", default=",".join(hostile_fuzz.SERVICES))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    services = tuple(args.services.split(","))
    if args.seed is not None:
        random.seed(args.seed)   # hypothesis draws from the global random when not derandomized

    cloud = new_cloud(hosts=2, config=hostile_fuzz.CLOUD_CONFIG)
    cloud.start()
    try:
        target = hostile_fuzz.Target(roots=hostile_fuzz.roots(cloud.urls),
                                     tokens={"admin": cloud.token(), "member": cloud.token("kilonova-demo")})
        hostile_fuzz.harvest_ids(target)
        hostile_fuzz.add_seeds(target)
        cpu_before, started = cpu_seconds(cloud.proc.pid), time.monotonic()
        outcomes = hostile_fuzz.run(target, args.examples, services=services)
        elapsed, cpu = time.monotonic() - started, cpu_seconds(cloud.proc.pid) - cpu_before
        time.sleep(1)   # let the log catch up
        log = "".join(cloud.output)
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)

    failures = [o for o in outcomes if hostile_fuzz.failed(o)]
    tracebacks = log.count("Traceback (most recent call last)")
    print(f"{len(outcomes)} requests in {elapsed:.1f} s ({len(outcomes) / elapsed:.0f}/s), "
          f"cloud CPU {1000 * cpu / max(len(outcomes), 1):.1f} ms per request; {len(target.ids)} known ids")
    for service in services:
        statuses = collections.Counter(o.status for o in outcomes if o.service == service)
        shown = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items(), key=lambda i: str(i[0])))
        print(f"  {service:9} {sum(statuses.values()):6} requests  {shown}")
    print(f"failures (5xx but 501, or no answer): {len(failures)}; tracebacks in the log: {tracebacks}")
    for outcome in failures[:30]:
        print(f"  {outcome.method} {outcome.url[:200]} -> {outcome.status}: {outcome.detail[:200]}")
    if tracebacks:
        first = log.index("Traceback (most recent call last)")
        print(log[max(0, first - 300):first + 3000])
    return 1 if failures or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
