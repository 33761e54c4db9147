"""A server is never shown in ERROR without its fault, also while a restarting cloud cleans up.

Builds are spawning (the fake driver takes minutes) when ``kilonova up`` is killed; at start-up each
compute host fails the builds it can no longer finish, and destroying their guests takes seconds
(``destroy_delay``). The API already answers meanwhile: a client listing the servers from the first
moment must never see one in ERROR without its fault.
"""
from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

from tests.cloud import new_cloud

SERVERS = 3


@pytest.fixture
def slow_cloud():
    cloud = new_cloud(hosts=1, config={"fake_driver": {"spawn_delay": "600", "destroy_delay": "2"},
                                       "quota": {"instances": "-1", "cores": "-1", "ram": "-1"}})
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def servers(client: httpx.Client) -> list[dict]:
    return client.get("/servers/detail").json()["servers"]


def watch(cloud, token: str, stop: threading.Event, seen: list[dict]) -> None:
    """Every server of every listing until ``stop``, from the first moment the compute API answers."""
    with httpx.Client(base_url=cloud.urls["compute"], headers={"X-Auth-Token": token}, timeout=10) as client:
        while not stop.is_set():
            try:
                seen.extend(servers(client))
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.05)   # not up yet, or restarting


def test_builds_a_restart_interrupts_are_error_with_their_fault_from_the_first_moment(slow_cloud):
    slow_cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                         "private", "--min", str(SERVERS), "--max", str(SERVERS), "interrupted")
    token = slow_cloud.token()
    with httpx.Client(base_url=slow_cloud.urls["compute"], headers={"X-Auth-Token": token}, timeout=30) as api:
        deadline = time.monotonic() + 60
        while [s["OS-EXT-STS:task_state"] for s in servers(api)] != ["spawning"] * SERVERS:
            assert time.monotonic() < deadline, servers(api)
            time.sleep(0.2)

    slow_cloud.proc.kill()   # a crash: nothing is finished on the way down
    slow_cloud.proc.wait()
    slow_cloud.proc = None
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch, args=(slow_cloud, token, stop, seen), daemon=True)
    watcher.start()
    slow_cloud.start()
    with httpx.Client(base_url=slow_cloud.urls["compute"], headers={"X-Auth-Token": token}, timeout=30) as api:
        deadline = time.monotonic() + 60
        while any(s["status"] != "ERROR" for s in servers(api)):
            assert time.monotonic() < deadline, servers(api)
            time.sleep(0.2)
        final = servers(api)
    stop.set()
    watcher.join(10)

    assert [s for s in seen if s["status"] == "ERROR"], "the watcher saw the servers go to ERROR"
    assert [(s["name"], s["status"]) for s in seen if s["status"] == "ERROR" and "fault" not in s] == []
    assert {s["fault"]["message"] for s in final} == {"Build was interrupted by a restart of the compute service."}
