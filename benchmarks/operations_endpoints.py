"""How fast each API answers its operators' paths: ``/healthcheck`` and ``/metrics`` (issue 16: under 10 ms).

Starts ``kilonova up`` with 4 fake hosts on free ports and times N requests of each path on each API over one
kept-alive connection; prints p50 / p95 and the answer's size.

    .venv/bin/python benchmarks/operations_endpoints.py [--requests 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cloud import new_cloud  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    cloud = new_cloud(hosts=4)
    try:
        cloud.start()
        for service in ("identity", "compute", "placement", "image", "network", "block-storage"):
            url = httpx.URL(cloud.urls[service])
            root = f"{url.scheme}://{url.host}:{url.port}"
            with httpx.Client() as client:
                for path in ("/healthcheck", "/metrics"):
                    times = []
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        response = client.get(root + path)
                        times.append(time.perf_counter() - started)
                        assert response.status_code == 200, (service, path, response.status_code)
                    times.sort()
                    p50, p95 = times[len(times) // 2], times[int(len(times) * 0.95)]
                    print(f"{service:14s} {path:13s} p50 {p50 * 1000:6.2f} ms  p95 {p95 * 1000:6.2f} ms  "
                          f"{len(response.content)} bytes")
    finally:
        cloud.stop()


if __name__ == "__main__":
    main()
