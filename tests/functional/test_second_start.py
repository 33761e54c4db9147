"""A running cloud that a second start cannot break; status, stop; manage finding a --base-port cloud.

One cloud started with ``kilonova up --base-port P`` and no configuration file naming its ports (so every
command that finds it must ask the state directory), then, in order: status, manage, a second start on its
held state directory, a start on its busy port, wrong configurations, and stop.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.cloud import Cloud, free_port_block, run_manage


def kilonova(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kilonova.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cloud():
    instance = Cloud(Path(tempfile.mkdtemp(prefix="kilonova-test-")), hosts=1, config={"ports": {}})
    instance.start()
    yield instance
    instance.stop()


def client_files(cloud: Cloud) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in (cloud.clouds_yaml, cloud.state_dir / "openrc")}


def still_works(cloud: Cloud, before: dict[Path, bytes]) -> None:
    assert client_files(cloud) == before
    assert cloud.proc is not None and cloud.proc.poll() is None
    assert [f.name for f in cloud.sdk().compute.flavors()][:1] == ["m1.tiny"]


def test_status_names_the_process_its_endpoints_and_their_health(cloud):
    shown = kilonova("status", "--state-dir", str(cloud.state_dir))   # a global option after the subcommand
    assert shown.returncode == 0, shown.stderr
    assert f"Kilonova is running on {cloud.state_dir}: pid {cloud.proc.pid}, kilonova up" in shown.stdout
    for offset, service in enumerate(("identity", "compute", "placement", "image", "network", "block-storage")):
        line = next(line for line in shown.stdout.splitlines() if line.split()[:1] == [service])
        assert f"http://127.0.0.1:{cloud.base_port + offset}" in line and line.endswith(" up"), line
    assert f"consoles      http://127.0.0.1:{cloud.base_port + 6}/vnc_lite.html" in shown.stdout  # --base-port's


def test_manage_finds_the_cloud_started_with_a_base_port(cloud):
    options = ["--state-dir", str(cloud.state_dir)]     # no file names its ports: the running cloud says them
    check = run_manage(options, "status", "upgrade", "check", check=False)
    placement = check.stdout.split("Check: Placement API", 1)[1]
    assert "Result: Success" in placement.split("Check:", 1)[0], check.stdout
    audit = run_manage(options, "placement", "audit")
    assert "0 orphaned" in audit.stdout


def test_a_second_start_on_the_held_state_directory_is_refused_and_changes_nothing(cloud):
    before = client_files(cloud)
    second = kilonova("up", "--state-dir", str(cloud.state_dir), "--base-port", str(free_port_block()),
                      "--clouds-yaml", str(cloud.clouds_yaml))
    assert second.returncode == 1
    assert second.stderr == (f"kilonova: state directory {cloud.state_dir} is in use by process {cloud.proc.pid} "
                             f"(kilonova up, started {second.stderr.split('started ', 1)[1].split(')')[0]}); "
                             f"`kilonova --state-dir {cloud.state_dir} stop` stops it\n")
    still_works(cloud, before)


def test_a_start_on_a_busy_port_says_which_in_one_line_and_changes_nothing(cloud, tmp_path):
    before = client_files(cloud)
    other = kilonova("--state-dir", str(tmp_path / "other"), "up", "--base-port", str(cloud.base_port),
                     "--clouds-yaml", str(cloud.clouds_yaml))
    assert other.returncode == 1
    assert other.stderr == (f"kilonova: port {cloud.base_port} on 127.0.0.1 for the identity API cannot be used: "
                            "Address already in use\n")
    assert not (tmp_path / "other" / "openrc").exists()
    still_works(cloud, before)


@pytest.mark.parametrize("text, message", [
    ("[quota]\ncores = many\n", "[quota] cores = 'many': must be an integer >= -1"),
    ("[filter_scheduler]\nenabled_filter = ComputeFilter\n",
     "[filter_scheduler] enabled_filter: unknown option (did you mean enabled_filters?)"),
    ("[schedular]\nmax_attempts = 2\n", "[schedular]: unknown section (did you mean scheduler?)"),
])
def test_a_wrong_configuration_stops_the_start_in_one_line(tmp_path, text, message):
    config = tmp_path / "kilonova.conf"
    config.write_text(text)
    refused = kilonova("up", "--config", str(config), "--state-dir", str(tmp_path / "state"),
                       "--clouds-yaml", str(tmp_path / "clouds.yaml"))
    assert (refused.returncode, refused.stderr) == (2, f"kilonova: configuration error: {message}\n")
    assert not (tmp_path / "state").exists() and not (tmp_path / "clouds.yaml").exists()


def test_stop_stops_it_and_waits(cloud):
    stopped = kilonova("--state-dir", str(cloud.state_dir), "stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"Kilonova stopped (pid {cloud.proc.pid}, {cloud.state_dir}).\n")
    assert cloud.proc.poll() == 0      # exited by the time stop returned
    assert kilonova("status", "--state-dir", str(cloud.state_dir)).returncode == 3
    assert kilonova("stop", "--state-dir", str(cloud.state_dir)).stdout == \
        f"No cloud is running on {cloud.state_dir}.\n"
