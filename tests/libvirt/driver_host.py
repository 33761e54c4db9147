"""A LibvirtDriver in a process of its own: a compute host's driver inside that host's network namespace.

``python -m tests.libvirt.driver_host '<json config>'`` answers one JSON request per line on stdin
(``{"method": ..., "args": [...]}``) with one JSON line on stdout (``{"result": ...}`` or ``{"error": class
name, "message": ...}``). Everything a driver hands to another host is JSON-able, so this is also how the
tests check that nothing is shared between two hosts' drivers. The image service is the tests' fake one,
serving the files the config names.

``RemoteDriver`` (the test's side) starts it in the host's network namespace with ``nsenter --net``.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from kilonova.compute.virt import driver as virt


async def serve(config: dict) -> None:
    from kilonova.compute.virt.libvirt.driver import LibvirtDriver
    from kilonova.config import Config
    from tests.libvirt.test_image_cache import FakeImages

    images = FakeImages()
    for image_id, spec in config["images"].items():
        spec = dict(spec)
        images.add(image_id, Path(spec.pop("path")).read_bytes(), spec.pop("disk_format"), **spec)
    conf = Config.load(state_dir=config["state_dir"], overrides=config["overrides"])
    driver = LibvirtDriver(config["name"], conf, images.client())
    await driver.init_host()
    loop = asyncio.get_running_loop()
    print(json.dumps({"result": "ready"}), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        request = json.loads(line)
        try:
            answer = {"result": await getattr(driver, request["method"])(*request.get("args", []))}
        except Exception as exc:  # noqa: BLE001 - the caller raises it again on its side
            answer = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer), flush=True)


class RemoteDriver:
    """The test's handle on a driver_host process running in network namespace ``namespace``."""

    def __init__(self, namespace: str, config: dict, log: Path):
        self.host = config["name"]
        self._log = open(log, "w")
        self.process = subprocess.Popen(
            # nsenter --net, not ip netns exec: the DHCP namespaces the driver names stay visible to everyone
            # (ip netns exec gives the process a mount namespace of its own, where their mounts would stay).
            ["nsenter", f"--net=/run/netns/{namespace}", sys.executable, "-m", "tests.libvirt.driver_host",
             json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        first = self.process.stdout.readline()
        if not first:
            raise RuntimeError(f"the driver of {self.host} did not start: {log.read_text()[-2000:]}")

    def call(self, method: str, *args):
        self.process.stdin.write(json.dumps({"method": method, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise getattr(virt, answer["error"], RuntimeError)(answer["message"])
        return answer["result"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
