"""The machine's RabbitMQ, PostgreSQL and MariaDB for tests: started if down, throw-away vhosts and databases;
and a RabbitMQ node of one's own, for a test that restarts its broker.

Each helper returns a URL to use and cleans up after itself when used as a
context manager. Nothing here is needed for the all-in-one tests.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

RABBIT = ("127.0.0.1", 5672)
POSTGRES = ("127.0.0.1", 5432)
MARIADB = ("127.0.0.1", 3306)


def _port_open(address: tuple[str, int]) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(address) == 0


def _wait_port(address: tuple[str, int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(address):
            return True
        time.sleep(0.3)
    return False


def _start(address: tuple[str, int], command: list[str], timeout: float = 60) -> bool:
    """Run ``command`` unless something listens on ``address``; whether it had to."""
    if _port_open(address):
        return False
    subprocess.run(command, check=False, capture_output=True, timeout=120)
    if not _wait_port(address, timeout):
        raise RuntimeError(f"{' '.join(command)} did not bring up {address[0]}:{address[1]}")
    return True


def ensure_rabbitmq() -> None:
    if _start(RABBIT, ["rabbitmq-server", "-detached"], timeout=90):
        # The port opens before the broker accepts vhost commands; wait for the app.
        subprocess.run(["rabbitmqctl", "await_startup", "--timeout", "60"], check=False, capture_output=True,
                       timeout=90)


_cleanups: list[subprocess.Popen] = []


def _in_background(args: list[str]) -> None:
    """Start a clean-up command (dropping databases, a vhost: seconds each) without waiting for it: no test
    needs it finished. The process waits for them when it exits."""
    _cleanups[:] = [cleanup for cleanup in _cleanups if cleanup.poll() is None]
    _cleanups.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


@atexit.register
def _finish_cleanups() -> None:
    for cleanup in _cleanups:
        with contextlib.suppress(subprocess.TimeoutExpired):
            cleanup.wait(120)


def ensure_postgres() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").exists() else []
    if versions:
        _start(POSTGRES, ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"])


def ensure_mariadb() -> None:
    _start(MARIADB, ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"])


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def _rabbitmqctl(*args: str, attempts: int = 5) -> None:
    """Run rabbitmqctl, waiting for the broker's app when a test elsewhere has just restarted it."""
    for attempt in range(attempts):
        result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
        if result.returncode == 0 or "already exists" in result.stderr:
            return
        if attempt == attempts - 1:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")
        subprocess.run(["rabbitmqctl", "await_startup", "--timeout", "60"], capture_output=True, timeout=90)
        time.sleep(1)


@contextlib.contextmanager
def rabbit_vhost(prefix: str = "kn-test") -> Iterator[str]:
    """A fresh vhost on the local broker; yields its ``rabbit://`` transport URL."""
    ensure_rabbitmq()
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"rabbit://guest:guest@127.0.0.1:5672/{name}"
    finally:
        _in_background(["rabbitmqctl", "delete_vhost", name])


def _private_node(port: int) -> str:
    return f"kn-test-{port}@localhost"


@contextlib.contextmanager
def private_broker(workdir: Path) -> Iterator[str]:
    """A throw-away RabbitMQ node (another node of the machine's installation, run as the rabbitmq user as the
    packaged one is, on free ports, its data under ``workdir``); yields its ``rabbit://`` URL.

    What a test does to it (stop it, drop its connections) touches nobody else's tests.
    """
    from tests.cloud import free_port_block

    base = workdir / "rabbitmq"
    base.mkdir()
    port = free_port_block(2)  # AMQP, and Erlang distribution on the next one
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{port}\n")
    (base / "enabled_plugins").write_text("[].\n")
    (base / "env.conf").write_text("")
    workdir.chmod(0o755)
    for path in [base, *base.iterdir()]:
        shutil.chown(path, "rabbitmq")
    env = {"RABBITMQ_CONF_ENV_FILE": base / "env.conf", "RABBITMQ_NODENAME": _private_node(port),
           "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": port, "RABBITMQ_DIST_PORT": port + 1,
           "RABBITMQ_CONFIG_FILE": base / "rabbitmq.conf", "RABBITMQ_MNESIA_BASE": base / "mnesia",
           "RABBITMQ_LOG_BASE": base / "log", "RABBITMQ_ENABLED_PLUGINS_FILE": base / "enabled_plugins",
           "RABBITMQ_PID_FILE": base / "pid", "ERL_EPMD_ADDRESS": "127.0.0.1"}
    assignments = " ".join(f"{k}={v}" for k, v in env.items())
    subprocess.run(["su", "rabbitmq", "-s", "/bin/sh", "-c",
                    f"{assignments} /usr/lib/rabbitmq/bin/rabbitmq-server -detached"], check=True, timeout=60)
    try:
        if not _wait_port(("127.0.0.1", port), 90):
            raise RuntimeError(f"the private RabbitMQ node did not open port {port}:\n"
                               + "".join(log.read_text() for log in (base / "log").glob("*.log")))
        yield f"rabbit://guest:guest@127.0.0.1:{port}/"
    finally:
        _stop_pid(base / "pid")


