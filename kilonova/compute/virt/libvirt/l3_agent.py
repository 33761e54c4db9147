"""The L3 agent (``kilonova serve l3``; ``[l3] agent``): every router as a namespace on this host.

Where it runs: in the all-in-one (``kilonova up`` with the libvirt driver) on the one host. In a cloud of
several hosts it is the *network node* role, as Neutron's legacy (centralised) L3 agent: run it on one host
whose bridges carry the tenant networks and whose external networks' bridges reach the outside world; every
router of the cloud lives there. (Neutron's DVR, a router on every compute host, is not offered.)

How changes arrive, within Kilonova's boundaries (the network API and RPC, no other service's tables):
the network service fans ``routers_updated(router_ids)`` out to target ``l3_agent`` once a change is
committed (``kilonova/network/l3_rpc.py``). The agent only notes the ids and wakes its worker, which reads
each router back through the network API as the service user -- the router, its ports, the subnets of their
addresses, its floating IPs -- and converges its namespace (``routers.py``) in a worker thread: a reconcile
loop, as DESIGN.md asks for periodic work. Every ``[l3] resync_interval`` seconds, and at start-up, it reads
every router and removes the namespaces of routers that are gone, so a lost message or a crash heals.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from pathlib import Path
from typing import Any

from kilonova.common.projects import service_client
from kilonova.common.service import Service, ServiceEnv
from kilonova.network.l3_rpc import L3_AGENT, TARGET

LOG = logging.getLogger(__name__)
INTERFACE = "network:router_interface"
GATEWAY = "network:router_gateway"
RETRY_SECONDS = 1.0


class L3SyncError(RuntimeError):
    pass


class _Endpoint:
    """What the RPC layer may call: only ``routers_updated``."""

    def __init__(self, agent: "L3AgentService") -> None:
        self._agent = agent

    async def routers_updated(self, router_ids: list[str]) -> None:
        self._agent.mark(router_ids)


class L3AgentService(Service):
    name = "l3"

    @classmethod
    def lock_name(cls, conf) -> str:
        return "l3"   # the routers' legs and bridges under the instances' directory

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        conf = env.conf
        self.network = service_client(conf, env.endpoints, "network")
        self.interval = max(1.0, conf.getfloat("l3", "resync_interval"))  # a full pass at most every second
        self.host_gateway = conf.getbool("l3", "host_gateway")
        self.dataplane = None
        self.enabled = False
        self._dirty: set[str] = set()
        self._full = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._subnets: dict[str, dict] = {}

    def _wanted(self) -> bool:
        choice = self.conf.get("l3", "agent").strip().lower()
        if choice in ("true", "yes", "1", "on"):
            return True
        if choice in ("false", "no", "0", "off"):
            return False
        if choice != "auto":
            raise SystemExit(f"[l3] agent must be auto, true or false, not {choice!r}")
        return self.conf.get("DEFAULT", "compute_driver") == "libvirt" and "network" in self.env.endpoints.apps

    async def start(self) -> None:
        self.enabled = self._wanted()
        if not self.enabled:
            return
        from kilonova.compute.virt.libvirt.routers import RouterDataplane

        self.dataplane = RouterDataplane(Path(self.conf.get("DEFAULT", "instances_path")) / "_networks")
        await self.env.transport.serve(TARGET, _Endpoint(self), concurrency=1, version=L3_AGENT.latest)

    async def after_start(self) -> None:
        """The first full sync once every service of the process runs (the network service makes router1
        then)."""
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="l3-agent")

    async def stop(self) -> None:
        if not self.enabled:
            return
        await self.env.transport.stop_serving(TARGET)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def mark(self, router_ids: list[str]) -> None:
        self._dirty.update(router_ids)
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        next_full = 0.0
        while True:
            left = next_full - time.monotonic()
            if left > 0 and not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            full = time.monotonic() >= next_full
            try:
                if full:
                    await self.sync_all()
                    next_full = time.monotonic() + self.interval
                else:
                    for router_id in sorted(dirty):
                        await self.sync(router_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again after a pause; nothing is lost
                LOG.warning("L3 agent: converging routers failed (tried again in %.0f s): %s", RETRY_SECONDS, exc)
                self._dirty |= dirty
                if full:
                    next_full = 0.0
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()

    async def sync(self, router_id: str) -> None:
        router = await self.desired(router_id)
        if router is None:
            await asyncio.to_thread(self.dataplane.remove, router_id)
        else:
            await self._apply(router)

    async def sync_all(self) -> None:
        self._subnets.clear()  # a full pass reads subnets afresh (their gateways may have changed)
        listed = await self._get("/v2.0/routers")
        wanted = set()
        for router in listed["routers"]:
            state = await self.desired(router["id"], router)
            if state is not None:
                wanted.add(router["id"])
                await self._apply(state)
        for router_id in await asyncio.to_thread(self.dataplane.routers):
            if router_id not in wanted:
                await asyncio.to_thread(self.dataplane.remove, router_id)

    async def _apply(self, router: dict[str, Any]) -> None:
        await asyncio.to_thread(self.dataplane.apply, router)
        gateway = router.get("gateway")
        if gateway and self.host_gateway and gateway.get("gateway_ip"):
            await asyncio.to_thread(self.dataplane.ensure_external, gateway["network_id"],
                                    f"{gateway['gateway_ip']}/{gateway['prefixlen']}")

    # ------------------------------------------------------------------ what a router should be

    async def _get(self, path: str, **params: Any) -> dict | None:
        response = await self.network.get(path, params=params or None)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise L3SyncError(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def _subnet(self, subnet_id: str) -> dict | None:
        if subnet_id not in self._subnets:
            found = await self._get(f"/v2.0/subnets/{subnet_id}")
            if found is None:
                return None
            self._subnets[subnet_id] = found["subnet"]
        return self._subnets[subnet_id]

    async def _leg(self, port: dict[str, Any]) -> dict[str, Any]:
        leg = {"port_id": port["id"], "network_id": port["network_id"], "mac": port["mac_address"],
               "addresses": []}
        for ip in port["fixed_ips"]:
            subnet = await self._subnet(ip["subnet_id"])
            if subnet is None or subnet.get("ip_version", 4) != 4:
                continue
            prefixlen = ipaddress.ip_network(subnet["cidr"]).prefixlen
            leg["addresses"].append(f"{ip['ip_address']}/{prefixlen}")
            leg.setdefault("gateway_ip", subnet.get("gateway_ip"))
            leg.setdefault("prefixlen", prefixlen)
        return leg

    async def desired(self, router_id: str, router: dict | None = None) -> dict[str, Any] | None:
        """The router as its namespace should be (None: it should have none: gone, or administratively down)."""
        if router is None:
            found = await self._get(f"/v2.0/routers/{router_id}")
            if found is None:
                return None
            router = found["router"]
        if not router.get("admin_state_up", True):
            return None
        ports = (await self._get("/v2.0/ports", device_id=router_id) or {"ports": []})["ports"]
        interfaces, gateway = [], None
        for port in ports:
            if port["device_owner"] == INTERFACE:
                interfaces.append(await self._leg(port))
            elif port["device_owner"] == GATEWAY:
                gateway = await self._leg(port)
        fips = (await self._get("/v2.0/floatingips", router_id=router_id) or {"floatingips": []})["floatingips"]
        info = router.get("external_gateway_info") or {}
        return {"id": router_id, "interfaces": interfaces, "gateway": gateway,
                "enable_snat": info.get("enable_snat", True), "routes": router.get("routes") or [],
                "floating_ips": [{"floating": fip["floating_ip_address"], "fixed": fip["fixed_ip_address"]}
                                 for fip in fips if fip.get("fixed_ip_address")]}
