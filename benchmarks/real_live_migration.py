"""Real-guest live migration benchmark: the tiny test guest moved back and forth between two libvirt hosts.

The deployment is tests/libvirt/two_hosts.py: one Kilonova control plane (`kilonova serve` of the APIs,
conductor and scheduler), host A (`kilonova serve compute`, system libvirtd) and host B (`kilonova serve
compute` in the network namespace of a second libvirtd). The guest (hostsetup's: Debian's cloud kernel and a
busybox initramfs, 128 MB, a port on the private network) boots on host A; then each round is one
``os-migrateLive`` (scheduled, ``block_migration: auto``: the hosts do not share storage, so its disk is copied
too) and is timed from the request to the server showing ACTIVE, no task, on the other host (``GET
/servers/{id}`` every 100 ms). Between rounds (not timed) the guest's console must show no boot and its uptime
going on. It prints seconds per migration (median, max), where the time went (the migration's instance-action
events, median per step; ``compute_live_migration`` is the source's whole part, libvirt's migration and the
destination's pre and post steps included) and the CPU seconds of each Kilonova process per migration (the
part of the control plane's that went into answering the benchmark's polling is shown apart).

    .venv/bin/python benchmarks/real_live_migration.py [--rounds 10]

Needs root (QEMU/libvirt from Debian packages, a second libvirtd, network namespaces) and RabbitMQ.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.libvirt import hostsetup  # noqa: E402
from tests.libvirt.hostsetup import MARKER  # noqa: E402
from tests.libvirt.test_real_guest import console_lines, upload_guest  # noqa: E402
from tests.libvirt.two_hosts import HOST_A, HOST_B, two_libvirt_hosts  # noqa: E402

TARGET_SECONDS = 3.0
POLL = 0.1


def cpu_seconds(deployment) -> dict[str, float]:
    """User + system CPU of each Kilonova process so far."""
    used = {}
    for name, process in deployment.processes.items():
        times = psutil.Process(process.popen.pid).cpu_times()
        used[name] = times.user + times.system
    return used


def console(api, uuid: str) -> str:
    return api.post(f"/servers/{uuid}/action", json={"os-getConsoleOutput": {}}).json()["output"]


def uptimes(log: str) -> list[float]:
    return [float(value) for value in console_lines(log, "alive")]


def wait(what, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while not (found := what()):
        if time.monotonic() > deadline:
            raise SystemExit(message)
        time.sleep(POLL)
    return found


def boot(deployment, guest) -> str:
    image = upload_guest(deployment, guest, "bench-lm")
    deployment.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "bench.lm")
    server = deployment.openstack("--os-compute-api-version", "2.74", "server", "create", "--flavor", "bench.lm",
                                  "--image", image["id"], "--network", "private", "--host", HOST_A, "--wait",
                                  "bench-lm", fmt_json=True, timeout=180)
    return server["id"]


def migrate_once(api, uuid: str, target: str) -> tuple[float, str, int]:
    """One live migration, timed from the request to ACTIVE on ``target``; (seconds, its request id, the GETs
    it took to see it)."""
    started = time.monotonic()
    polls = [0]
    response = api.post(f"/servers/{uuid}/action", json={"os-migrateLive": {"host": None, "block_migration": "auto"}})
    if response.status_code != 202:
        raise SystemExit(f"os-migrateLive answered {response.status_code}: {response.text}")

    def arrived():
        polls[0] += 1
        server = api.get(f"/servers/{uuid}").json()["server"]
        if server["status"] == "ERROR":
            raise SystemExit(f"the server went to ERROR: {server.get('fault')}")
        return server["status"] == "ACTIVE" and server["OS-EXT-STS:task_state"] is None and \
            server["OS-EXT-SRV-ATTR:host"] == target
    wait(arrived, 120, f"the server did not arrive on {target} within 120 s")
    return time.monotonic() - started, response.headers["x-openstack-request-id"], polls[0]


def steps(api, uuid: str, request_id: str) -> dict[str, float]:
    """Seconds of each event of the migration's instance action (start to finish), once all have finished
    (the source's own step ends after the server is ACTIVE on the destination)."""
    def finished():
        action = api.get(f"/servers/{uuid}/os-instance-actions/{request_id}").json()["instanceAction"]
        events = action.get("events", [])
        return events if events and all(event.get("finish_time") for event in events) else None

    def at(stamp: str) -> float:
        return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()
    return {event["event"]: at(event["finish_time"]) - at(event["start_time"])
            for event in wait(finished, 30, "the migration's instance action did not finish")}


def polling_cost(deployment, api, uuid: str, count: int = 40) -> float:
    """CPU seconds the control plane spends on one of the benchmark's own GET /servers/{id}."""
    before = cpu_seconds(deployment)["control"]
    for _ in range(count):
        api.get(f"/servers/{uuid}")
    return (cpu_seconds(deployment)["control"] - before) / count


def check_no_reboot(api, uuid: str, before: float) -> float:
    """The console goes on counting past ``before`` with no boot line; the uptime it shows last."""
    log = wait(lambda: (lambda text: text if any(up > before + 2 for up in uptimes(text)) else None)(
        console(api, uuid)), 60, "the guest's heartbeat did not go on after the migration")
    if f"{MARKER} booted kernel" in log or min(uptimes(log)) < before - 2:
        raise SystemExit(f"the guest rebooted during the migration:\n{log[-2000:]}")
    return uptimes(log)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="live migrations (back and forth)")
    args = parser.parse_args()
    guest = hostsetup.prepare()
    with two_libvirt_hosts(guest) as deployment:
        uuid = boot(deployment, guest)
        headers = {"OpenStack-API-Version": "compute 2.51"}  # 2.51: the events of an instance action
        with deployment.http("compute") as api:
            api.headers.update(headers)
            before = wait(lambda: (lambda found: found[-1] if found else None)(uptimes(console(api, uuid))), 120,
                          "the guest never printed its heartbeat")
            per_poll = polling_cost(deployment, api, uuid)
            host, seconds, cpu, breakdown, polls = HOST_A, [], {}, [], 0
            for round_ in range(args.rounds):
                target = HOST_B if host == HOST_A else HOST_A
                used = cpu_seconds(deployment)
                took, request_id, gets = migrate_once(api, uuid, target)
                polls += gets
                for name, value in cpu_seconds(deployment).items():
                    cpu[name] = cpu.get(name, 0.0) + value - used[name]
                seconds.append(took)
                print(f"round {round_ + 1}: {host} -> {target} in {took:.2f} s", flush=True)
                before = check_no_reboot(api, uuid, before)
                breakdown.append(steps(api, uuid, request_id))  # now the source's last step has ended too
                host = target
        rounds = len(seconds)
        print(f"\n{rounds} live migrations of a {guest.root.name} guest (128 MB, 1 vCPU, block migration), "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"seconds per migration: median {statistics.median(seconds):.2f}, max {max(seconds):.2f}, "
              f"min {min(seconds):.2f} (target < {TARGET_SECONDS:.0f} s)")
        print("where the time went (median seconds per step, instance-action events):")
        for event in sorted(breakdown[0], key=lambda name: -statistics.median(
                one.get(name, 0) for one in breakdown)):
            values = [one[event] for one in breakdown if event in one]
            print(f"  {event:<48} {statistics.median(values):.2f}")
        print("CPU per migration (user + system seconds):")
        for name, value in cpu.items():
            print(f"  {name:<10} {value / rounds:.3f}")
        print(f"  {'all':<10} {sum(cpu.values()) / rounds:.3f}")
        print(f"  of which the benchmark's own polling ({polls / rounds:.0f} GET /servers/{{id}} per migration, "
              f"{per_poll * 1000:.1f} ms each): {polls * per_poll / rounds:.3f}")
        print("the guest kept running through every migration (no boot on its console, uptime going on)")


if __name__ == "__main__":
    main()