def _stop_pid(pid_file: Path, timeout: float = 30) -> None:
    """``kill -9`` of the node in ``pid_file`` (throw-away: nothing in it is worth a clean stop, which takes
    seconds); returns once it is gone, so that its files can be deleted."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 9)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def vhost_of(transport_url: str) -> str:
    return transport_url.rsplit("/", 1)[1] or "/"


def rabbitmqctl(transport_url: str, *args: str) -> str:
    """``rabbitmqctl ARGS`` against the broker of ``transport_url`` (the machine's, or a private node); its output."""
    port = int(transport_url.rsplit(":", 1)[1].split("/", 1)[0])
    node = [] if port == RABBIT[1] else ["-n", _private_node(port)]
    return subprocess.run(["rabbitmqctl", *node, *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def _psql(*statements: str) -> list[str]:
    args = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
    for sql in statements:
        args += ["-c", sql]  # each -c runs on its own (CREATE/DROP DATABASE refuse transaction blocks)
    return args


def _mysql(*statements: str) -> list[str]:
    return ["mysql", "-h", "127.0.0.1", "-uroot", "-e", ";".join(statements)]


class Databases:
    """Throw-away databases on one server; ``url(name)`` creates one and returns its SQLAlchemy URL."""

    def __init__(self, kind: str):
        assert kind in ("postgresql", "mysql")
        self.kind = kind
        self.tag = uuid.uuid4().hex[:8]
        self.created: list[str] = []
        if kind == "postgresql":
            ensure_postgres()
        else:
            ensure_mariadb()

    def url(self, name: str) -> str:
        return self.urls([name])[name]

    def urls(self, names: list[str]) -> dict[str, str]:
        """Create one database per name (in one client run) and return their SQLAlchemy URLs."""
        dbs = {name: f"kn_{self.tag}_{name}" for name in names}
        if self.kind == "postgresql":
            create = _psql(*(f'CREATE DATABASE "{db}"' for db in dbs.values()))
        else:
            create = _mysql(*(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                              for db in dbs.values()))
        subprocess.run(create, check=True, capture_output=True, timeout=120)
        self.created.extend(dbs.values())
        if self.kind == "postgresql":
            return {name: f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}" for name, db in dbs.items()}
        return {name: f"mysql+pymysql://root@127.0.0.1:3306/{db}?charset=utf8mb4" for name, db in dbs.items()}

    def cut_connections(self) -> int:
        """Close every client connection to these databases from the server side (PostgreSQL only).

        What clients see when the database server restarts or a proxy drops them: the next query on
        each open connection fails. Returns how many connections were cut.
        """
        assert self.kind == "postgresql", "cut_connections needs PostgreSQL (pg_terminate_backend)"
        query = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 f"WHERE datname LIKE 'kn\\_{self.tag}\\_%' AND pid <> pg_backend_pid()")
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-At", "-c", query],
                                    capture_output=True, text=True, timeout=60)
            if result.returncode == 0:
                return int(result.stdout.strip() or 0)
            # Other deployments on the server (parallel test workers) can use every slot for a moment.
            if "too many clients" not in result.stderr or time.monotonic() >= deadline:
                raise AssertionError(f"psql could not cut the connections: {result.stderr.strip()}")
            time.sleep(0.5)

    def drop_all(self) -> None:
        """Drop the databases, in the background (see ``_in_background``)."""
        if not self.created:
            return
        if self.kind == "postgresql":
            _in_background(_psql(*(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)' for db in self.created)))
        else:
            _in_background(_mysql(*(f"DROP DATABASE IF EXISTS `{db}`" for db in self.created)))
        self.created.clear()
