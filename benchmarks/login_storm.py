"""Login storm: eight clients sending wrong passwords must not slow the other APIs of the all-in-one.

Starts ``kilonova up`` (default password hashing: scrypt N=2^17), measures ``GET /v2.1/`` latency with
nothing else going on, then again while CLIENTS processes send wrong passwords for admin as fast as they
are answered, each from its own loopback address. Prints the p50/p95 of both, their ratio (the bar:
p50 within 2x of idle), the storm's answers by status and the cloud's CPU per login attempt.

    .venv/bin/python benchmarks/login_storm.py [--clients 8] [--seconds 20] [--source-limit N] [--hash-rounds N]

``--source-limit 0`` turns the per-source failed-login limit off: then every wrong password is hashed, and
only the bounded hashing pool keeps the event loop free.
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.boot import cpu_seconds, percentile  # noqa: E402
from kilonova.config import DEFAULTS  # noqa: E402
from tests.cloud import new_cloud  # noqa: E402


def wrong_passwords(identity_url: str, source: str, seconds: float, results) -> None:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "password": "not-the-password", "domain": {"id": "default"}}}}}}
    answers: Counter = Counter()
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=60, transport=httpx.HTTPTransport(local_address=source)) as client:
        while time.monotonic() < deadline:
            try:
                answers[client.post(f"{identity_url}/auth/tokens", json=body).status_code] += 1
            except httpx.HTTPError as exc:
                answers[type(exc).__name__] += 1
    results.put(dict(answers))


def probe(compute_root: str, seconds: float) -> list[float]:
    """Sequential ``GET /v2.1/`` for ``seconds``: each latency in ms."""
    latencies = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            client.get(compute_root).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    return latencies


def summary(latencies: list[float]) -> str:
    return (f"p50 {statistics.median(latencies):6.2f} ms  p95 {percentile(latencies, 95):6.2f} ms  "
            f"({len(latencies)} requests)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--source-limit", type=int, default=int(DEFAULTS["identity"]["failed_login_limit"]),
                        help="[identity] failed_login_limit (default: the cloud's default)")
    parser.add_argument("--hash-rounds", type=int, default=int(DEFAULTS["identity"]["password_hash_rounds"]),
                        help="[identity] password_hash_rounds (default: the cloud's default)")
    args = parser.parse_args()

    # The production settings, not the test clouds' (cheap hashing, no failed-login limit).
    identity = {"password_hash_rounds": str(args.hash_rounds), "failed_login_limit": str(args.source_limit)}
    cloud = new_cloud(hosts=1, config={"identity": identity})
    cloud.start()
    try:
        compute_root = cloud.urls["compute"] + "/"
        probe(compute_root, 2)   # warm-up
        idle = probe(compute_root, args.seconds)

        results: multiprocessing.Queue = multiprocessing.Queue()
        clients = [multiprocessing.Process(target=wrong_passwords, args=(
            cloud.urls["identity"], f"127.0.0.{10 + n}", args.seconds + 4, results)) for n in range(args.clients)]
        cpu_before = cpu_seconds(cloud.proc.pid)
        for client in clients:
            client.start()
        time.sleep(2)   # the storm is on before measuring
        storm = probe(compute_root, args.seconds)
        answers: Counter = Counter()
        for _ in clients:
            answers.update(results.get(timeout=120))
        for client in clients:
            client.join()
        cpu = cpu_seconds(cloud.proc.pid) - cpu_before
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)

    attempts = sum(answers.values())
    print(f"login storm: {args.clients} clients sending wrong passwords for {args.seconds + 4:.0f}s "
          f"(scrypt N=2^{args.hash_rounds}, failed_login_limit: {args.source_limit})")
    print(f"  GET /v2.1/ idle:   {summary(idle)}")
    print(f"  GET /v2.1/ storm:  {summary(storm)}")
    print(f"  storm/idle p50:    {statistics.median(storm) / statistics.median(idle):.2f}x  (bar: 2x)")
    print(f"  storm answers:     {dict(sorted(answers.items(), key=str))} = {attempts / (args.seconds + 4):.1f}/s")
    print(f"  cloud CPU:         {cpu:.1f}s during the storm, {cpu / max(attempts, 1) * 1000:.1f} ms per attempt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
