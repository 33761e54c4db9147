"""Events from other services about this host's servers (``os-server-external-events``), and waiting for them.

``network-changed`` refreshes the server's network information from the network service and
``network-vif-deleted`` drops the deleted port from it, as upstream's compute manager does; every
other event (``network-vif-plugged``, ``network-vif-unplugged``, ...) is handed to whoever is
waiting for it, and logged as unexpected when nobody is.

A step that waits for events (a spawn on a driver that waits for its ports to be plugged) starts
collecting them *before* it does what causes them -- here the network service answers the port
binding and sends the event at once, so it may arrive before the spawn asks for it -- and then
waits for the ones it needs: ``wait_for_vif_plugged``. ``[DEFAULT] vif_plugging_timeout`` bounds
the wait; ``vif_plugging_is_fatal`` says whether a timeout (or a ``failed`` event) fails the spawn.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote, volumes
from kilonova.compute.virt.driver import BuildFailure
from kilonova.compute.volume_api import VolumeNotFound

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


class VirtualInterfaceCreateFailed(BuildFailure):
    """Upstream's VirtualInterfaceCreateException: the ports were not plugged in time (or failed)."""

    def __init__(self, detail: str):
        super().__init__(f"Virtual Interface creation failed: {detail}")


class _Collector:
    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str | None], str] = {}  # (name, tag) -> status
        self.changed = asyncio.Event()


class InstanceEvents:
    """The events of the servers some step of this host collects, by server."""

    def __init__(self) -> None:
        self._collectors: dict[str, _Collector] = {}

    @contextlib.contextmanager
    def collecting(self, uuid: str):
        self._collectors[uuid] = collector = _Collector()
        try:
            yield collector
        finally:
            if self._collectors.get(uuid) is collector:
                del self._collectors[uuid]

    def deliver(self, uuid: str, name: str, tag: str | None, status: str) -> bool:
        collector = self._collectors.get(uuid)
        if collector is None:
            return False
        collector.arrived[(name, tag)] = status
        collector.changed.set()
        return True


def instance_events(agent: ComputeManager) -> InstanceEvents:
    """This host's collectors (kept on the agent, made on first use)."""
    return vars(agent).setdefault("_instance_events", InstanceEvents())


def waits_for_vif_plugging(agent: ComputeManager) -> bool:
    return bool(getattr(agent.driver, "waits_for_vif_plugging", False))


async def wait_for_vif_plugged(agent: ComputeManager, collector: _Collector, uuid: str,
                               network_info: list[dict]) -> None:
    """Wait for ``network-vif-plugged`` of each port of ``network_info``; raise VirtualInterfaceCreateFailed
    when one fails or the timeout passes and ``vif_plugging_is_fatal``, else log and go on."""
    timeout = agent.conf.getfloat("DEFAULT", "vif_plugging_timeout")
    fatal = agent.conf.getbool("DEFAULT", "vif_plugging_is_fatal")
    wanted = {("network-vif-plugged", vif["port_id"]) for vif in network_info}
    if not wanted or timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    while not wanted <= collector.arrived.keys():
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(tag for _name, tag in wanted - collector.arrived.keys())
            LOG.warning("timeout waiting for network-vif-plugged of %s for %s on %s", missing, uuid, agent.host)
            if fatal:
                raise VirtualInterfaceCreateFailed(f"no network-vif-plugged for port(s) {', '.join(missing)} "
                                                   f"within {timeout:g} s")
            return
        collector.changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(collector.changed.wait(), left)
    failed = sorted(tag for key, status in collector.arrived.items() if key in wanted and status == "failed"
                    for tag in [key[1]])
    if failed:
        LOG.warning("network-vif-plugged failed for %s of %s on %s", failed, uuid, agent.host)
        if fatal:
            raise VirtualInterfaceCreateFailed(f"plugging port(s) {', '.join(failed)} failed")


async def _refresh_network_info(agent: ComputeManager, instance: dict, drop_port: str | None = None) -> None:
    current = await agent._current(instance["uuid"])
    if current is None:
        return
    network_info = current.get("network_info") or []
    changes: dict = {}
    if drop_port is not None:
        kept = [vif for vif in network_info if vif.get("port_id") != drop_port]
    else:
        kept, ports = [], []
        for vif in network_info:
            response = await agent.ports.network.get(f"/v2.0/ports/{vif['port_id']}")
            if response.status_code == 404:
                continue  # gone: network-vif-deleted follows
            if response.status_code != 200:
                kept.append(vif)
                continue
            ports.append(response.json()["port"])
            fresh = await agent.ports._vif(ports[-1], vif.get("preexisting", False))
            if vif.get("tag"):  # an attached interface's tag (os-interface, 2.49) is ours, not the port's
                fresh["tag"] = vif["tag"]
            kept.append(fresh)
        names = await agent.ports.security_group_names(ports) if ports and len(ports) == len(network_info) else None
        if names is not None and names != current.get("security_groups"):
            changes["security_groups"] = names  # what the server shows, as upstream reads it from its ports
    if kept != network_info:
        changes["network_info"] = kept
    if changes:
        await agent._update(instance["uuid"], changes)
    if "network_info" in changes:  # the driver's copy too (the libvirt metadata API shows floating IPs from it)
        await agent.driver.network_info_changed({**current, **changes}, kept)


def lacks_dhcp_server(instance: dict) -> bool:
    """Network information written before this host had DHCP ports: a DHCP subnet without its ``dhcp_server``."""
    return any(subnet.get("ip_version", 4) == 4 and subnet.get("enable_dhcp") is not False
               and "dhcp_server" not in subnet
               for vif in instance.get("network_info") or [] for subnet in vif.get("subnets") or [])


async def learn_dhcp_servers(agent: ComputeManager, instances: list[dict]) -> None:
    """At start-up, the servers whose network information predates this host's DHCP ports read theirs again:
    their networks' namespaces then take the DHCP port's address off the gateway, which routers hold."""
    for instance in instances:
        if lacks_dhcp_server(instance) and instance.get("task_state") is None:
            try:
                await _refresh_network_info(agent, instance)
            except Exception as exc:  # noqa: BLE001 - the next network-changed tries again
                LOG.warning("network information of %s could not be refreshed: %s", instance["uuid"], exc)


@remote
async def external_instance_event(agent: ComputeManager, instances: list[dict], events: list[dict]) -> None:
    by_uuid = {instance["uuid"]: instance for instance in instances}
    for event in events:
        uuid, name, tag = event["server_uuid"], event["name"], event.get("tag")
        instance = by_uuid.get(uuid)
        if instance is None:
            continue
        LOG.debug("event %s:%s (%s) for %s on %s", name, tag, event.get("status"), uuid, agent.host)
        try:
            if name == "network-changed":
                await _refresh_network_info(agent, instance)
            elif name == "network-vif-deleted" and tag:
                await _refresh_network_info(agent, instance, drop_port=tag)
            elif name == "volume-extended" and tag:
                try:
                    await volumes.extend(agent, instance, tag)
                except VolumeNotFound:   # as upstream: a warning, the other events go on
                    LOG.warning("volume-extended for %s: no such volume, nothing extended on %s", tag, uuid)
            elif not instance_events(agent).deliver(uuid, name, tag, event.get("status", "completed")):
                LOG.info("unexpected event %s:%s for %s (vm_state %s, task_state %s) on %s", name, tag, uuid,
                         instance.get("vm_state"), instance.get("task_state"), agent.host)
        except Exception:  # noqa: BLE001 - one event must not lose the others
            LOG.exception("handling event %s:%s for %s on %s failed", name, tag, uuid, agent.host)
