"""``kilonova up``: the whole cloud in one process.

Builds every service from the configuration, binds every API's port (a busy one stops the start before
anything is written), prepares their databases, serves each HTTP API on its own port, and once all are
serving writes ``clouds.yaml`` and ``openrc``; runs until SIGINT/SIGTERM.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

import uvicorn
import yaml

from kilonova.common import health_checks, metrics, private_files
from kilonova.common.catalog import catalog_urls, root_urls
from kilonova.common.clients import Endpoints
from kilonova.common.http import H11_MAX_HEADER_BYTES, Router, ServiceApp
from kilonova.common.http_protocol import ReadTimeoutH11Protocol
from kilonova.common.rpc import get_transport
from kilonova.common.service import Service, ServiceEnv
from kilonova.config import Config
from kilonova.console.urls import base_url as console_base_url
from kilonova.runtime import PortInUse, StateLock
from kilonova.services import SERVICE_CLASSES, SERVICES_IN_PORT_ORDER

LOG = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 75


def load_class(spec: str) -> type[Service]:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def ensure_secrets(state_dir: Path) -> dict[str, str]:
    """Generated passwords, created on first start and kept in the state directory."""
    path = state_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {name: secrets.token_urlsafe(18) for name in ("admin_password", "demo_password", "service_password")}
    private_files.private_dir(state_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    return values


def service_locks(conf: Config, names: list[str] | None, command: str) -> list[StateLock]:
    """The locks of the services in ``names`` (all: None) that own files in the state directory
    (``Service.lock_name``), to take before anything there is touched: ``StateDirBusy`` names the process
    that runs one of them already."""
    locks: list[StateLock] = []
    try:
        for name, spec in SERVICE_CLASSES.items():
            lock_name = load_class(spec).lock_name(conf) if names is None or name in names else None
            if lock_name:
                locks.append(StateLock(conf.state_dir, command, lock_name))
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def make_state_private(conf: Config) -> None:
    """Owner-only state directory, also when an older release made it (see ``private_files``)."""
    leave_open = []
    if conf.get("DEFAULT", "compute_driver") == "libvirt":
        leave_open.append(conf.get("DEFAULT", "instances_path"))   # QEMU opens the guests' disks there
    private_files.private_dir(conf.state_dir)
    private_files.tighten(conf.state_dir, leave_open)


class AllInOne:
    """Some or all of the services in this process (``names`` in ``SERVICE_CLASSES`` order)."""

    def __init__(self, conf: Config, names: list[str] | None = None):
        self.conf = conf
        make_state_private(conf)
        values = ensure_secrets(conf.state_dir)
        # Passwords set in the configuration file win; the generated ones fill the gaps.
        for section, option, generated in (("identity", "admin_password", "admin_password"),
                                           ("identity", "demo_password", "demo_password"),
                                           ("service_user", "password", "service_password")):
            if not conf.get(section, option):
                conf.set(section, option, values[generated])
        from kilonova.compute import heartbeat
        heartbeat.set_cell_hint(conf.get("compute", "cell"))
        self.endpoints = Endpoints(urls=root_urls(conf))
        self.transport = get_transport(conf.get("DEFAULT", "transport_url"))
        env = ServiceEnv(conf=conf, endpoints=self.endpoints, transport=self.transport)
        chosen = set(names or SERVICE_CLASSES)
        unknown = chosen - set(SERVICE_CLASSES)
        if unknown:
            raise SystemExit(f"unknown service(s): {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(SERVICE_CLASSES)}")
        self.services = [load_class(spec)(env) for name, spec in SERVICE_CLASSES.items() if name in chosen]
        for service in self.services:
            if service.app is not None and service.service_type:
                self.endpoints.apps[service.service_type] = service.app
                service.app.health_checks = health_checks.for_service(service, self.transport)
        self._servers: list[uvicorn.Server] = []
        self._listeners: list[tuple[ServiceApp, socket.socket]] | None = None

    def bind(self) -> None:
        """Listen on every API's port now, before databases or client files are touched: a port another
        process has stops the start here, named (``PortInUse``)."""
        host = self.conf.get("DEFAULT", "my_ip")
        wanted = [(service.app, service.service_type, self.conf.getint("ports", service.service_type))
                  for service in self.services if service.app is not None and service.service_type]
        metrics_port = self.conf.getint("DEFAULT", "metrics_port")
        if metrics_port:
            wanted.append((self._operations_app(), "metrics", metrics_port))
        listeners = []
        try:
            for app, name, port in wanted:
                listeners.append((app, _listen(host, port, name)))
        except PortInUse:
            for _, sock in listeners:
                sock.close()
            raise
        self._listeners = listeners

    def prepare(self) -> None:
        for service in self.services:
            service.prepare()

    async def run(self, ready: "asyncio.Event | None" = None, on_ready=None) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if self._listeners is None:
            self.bind()
        for app, sock in self._listeners:
            host, port = sock.getsockname()[:2]
            # Idle keep-alive connections stay open 75 s, not uvicorn's 5 s: clients that poll every
            # 5 s (the openstack CLI's --wait) otherwise reuse a connection just as it is closed and
            # get "Connection reset by peer".
            config = uvicorn.Config(app, host=self.conf.get("DEFAULT", "my_ip"), port=port,
                                    log_level="warning", access_log=False, lifespan="off",
                                    timeout_keep_alive=KEEP_ALIVE_SECONDS, http=ReadTimeoutH11Protocol,
                                    # h11 drops a request whose headers pass 16 KiB with a bare
                                    # 400; read further so the app answers a 431 in its API's format.
                                    h11_max_incomplete_event_size=H11_MAX_HEADER_BYTES)
            config.client_socket_timeout = self.conf.getfloat("wsgi", "client_socket_timeout")
            self._servers.append(_QuietServer(config))
        serving = [asyncio.create_task(server.serve(sockets=[sock]))
                   for server, (_, sock) in zip(self._servers, self._listeners)]
        while not all(server.started for server in self._servers):
            if any(task.done() for task in serving):
                for task in serving:
                    if task.done() and task.exception():
                        raise task.exception()
                raise SystemExit("an API server failed to start")
            await asyncio.sleep(0.01)
        for service in self.services:
            await service.start()
        for service in self.services:
            await service.after_start()
        if hasattr(self.transport, "depths"):
            metrics.add_refresher(metrics.queue_depths(self.transport))
        # What start-up made (modules, schemas, engines, compiled statements, caches) lives as long as the
        # process: out of the garbage collector's full passes, which otherwise walked all of it again every
        # few seconds under load (a third of a second each with 200 servers).
        gc.collect()
        gc.freeze()
        if on_ready is not None:
            on_ready()
        if ready is not None:
            ready.set()
        await stop.wait()
        await self.shutdown(serving)

    def _operations_app(self) -> ServiceApp:
        """``/metrics`` and ``/healthcheck`` of the whole process (``[DEFAULT] metrics_port``): for processes
        that serve no API (a conductor, a scheduler, a compute host), or one place to scrape."""
        app = ServiceApp("process", Router())
        checks = {}
        for service in self.services:
            checks.update(dict(health_checks.for_service(service, self.transport)))
        broker = health_checks.broker(self.transport)
        if broker is not None:
            checks.update(dict([broker]))
        app.health_checks = list(checks.items())
        return app

    async def shutdown(self, serving: list[asyncio.Task]) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                await service.stop()
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*serving, return_exceptions=True)
        await self.transport.close()


def _listen(host: str, port: int, name: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn: no wait after a restart
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        what = "the /metrics port ([DEFAULT] metrics_port)" if name == "metrics" else f"the {name} API"
        raise PortInUse(f"port {port} on {host} for {what} cannot be used: {exc.strerror or exc}") from None
    return sock


class _QuietServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: the runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn releases
        pass


def write_client_config(conf: Config, clouds_yaml: Path) -> tuple[Path, Path]:
    """Merge the ``kilonova`` (admin) and ``kilonova-demo`` clouds into clouds.yaml; write openrc."""
    auth_url = catalog_urls(conf)["identity"]
    region = conf.get("DEFAULT", "region_name")

    def cloud(user: str, project: str, password: str) -> dict:
        return {
            "auth": {"auth_url": auth_url, "username": user, "password": password, "project_name": project,
                     "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": region, "interface": "public", "identity_api_version": 3,
        }

    clouds_yaml.parent.mkdir(parents=True, exist_ok=True)
    existing = {}
    if clouds_yaml.exists():
        existing = yaml.safe_load(clouds_yaml.read_text()) or {}
    existing.setdefault("clouds", {})
    existing["clouds"]["kilonova"] = cloud("admin", "admin", conf.get("identity", "admin_password"))
    existing["clouds"]["kilonova-demo"] = cloud("demo", "demo", conf.get("identity", "demo_password"))
    clouds_yaml.write_text(yaml.safe_dump(existing, sort_keys=False))
    os.chmod(clouds_yaml, 0o600)
    openrc = conf.state_dir / "openrc"
    with private_files.open_private(openrc, "w") as handle:
        handle.write(
            "# Source this file to use the openstack and nova CLIs against Kilonova as admin.\n"
            f"export OS_AUTH_URL={auth_url}\n"
            "export OS_IDENTITY_API_VERSION=3\n"
            "export OS_USERNAME=admin\n"
            "export OS_PROJECT_NAME=admin\n"
            "export OS_USER_DOMAIN_NAME=Default\n"
            "export OS_PROJECT_DOMAIN_NAME=Default\n"
            f"export OS_PASSWORD='{conf.get('identity', 'admin_password')}'\n"
            f"export OS_REGION_NAME={region}\n"
        )
    return clouds_yaml, openrc


def up(conf: Config, clouds_yaml: Path, lock: StateLock | None = None) -> None:
    started = time.monotonic()
    cloud = AllInOne(conf)
    cloud.bind()
    cloud.prepare()

    def announce() -> None:
        # Only now, with every port bound and every service started, do the client files change.
        clouds_path, openrc = write_client_config(conf, clouds_yaml)
        urls = catalog_urls(conf)
        if lock is not None:
            lock.publish(state="running", endpoints={name: urls[name] for name in SERVICES_IN_PORT_ORDER},
                         ports={name: conf.getint("ports", name) for name in SERVICES_IN_PORT_ORDER},
                         novncproxy_port=conf.getint("vnc", "novncproxy_port"), consoles=console_base_url(conf),
                         services=[service.name for service in cloud.services],
                         clouds_yaml=str(clouds_path), openrc=str(openrc))
        lines = [f"Kilonova is up in {time.monotonic() - started:.1f}s (state in {conf.state_dir})"]
        for service in SERVICES_IN_PORT_ORDER:
            lines.append(f"  {service:<13} {urls[service]}")
        if conf.get("DEFAULT", "compute_driver") == "libvirt":
            lines.append(f"  compute host: {conf.get('DEFAULT', 'host')} (libvirt driver, real guests)")
        else:
            lines.append(f"  compute hosts: {conf.getint('fake_driver', 'hosts')} (fake driver)")
        lines.append(f"  {'consoles':<10} {console_base_url(conf)}")
        lines.append(f"  clouds.yaml: {clouds_path} (clouds 'kilonova' = admin, 'kilonova-demo' = demo)")
        lines.append(f"  openrc: {openrc}")
        lines.append("Try: OS_CLOUD=kilonova openstack server list   (Ctrl-C stops)")
        print("\n".join(lines), flush=True)

    try:
        asyncio.run(cloud.run(on_ready=announce))
    except KeyboardInterrupt:
        pass
    print("Kilonova stopped.", file=sys.stderr, flush=True)


def serve(conf: Config, names: list[str]) -> None:
    """``kilonova serve NAME...``: only the named services, each API on its configured port."""
    started = time.monotonic()
    cloud = AllInOne(conf, names)
    cloud.bind()
    cloud.prepare()

    def announce() -> None:
        urls = root_urls(conf)
        lines = [f"Kilonova is serving {', '.join(names)} (ready in {time.monotonic() - started:.1f}s)"]
        for service in cloud.services:
            if service.app is not None and service.service_type:
                lines.append(f"  {service.service_type:<13} {urls[service.service_type]}")
            elif service.name == "novncproxy":
                lines.append(f"  {'consoles':<10} {console_base_url(conf)}")
        if conf.getint("DEFAULT", "metrics_port"):
            where = f"{conf.get('DEFAULT', 'my_ip')}:{conf.getint('DEFAULT', 'metrics_port')}"
            lines.append(f"  {'metrics':<13} http://{where}/metrics (and /healthcheck)")
        print("\n".join(lines), flush=True)

    try:
        asyncio.run(cloud.run(on_ready=announce))
    except KeyboardInterrupt:
        pass
    print("Kilonova stopped.", file=sys.stderr, flush=True)
