"""``kilonova serve`` processes sharing a state directory (kilonova/runtime.py): a service that owns files
there (the compute hosts of a set of names, the volume service, the L3 agent) runs in one process at a
time, and a second start of it is refused in one line, exit 1, before it touches anything; other services
start beside it. Real processes on one state directory.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kilonova.compute.agent.service import ComputeAgentService
from kilonova.config import Config
from tests.cloud import free_port_block
from tests.distributed.cluster import Process

CONTROL = ["identity", "placement", "api", "conductor", "scheduler", "compute"]


def serving(state_dir: Path, base_port: int, services: list[str], log: Path) -> Process:
    """``kilonova serve SERVICE...`` in a process of its own, ready."""
    process = Process(log.stem, ["--state-dir", str(state_dir), "serve", *services, "--base-port", str(base_port)],
                      log)
    try:
        process.wait_ready(120)
    except BaseException:
        process.kill()
        raise
    return process


def kilonova(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kilonova.cli", "--state-dir", str(state_dir), *args],
                          capture_output=True, text=True, timeout=60)


def untouched(state_dir: Path) -> dict[str, bytes | None]:
    """The state directory's names, and the content of what a start could write but the running services do
    not (the databases change as they work)."""
    return {path.name: path.read_bytes() if path.name == "secrets.json" or path.suffix == ".lock" else None
            for path in state_dir.iterdir() if not path.name.endswith(("-wal", "-shm"))}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The control services with compute in one process, the volume service in another, one state
    directory."""
    workdir = tmp_path_factory.mktemp("serve-locks")
    state_dir, base = workdir / "state", free_port_block()
    control = serving(state_dir, base, CONTROL, workdir / "control.log")
    try:
        volume = serving(state_dir, base, ["volume"], workdir / "volume.log")
        try:
            yield state_dir, base, control, volume
        finally:
            volume.kill(signal.SIGTERM)
    finally:
        control.kill(signal.SIGTERM)


def refused(result: subprocess.CompletedProcess, state_dir: Path, lock: str, holder: Process, command: str):
    assert result.returncode == 1, result.stderr
    started = result.stderr.split("started ", 1)[-1].split(")")[0]
    assert result.stderr == (f"kilonova: state directory {state_dir}: {lock} is already run by process "
                             f"{holder.popen.pid} ({command}, started {started})\n")


def test_a_second_compute_process_for_the_same_hosts_is_refused_and_touches_nothing(shared):
    state_dir, base, control, volume = shared
    before = untouched(state_dir)
    prefix = Config.load(state_dir=state_dir).get("fake_driver", "host_prefix")   # its hosts <prefix>1..4
    second = kilonova(state_dir, "serve", "compute", "--base-port", str(base))
    refused(second, state_dir, f"compute@{prefix}", control, "kilonova serve " + " ".join(CONTROL))
    assert untouched(state_dir) == before
    assert control.popen.poll() is None and volume.popen.poll() is None


def test_a_second_volume_service_is_refused_even_on_other_ports(shared):
    state_dir, _, control, volume = shared
    before = untouched(state_dir)
    second = kilonova(state_dir, "serve", "volume", "--base-port", str(free_port_block()))
    refused(second, state_dir, "volume", volume, "kilonova serve volume")
    assert untouched(state_dir) == before
    assert control.popen.poll() is None and volume.popen.poll() is None


def test_up_is_refused_beside_a_service_it_would_run_again(shared, tmp_path):
    state_dir, _, control, volume = shared
    up = kilonova(state_dir, "up", "--base-port", str(free_port_block()), "--clouds-yaml",
                  str(tmp_path / "clouds.yaml"))
    refused(up, state_dir, "volume", volume, "kilonova serve volume")
    assert not (tmp_path / "clouds.yaml").exists() and not (state_dir / "openrc").exists()
    assert control.popen.poll() is None and volume.popen.poll() is None


def test_the_lock_goes_with_its_process(shared, tmp_path):
    """Killed (no clean-up of its own), the volume process leaves its lock to the next one."""
    state_dir, base, control, volume = shared
    volume.kill(signal.SIGKILL)
    again = serving(state_dir, base, ["volume"], tmp_path / "volume-again.log")
    try:
        refused(kilonova(state_dir, "serve", "volume", "--base-port", str(free_port_block())), state_dir,
                "volume", again, "kilonova serve volume")
    finally:
        again.kill(signal.SIGTERM)


def test_compute_processes_of_other_hosts_and_other_services_share_the_state_directory(tmp_path):
    """What decides: compute processes of other host names (distributed deployments run several on one
    state directory), conductors, schedulers and APIs (as many as wanted: a port is its own lock) take
    none of these locks."""
    def conf(**fake_driver: str) -> Config:
        return Config.load(state_dir=tmp_path, overrides={"fake_driver": fake_driver} if fake_driver else None)
    assert ComputeAgentService.lock_name(conf(host_prefix="cell1-host")) == "compute@cell1-host"
    assert ComputeAgentService.lock_name(conf(host_prefix="cell2-host")) == "compute@cell2-host"
    assert ComputeAgentService.lock_name(conf(host_prefix="")) == f"compute@{conf().get('DEFAULT', 'host')}"
    from kilonova import aio
    locks = aio.service_locks(conf(), ["identity", "placement", "image", "network", "api", "conductor",
                                       "scheduler", "novncproxy"], "test")
    assert locks == [] and not list(tmp_path.glob("*.lock"))
