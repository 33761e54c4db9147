"""Run a real ``kilonova up`` in a subprocess for functional tests, and drive it with the real CLIs."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

READY_LINE = "Kilonova is up"
TEST_HASH_ROUNDS = "12"
# Loaded by the CLIs the tests run: shortens their status-polling sleeps (see its docstring).
CLIENT_POLL_DIR = Path(__file__).parent / "client_poll"


def client_env() -> dict[str, str]:
    """The environment for a real OpenStack CLI: this one without OS_* variables, fast status polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT_POLL_DIR), env.get("PYTHONPATH")]))
    return env


def _ephemeral_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(size: int = 5) -> int:
    """A base port such that base..base+size-1 are all free on 127.0.0.1.

    Chosen at random below the kernel's ephemeral range: a port from that range can be taken at any
    moment by some process's outgoing connection, e.g. while a test restarts a cloud on its ports, and
    random bases keep parallel test workers apart.
    """
    low, high = 10000, max(_ephemeral_port_start(), 10000 + 10 * size) - size
    for _ in range(200):
        base = random.randrange(low, high)
        ok = True
        for port in range(base, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of free ports found")


class Clients:
    """The real CLIs, openstacksdk and httpx pointed at a running Kilonova (all-in-one or distributed).

    Needs ``clouds_yaml`` (written by the cloud) and ``base_port`` (identity; compute, placement, image and
    network on the next four ports of 127.0.0.1)."""

    clouds_yaml: Path
    base_port: int

    @property
    def urls(self) -> dict[str, str]:
        base = self.base_port
        return {"identity": f"http://127.0.0.1:{base}/v3", "compute": f"http://127.0.0.1:{base + 1}/v2.1",
                "placement": f"http://127.0.0.1:{base + 2}", "image": f"http://127.0.0.1:{base + 3}",
                "network": f"http://127.0.0.1:{base + 4}"}

    def env(self, cloud: str = "kilonova") -> dict[str, str]:
        env = client_env()
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        env["OS_CLOUD"] = cloud
        return env

    def auth(self, cloud: str = "kilonova") -> dict:
        return yaml.safe_load(self.clouds_yaml.read_text())["clouds"][cloud]["auth"]

    def openstack(self, *args: str, cloud: str = "kilonova", check: bool = True, fmt_json: bool = False,
                  timeout: float = 120) -> subprocess.CompletedProcess | object:
        """Run the real ``openstack`` CLI; with ``fmt_json`` parse ``-f json`` output."""
        cmd = [str(Path(sys.executable).parent / "openstack"), *args]
        if fmt_json:
            cmd += ["-f", "json"]
        result = subprocess.run(cmd, env=self.env(cloud), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        if fmt_json and result.returncode == 0:
            return json.loads(result.stdout) if result.stdout.strip() else None
        return result

    def nova(self, *args: str, cloud: str = "kilonova", check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess:
        auth = self.auth(cloud)
        env = client_env()
        env.update({"OS_AUTH_URL": auth["auth_url"], "OS_USERNAME": auth["username"],
                    "OS_PASSWORD": auth["password"], "OS_PROJECT_NAME": auth["project_name"],
                    "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                    "OS_REGION_NAME": "RegionOne"})
        cmd = [str(Path(sys.executable).parent / "nova"), *args]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"nova {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def token(self, cloud: str = "kilonova") -> str:
        """A project-scoped token for ``cloud``'s user, straight from the identity API."""
        import httpx

        auth = self.auth(cloud)
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"], "domain": {"id": "default"}}}},
            "scope": {"project": {"name": auth["project_name"], "domain": {"id": "default"}}}}}
        response = httpx.post(self.urls["identity"] + "/auth/tokens", json=body, timeout=30)
        response.raise_for_status()
        return response.headers["X-Subject-Token"]

    def http(self, service: str, cloud: str | None = "kilonova"):
        """An httpx client on ``service``'s catalog URL, authenticated as ``cloud`` (None: no token)."""
        import httpx

        headers = {"X-Auth-Token": self.token(cloud)} if cloud else {}
        return httpx.Client(base_url=self.urls[service], headers=headers, timeout=30)

    def sdk(self, cloud: str = "kilonova"):
        import openstack

        auth = self.auth(cloud)
        return openstack.connect(auth_url=auth["auth_url"], username=auth["username"], password=auth["password"],
                                 project_name=auth["project_name"], user_domain_name="Default",
                                 project_domain_name="Default", region_name="RegionOne")


class Cloud(Clients):
    """A running all-in-one Kilonova and the environment that points the CLIs at it."""

    def __init__(self, workdir: Path, hosts: int = 4, config: dict[str, dict[str, str]] | None = None):
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.clouds_yaml = workdir / "clouds.yaml"
        self.hosts = hosts
        self.base_port = free_port_block()
        self.config_file = workdir / "kilonova.conf"
        lines = []
        config = dict(config or {})
        # Every CLI run logs in: the production work factor (scrypt N=2^17, ~0.6 s of CPU a login) would
        # cost the suite minutes; 2^12 unless a test asks for more. Every client is 127.0.0.1: no limit on
        # its wrong passwords (the hostile-input fuzzer sends many) unless a test sets one.
        config["identity"] = {"password_hash_rounds": TEST_HASH_ROUNDS, "failed_login_limit": "0",
                              **config.get("identity", {})}
        # kilonova up takes --base-port; the file says the same, so `kilonova manage` run on it finds the APIs.
        config.setdefault("ports", {name: str(self.base_port + i) for i, name in enumerate(
            ("identity", "compute", "placement", "image", "network"))})
        for section, options in config.items():
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {v}" for k, v in options.items())
        self.config_file.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kilonova.cli", "--config", str(self.config_file),
             "--state-dir", str(self.state_dir), "up", "--hosts", str(self.hosts),
             "--base-port", str(self.base_port), "--clouds-yaml", str(self.clouds_yaml)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if READY_LINE in line:
                elapsed = time.monotonic() - started
                self._drain()
                return elapsed
        self.stop()
        raise RuntimeError("kilonova up did not become ready:\n" + "".join(self.output))

    def _drain(self) -> None:
        import threading

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)

        threading.Thread(target=pump, daemon=True).start()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


def new_cloud(hosts: int = 4, config: dict | None = None) -> Cloud:
    return Cloud(Path(tempfile.mkdtemp(prefix="kilonova-test-")), hosts=hosts, config=config)
