"""CPU per API request through the shared HTTP layer (request ids, metrics, access line), no database.

A trivial handler behind ``ServiceApp``, called in-process the way one service calls another
(``kilonova.common.inprocess``); prints microseconds of CPU per request.

    .venv/bin/python benchmarks/request_overhead.py [quiet|file] [--requests 20000]

``quiet``: logging at WARNING (no access line is made, as in a ``kilonova up`` without a log file);
``file``: INFO to a log file, one access line per request (text format).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kilonova.common import inprocess, logs  # noqa: E402
from kilonova.common.http import Router, ServiceApp, json_response  # noqa: E402


class _Conf:
    def __init__(self, log_dir: str):
        self.values = {"log_format": "text", "log_dir": log_dir, "log_file": "", "debug": "false"}

    def get(self, _section: str, key: str) -> str:
        return self.values[key]

    def getbool(self, _section: str, key: str) -> bool:
        return self.values[key] == "true"


async def handler(request, thing):
    return json_response({"thing": thing})


async def measure(requests: int) -> float:
    router = Router()
    router.add("GET", "/things/{thing}", handler)
    app = ServiceApp("bench", router)
    target = inprocess.InProcessTarget(httpx.URL("http://127.0.0.1:1"))
    headers = httpx.Headers()
    for _ in range(2000):   # warm-up: labelled metric children, caches
        await inprocess.call_app(app, target, "GET", "/things/1", b"", headers, None, None, None)
    started = time.process_time()
    for _ in range(requests):
        await inprocess.call_app(app, target, "GET", "/things/1", b"", headers, None, None, None)
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("quiet", "file"), nargs="?", default="quiet")
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    if args.mode == "file":
        logs.setup(_Conf(tempfile.mkdtemp(prefix="kilonova-bench-")), "bench", interactive=False)
    else:
        logging.getLogger().setLevel(logging.WARNING)
    print(f"{args.mode}: {asyncio.run(measure(args.requests)):.1f} us CPU per request")


if __name__ == "__main__":
    main()
