"""A Kilonova deployment with every service in its own OS process, over RabbitMQ and PostgreSQL/MariaDB.

The test writes one INI file (nova.conf style) that every process reads, plus
small per-process variants (a compute process's cell and host names), starts
``kilonova --config F serve NAME`` for each service, and drives the cloud with
the real ``openstack`` CLI, exactly as the all-in-one tests do.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from tests import forked_cli
from tests.cloud import Clients, free_port_block, run_manage
from tests.distributed.infra import Databases, private_broker, rabbit_vhost

READY = "Kilonova is serving"


def write_ini(path: Path, sections: dict[str, dict[str, str]]) -> Path:
    lines = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def wait_for(check, timeout: float, what: str, cluster: "Cluster | None" = None):
    """Poll ``check`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{cluster.logs()}" if cluster else ""))
        time.sleep(0.5)


class Process:
    def __init__(self, name: str, args: list[str], log: Path, prefix: tuple[str, ...] = ()):
        """``prefix``: what runs the service, e.g. ``nsenter --net=...`` (it must exec, not fork)."""
        self.name = name
        self.args = args
        self.log = log
        # Appended to: a process restarted under the same name keeps its earlier life in the log.
        self._start_offset = log.stat().st_size if log.exists() else 0
        self._fh = open(log, "a")
        if prefix:
            self.popen = subprocess.Popen([*prefix, sys.executable, "-m", "kilonova.cli", *args], stdout=self._fh,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        else:  # forked from a process that has imported Kilonova (tests/forked_cli.py)
            self.popen = forked_cli.kilonova(args, stdout=self._fh.fileno(), stderr=self._fh.fileno())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY in self.log.read_text(errors="replace")[self._start_offset:]:
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read_text()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._fh.close()


def boot_on(cluster, api, host: str, name: str) -> str:
    """Boot a server on ``host`` (2.74 host field) through ``api`` and wait for it to be ACTIVE there; its uuid."""
    image = next(i["ID"] for i in cluster.openstack("image", "list", fmt_json=True) if i["Name"] == "kilonova-tiny")
    flavor = next(f["id"] for f in api.get("/flavors").json()["flavors"] if f["name"] == "m1.tiny")
    response = api.post("/servers", json={"server": {"name": name, "flavorRef": flavor, "imageRef": image,
                                                     "networks": "auto", "host": host}})
    assert response.status_code == 202, response.text
    uuid = response.json()["server"]["id"]
    server = wait_for(lambda: (lambda s: s if s["status"] in ("ACTIVE", "ERROR") else None)(
        api.get(f"/servers/{uuid}").json()["server"]), 60, f"{name} to boot", cluster)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", host), server
    return uuid


def manage(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``kilonova --config F manage ...`` run in this process (saves an interpreter start per command)."""
    return run_manage(["--config", str(config)], *args, check=check)


def availability_zone(cluster, aggregate: str, zone: str, hosts) -> str:
    """Make an aggregate of ``hosts`` that is availability zone ``zone``; returns the zone."""
    with cluster.compute_api("2.60") as api:
        made = api.post("/os-aggregates", json={"aggregate": {"name": aggregate, "availability_zone": zone}})
        assert made.status_code == 200, made.text
        for host in hosts:
            added = api.post(f"/os-aggregates/{made.json()['aggregate']['id']}/action",
                             json={"add_host": {"host": host}})
            assert added.status_code == 200, added.text
    return zone


class Cluster(Clients):
    """Services as separate processes; ``openstack(...)`` runs the real CLI against them (the all-in-one's
    ``Clients``: the functional scenarios run unchanged against a cluster)."""

    def __init__(self, workdir: Path, transport_url: str, databases: dict[str, str],
                 extra: dict[str, dict[str, str]] | None = None):
        self.workdir = workdir
        self.base_port = free_port_block()
        self.clouds_yaml = workdir / "clouds.yaml"
        self.state_dir = workdir / "state"
        self.processes: dict[str, Process] = {}
        names = ("identity", "compute", "placement", "image", "network", "block-storage")
        sections: dict[str, dict[str, str]] = {
            "DEFAULT": {"state_dir": str(workdir / "state"), "host": "controller", "my_ip": "127.0.0.1",
                        "transport_url": transport_url, "rpc_response_timeout": "10",
                        "report_interval": "1", "service_down_time": "6"},
            "ports": {name: str(self.base_port + i) for i, name in enumerate(names)},
            "identity": {"admin_password": "admin-secret", "demo_password": "demo-secret",
                         "password_hash_rounds": "10"},
            "service_user": {"password": "service-secret"},
            "conductor": {"reconcile_interval": "5"},
        }
        for section, url in databases.items():
            sections[section] = {"connection": url}
        for section, options in (extra or {}).items():
            sections.setdefault(section, {}).update(options)
        self.sections = sections
        self.config = write_ini(workdir / "kilonova.conf", sections)

    # ------------------------------------------------------------------ processes

    def variant(self, name: str, overrides: dict[str, dict[str, str]]) -> Path:
        sections = {s: dict(o) for s, o in self.sections.items()}
        for section, options in overrides.items():
            sections.setdefault(section, {}).update(options)
        return write_ini(self.workdir / f"{name}.conf", sections)

    def compute_config(self, name: str, cell: str, **fake_driver: str) -> Path:
        """The configuration of compute process ``name``: two fake hosts ``<cell>-host1/2`` in ``cell``;
        ``fake_driver`` overrides options of ``[fake_driver]`` (a restart applies them)."""
        return self.variant(name, {"compute": {"cell": cell}, "fake_driver": {
            "hosts": "2", "host_prefix": f"{cell}-host", **fake_driver}})

    def start(self, name: str, services: list[str], config: Path | None = None) -> Process:
        process = Process(name, ["--config", str(config or self.config), "serve", *services],
                          self.workdir / f"{name}.log")
        self.processes[name] = process
        return process

    def restart(self, *names: str, sig: int = signal.SIGKILL) -> None:
        """Kill processes (``kill -9`` by default), start them again together as they were; returns
        when they all serve."""
        for name in names:
            self.processes[name].kill(sig)
        started = [Process(name, self.processes[name].args, self.processes[name].log) for name in names]
        for process in started:
            self.processes[process.name] = process
        for process in started:
            process.wait_ready()

    def start_all(self, groups: list[list[tuple[str, list[str], Path | None]]]) -> None:
        """Start groups one after another; the processes of a group start together."""
        for group in groups:
            started = [self.start(name, services, config) for name, services, config in group]
            for process in started:
                process.wait_ready()

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return manage(self.config, *args, check=check)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to every process; whatever has not stopped after ``grace`` seconds is killed."""
        for process in self.processes.values():
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{process.name} did not stop within {grace}s of SIGTERM; killing it")
            process.kill()

    def logs(self) -> str:
        """The end of each process's log for a failing test, without the per-request access and RPC lines
        (they would fill the tail and hide the warnings and errors that explain the failure)."""
        def tail(text: str) -> str:
            lines = [line for line in text.splitlines()
                     if " INFO kilonova.access " not in line and " INFO kilonova.rpc " not in line]
            return "\n".join(lines)[-3000:]
        return "\n".join(f"===== {name}\n{tail(p.log.read_text())}" for name, p in self.processes.items())

    # ------------------------------------------------------------------ clients

    def write_clouds_yaml(self) -> None:
        from kilonova.aio import write_client_config
        from kilonova.config import Config

        write_client_config(Config.load(self.config), self.clouds_yaml)

    def compute_api(self, version: str = "2.1", port: int | None = None):
        """A client of the compute API (of the process on ``port``, default the catalog's)."""
        import httpx

        return httpx.Client(base_url=f"http://127.0.0.1:{port or self.base_port + 1}/v2.1",
                            headers={"X-Auth-Token": self.token(), "OpenStack-API-Version": f"compute {version}"},
                            timeout=30)

    def placement_api(self):
        import httpx

        return httpx.Client(base_url=f"http://127.0.0.1:{self.base_port + 2}",
                            headers={"X-Auth-Token": self.token(), "OpenStack-API-Version": "placement 1.36"},
                            timeout=30)

    def network_api(self):
        import httpx

        return httpx.Client(base_url=f"http://127.0.0.1:{self.base_port + 4}",
                            headers={"X-Auth-Token": self.token()}, timeout=30)

    def usage(self) -> dict[str, int]:
        """Total Placement usage over every provider, by resource class."""
        totals: dict[str, int] = {}
        with self.placement_api() as placement:
            for provider in placement.get("/resource_providers").json()["resource_providers"]:
                usages = placement.get(f"/resource_providers/{provider['uuid']}/usages").json()["usages"]
                for rc, used in usages.items():
                    totals[rc] = totals.get(rc, 0) + used
        return totals


SECTIONS = ("database", "cell0_database", "api_database", "placement_database", "identity_database",
            "image_database", "network_database", "volume_database")


@contextlib.contextmanager
def two_cell_deployment(kind: str, *, second_controller: bool = True, own_broker: bool = False,
                        extra: dict[str, dict[str, str]] | None = None,
                        computes: list[tuple[str, str, dict[str, str]]] | None = None) -> Iterator[Cluster]:
    """The operator's order: ``api_db sync``, ``cell_v2 map_cell0``, ``create_cell`` for cell1 and cell2,
    ``db sync``; then identity, the other APIs, conductor and scheduler, and two compute processes
    (two fake hosts in cell1, two in cell2). ``kind``: "postgresql" or "mysql".

    With ``second_controller`` a second conductor and scheduler run on "controller2" (active/active
    on the same queues). ``computes``: other compute processes instead, as (process name, cell, options of
    its ``[fake_driver]``). With ``own_broker`` the deployment gets a RabbitMQ node of its own instead of a vhost
    on the machine's (for a test that stops its broker). Set KILONOVA_KEEP_DIST_LOGS=1 to keep the processes'
    logs after the run.
    """
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-dist-"))
    databases = Databases(kind)
    names = {section: section.replace("_database", "") if section != "database" else "cell1" for section in SECTIONS}
    # The databases are created while the broker is set up: each side is seconds of waiting on a server.
    creator = ThreadPoolExecutor(1)
    creating = creator.submit(databases.urls, [*names.values(), "cell2"])
    creator.shutdown(wait=False)
    with private_broker(workdir) if own_broker else rabbit_vhost("kn-dist") as transport_url:
        created = creating.result()
        urls = {section: created[name] for section, name in names.items()}
        cell2 = created["cell2"]
        options = {"compute": {"build_timeout": "30"}}
        for section, values in (extra or {}).items():
            options.setdefault(section, {}).update(values)
        cluster = Cluster(workdir, transport_url, urls, extra=options)
        cluster.kind = kind
        cluster.databases = databases
        cluster.cell_connections = {"cell1": urls["database"], "cell2": cell2}
        cluster.hosts = 4  # fake compute hosts, as the all-in-one's functional scenarios expect
        try:
            cluster.manage("api_db", "sync")
            cluster.manage("cell_v2", "map_cell0")
            cluster.manage("cell_v2", "create_cell", "--name", "cell1")
            cluster.manage("cell_v2", "create_cell", "--name", "cell2", "--database_connection", cell2,
                           "--transport-url", transport_url)
            cluster.manage("db", "sync")

            groups = [
                [("identity", ["identity"], None)],
                [("placement", ["placement"], None), ("image", ["image"], None), ("network", ["network"], None),
                 ("volume", ["volume"], None)],
                [("api", ["api"], None), ("conductor", ["conductor"], None), ("scheduler", ["scheduler"], None)],
            ]
            if second_controller:
                groups.append([("controller2", ["conductor", "scheduler"],
                                cluster.variant("controller2", {"DEFAULT": {"host": "controller2"}}))])
            computes = computes or [("compute-cell1", "cell1", {}), ("compute-cell2", "cell2", {})]
            groups.append([(name, ["compute"], cluster.compute_config(name, cell, **fake_driver))
                           for name, cell, fake_driver in computes])
            cluster.start_all(groups)
            cluster.write_clouds_yaml()
            yield cluster
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.stop()
            databases.drop_all()
            if os.environ.get("KILONOVA_KEEP_DIST_LOGS"):
                print(f"distributed test logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
