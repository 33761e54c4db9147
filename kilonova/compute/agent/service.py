"""The compute agent service: one ComputeManager per host, each on RPC target ``compute.<host>``.

With the fake driver one process runs ``[fake_driver] hosts`` simulated hosts; with
``[DEFAULT] compute_driver = libvirt`` it runs one real host named ``[DEFAULT] host``.
"""
from __future__ import annotations

import asyncio

from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.common.service import Service, ServiceEnv
from kilonova.compute import versions
from kilonova.compute.agent.manager import ComputeManager
from kilonova.compute.agent.reports import ReportBatcher
from kilonova.compute.virt.driver import ComputeDriver
from kilonova.compute.virt.fake import FakeDriver

# Seconds a host's report waits for others to join its batch while the hosts register.
STARTUP_WINDOW = 0.05


def fake_host_names(conf) -> list[str]:
    """``<host_prefix><n>`` for each simulated host; with an empty ``host_prefix`` they are named after this
    node (``[DEFAULT] host``): the node itself when it simulates one host, else ``<host>-<n>``. A deployment
    of one compute process per machine or container then needs no per-process configuration."""
    prefix, count = conf.get("fake_driver", "host_prefix"), conf.getint("fake_driver", "hosts")
    if not prefix:
        node = conf.get("DEFAULT", "host")
        return [node] if count == 1 else [f"{node}-{i}" for i in range(1, count + 1)]
    return [f"{prefix}{i}" for i in range(1, count + 1)]


class ComputeAgentService(Service):
    name = "compute"

    @classmethod
    def lock_name(cls, conf) -> str:
        """One process per set of host names (``fake_host_names``: their prefix, or the node's name), so that
        compute processes of other hosts share the state directory; a lock per host would be a thousand files
        for a large fake fleet."""
        fake = conf.get("DEFAULT", "compute_driver") == "fake"
        return "compute@" + ((fake and conf.get("fake_driver", "host_prefix")) or conf.get("DEFAULT", "host"))

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        conf = env.conf
        auth = ServiceAuth(env.endpoints.http_client("identity"), conf.get("service_user", "username"),
                           conf.get("service_user", "password"), conf.get("service_user", "project_name"))
        placement = ServiceClient(env.endpoints.http_client("placement"), auth,
                                  {"OpenStack-API-Version": "placement 1.36"})
        network = ServiceClient(env.endpoints.http_client("network"), auth)
        conductor = versions.conductor_client(env.transport, conf)
        if conf.get("DEFAULT", "compute_driver") == "fake" and conf.getint("fake_driver", "hosts") > 1:
            # Many hosts in one process: their heartbeats and usage reports go to the conductor together.
            # A short window while the hosts register (start-up waits on each of their reports), a
            # longer one for the periodic reports after that.
            conductor = ReportBatcher(conductor, window=STARTUP_WINDOW)
        self._report_window = min(1.0, conf.getfloat("DEFAULT", "report_interval") / 4)
        images = ServiceClient(env.endpoints.http_client("image"), auth)
        volumes = ServiceClient(env.endpoints.http_client("block-storage"), auth)
        self.managers = [ComputeManager(host, driver, conductor, placement, network, conf, images=images,
                                       transport=env.transport, volumes=volumes)
                         for host, driver in self._drivers(conf, env, auth)]

    @staticmethod
    def _drivers(conf, env: ServiceEnv, auth: ServiceAuth) -> list[tuple[str, ComputeDriver]]:
        """(host, driver) pairs: many simulated hosts, or this machine as one libvirt host."""
        choice = conf.get("DEFAULT", "compute_driver")
        images = ServiceClient(env.endpoints.http_client("image", timeout=600.0), auth)
        if choice == "fake":
            return [(host, FakeDriver(host, conf, images)) for host in fake_host_names(conf)]
        if choice == "libvirt":
            from kilonova.compute.virt.libvirt.driver import LibvirtDriver

            host = conf.get("DEFAULT", "host")
            return [(host, LibvirtDriver(host, conf, images))]
        raise SystemExit(f"[DEFAULT] compute_driver must be fake or libvirt, not {choice!r}")

    async def start(self) -> None:
        for manager in self.managers:
            await self.env.transport.serve(f"compute.{manager.host}", manager,
                                           version=versions.compute_speaks(self.conf))
        # Hosts register concurrently, a few at a time, so a large fake fleet starts quickly (more at once
        # when their reports are batched: each waits for its batch).
        limit = asyncio.Semaphore(48 if self.managers and isinstance(self.managers[0].conductor, ReportBatcher)
                                  else 16)

        async def init(manager: ComputeManager) -> None:
            async with limit:
                await manager.init_host()

        await asyncio.gather(*(init(manager) for manager in self.managers))
        batcher = self.managers[0].conductor if self.managers else None
        if isinstance(batcher, ReportBatcher):
            batcher.window = self._report_window

    async def stop(self) -> None:
        for manager in self.managers:
            await manager.stop()
            await self.env.transport.stop_serving(f"compute.{manager.host}")
