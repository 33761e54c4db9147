"""Run a real ``kilonova up`` in a subprocess for functional tests, and drive it with the real CLIs."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from tests import forked_cli
# client_env: the CLIs' environment, with tests/client_poll (shorter status-polling sleeps) on their path.
from tests.forked_cli import CLIENT_POLL_DIR, client_env  # noqa: F401

READY_LINE = "Kilonova is up"
TEST_HASH_ROUNDS = "12"
POLL_SECONDS = 0.2


CONSOLE_TOKEN_TTL = 10  # seconds: a console URL is used right after the CLI prints it, even on a busy machine
# The cloud the functional tests share (one per xdist worker, tests/conftest.py): every option a test counts on
# that changes nothing for the others. The console proxy on any free port (workers run one each).
SHARED_CLOUD_CONFIG = {"fake_driver": {"fail_spawn_hosts": ""}, "vnc": {"novncproxy_port": "0"},
                       "consoleauth": {"token_ttl": str(CONSOLE_TOKEN_TTL)}}


def _ephemeral_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Test ports start above qemu-nbd's default export range ([volume] nbd_ports, 10809-10999).
FIRST_TEST_PORT = 11000


def _worker_port_range(size: int) -> tuple[int, int]:
    """This test worker's share of the ports below the kernel's ephemeral range: [low, high) for a block's base.

    Each pytest-xdist worker draws from its own slice, so a port that another worker's cloud leaves free for a
    moment (a restart on the same ports, a process not yet listening) cannot be handed to this one.
    """
    low, high = FIRST_TEST_PORT, max(_ephemeral_port_start(), FIRST_TEST_PORT + 10 * size)
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and workers.isdigit() and int(workers) > 1:
        share = (high - low) // int(workers)
        low += share * (int(worker[2:]) % int(workers))
        high = low + share
    return low, high - size


def free_port_block(size: int = 7) -> int:
    """A base port such that base..base+size-1 are all free on 127.0.0.1 (by default the six APIs of
    ``kilonova up --base-port`` and its console proxy).

    Chosen at random below the kernel's ephemeral range (a port from that range can be taken at any
    moment by some process's outgoing connection, e.g. while a test restarts a cloud on its ports), in
    this test worker's own slice of it (``_worker_port_range``).
    """
    low, high = _worker_port_range(size)
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


def wait_for(check, what: str = "condition", timeout: float = 30.0, interval: float = POLL_SECONDS):
    """Call ``check`` until it returns something true, and return that; fail with its last value at the timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last}")
        time.sleep(interval)


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
                "network": f"http://127.0.0.1:{base + 4}", "block-storage": f"http://127.0.0.1:{base + 5}"}

    def env(self, cloud: str = "kilonova") -> dict[str, str]:
        env = client_env()
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        env["OS_CLOUD"] = cloud
        return env

    def auth(self, cloud: str = "kilonova") -> dict:
        return yaml.safe_load(self.clouds_yaml.read_text())["clouds"][cloud]["auth"]

    def openstack(self, *args: str, cloud: str = "kilonova", check: bool = True, fmt_json: bool = False,
                  timeout: float = 120) -> subprocess.CompletedProcess | object:
        """Run the real ``openstack`` CLI (in a process forked from a warm one: tests/forked_cli.py); with
        ``fmt_json`` parse ``-f json`` output."""
        args = (*args, "-f", "json") if fmt_json else args
        result = forked_cli.run("openstack", list(args), self.env(cloud), timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        if fmt_json and result.returncode == 0:
            return json.loads(result.stdout) if result.stdout.strip() else None
        return result

    def _legacy_env(self, cloud: str) -> dict[str, str]:
        """``OS_*`` variables for the project CLIs that read no clouds.yaml (nova, cinder)."""
        auth = self.auth(cloud)
        env = client_env()
        env.update({"OS_AUTH_URL": auth["auth_url"], "OS_USERNAME": auth["username"],
                    "OS_PASSWORD": auth["password"], "OS_PROJECT_NAME": auth["project_name"],
                    "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                    "OS_REGION_NAME": "RegionOne"})
        return env

    def _legacy_cli(self, name: str, args: tuple[str, ...], cloud: str, check: bool,
                    timeout: float) -> subprocess.CompletedProcess:
        result = forked_cli.run(name, list(args), self._legacy_env(cloud), timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                                 f"{result.stderr}")
        return result

    def nova(self, *args: str, cloud: str = "kilonova", check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess:
        return self._legacy_cli("nova", args, cloud, check, timeout)

    def cinder(self, *args: str, cloud: str = "kilonova", check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the real ``cinder`` CLI (python-cinderclient) as ``cloud``'s user."""
        return self._legacy_cli("cinder", args, cloud, check, timeout)

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

    def manage_options(self) -> list[str]:
        """The ``kilonova`` options that point ``kilonova manage`` at this deployment."""
        raise NotImplementedError

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``kilonova ... manage ARGS`` run in this process (saves an interpreter start per command)."""
        return run_manage(self.manage_options(), *args, check=check)

    def audit(self) -> str:
        """``kilonova manage placement audit --verbose`` finds no leaked, misplaced or missing allocation; its report."""
        result = self.manage("placement", "audit", "--verbose", check=False)
        assert result.returncode == 0, f"audit found problems ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def server(self, server: str, cloud: str = "kilonova", compute=None) -> dict | None:
        """The server (its id, or its name as the CLIs take it) as the API shows it (2.1), None if there is no such
        server: cheap to poll (``compute``: a client of ``http("compute", cloud)`` to reuse, and its token)."""
        if compute is None:
            with self.http("compute", cloud) as compute:
                return self.server(server, cloud, compute)
        reply = compute.get(f"/servers/{server}")
        if reply.status_code == 404:
            named = [s for s in compute.get("/servers/detail").json()["servers"] if s["name"] == server]
            return named[0] if len(named) == 1 else None
        assert reply.status_code == 200, reply.text
        return reply.json()["server"]

    def wait_server(self, server: str, check, what: str, timeout: float = 30, cloud: str = "kilonova") -> dict:
        """``openstack server show`` of the server once ``check`` holds for it.

        Polled over HTTP (an ``openstack`` run costs a tenth of a second of CPU even forked from a warm process,
        and its log-in a password hash on the cloud), then shown with the CLI: the CLI's view is the one
        returned, and ``check`` must hold for it too."""
        last: dict = {}

        def shown_by_the_cli(compute):
            last["seen"] = self.server(server, cloud, compute)
            if last["seen"] is None or not check(last["seen"]):
                return None
            last["seen"] = self.openstack("server", "show", server, fmt_json=True, cloud=cloud)
            return last["seen"] if check(last["seen"]) else None
        with self.http("compute", cloud) as compute:  # one token for the whole wait
            try:
                return wait_for(lambda: shown_by_the_cli(compute), f"{server} {what}", timeout)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last seen: {last.get('seen')}") from None

    def wait_status(self, server: str, status: str, timeout: float = 30, cloud: str = "kilonova",
                    settled: bool = False) -> dict:
        """``openstack server show`` of the server once it is in ``status`` (``settled``: and has no task)."""
        return self.wait_server(server, lambda s: s["status"] == status and not (
            settled and s.get("OS-EXT-STS:task_state")), f"to be {status}{' with no task' if settled else ''}",
            timeout, cloud)

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
        # Every test cloud logs to a file (INFO: access lines, RPC lines, with their request ids), read by
        # tests/functional/test_operability.py and kept for a failing test's post-mortem.
        config["DEFAULT"] = {"log_dir": str(workdir / "logs"), **config.get("DEFAULT", {})}
        # kilonova up takes --base-port; the file says the same, so `kilonova manage` run on it finds the APIs.
        config.setdefault("ports", {name: str(self.base_port + i) for i, name in enumerate(
            ("identity", "compute", "placement", "image", "network", "block-storage"))})
        for section, options in config.items():
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {v}" for k, v in options.items())
        self.config_file.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | forked_cli.ForkedProcess | None = None
        self.output: list[str] = []

    def manage_options(self) -> list[str]:
        return ["--config", str(self.config_file), "--state-dir", str(self.state_dir)]

    @property
    def log_file(self) -> Path:
        return self.workdir / "logs" / "kilonova-up.log"

    def log_offset(self) -> int:
        """Where the cloud's log file ends now (for ``log_lines(since=)``)."""
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def log_lines(self, since: int = 0) -> list[str]:
        """The lines the cloud has logged (to its log file) after offset ``since``."""
        if not self.log_file.exists():
            return []
        with open(self.log_file, "rb") as handle:
            handle.seek(since)
            return handle.read().decode(errors="replace").splitlines()

    def start(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        # `python -m kilonova.cli ... up`, forked from a process that has imported Kilonova (tests/forked_cli.py).
        read, write = os.pipe()
        try:
            self.proc = forked_cli.kilonova(
                ["--config", str(self.config_file), "--state-dir", str(self.state_dir), "up", "--hosts",
                 str(self.hosts), "--base-port", str(self.base_port), "--clouds-yaml", str(self.clouds_yaml)],
                stdout=write, stderr=write)
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self.proc.stdout = open(read, encoding="utf-8", errors="replace")
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


def run_manage(options: list[str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``kilonova OPTIONS manage ARGS`` run in this process, its output captured as a subprocess's would be."""
    import contextlib
    import io

    from kilonova.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*options, "manage", *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    result = subprocess.CompletedProcess(["manage", *args], code, out.getvalue(), err.getvalue())
    if check and result.returncode != 0:
        raise AssertionError(f"manage {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result
