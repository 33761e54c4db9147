"""The compute agent of one host: its life (start-up recovery, heartbeats, usage, power-state sync) and the
dispatch of its RPC methods to the operation modules (kilonova/compute/agent/operations).

It never opens a database: state goes through the conductor, capacity to
Placement, ports to the network service. Operations on one instance are
serialised by a per-instance lock, so a delete that arrives during a build runs
after it and cleans up everything the build created.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from kilonova.common.rpc import RemoteError, RPCClient, RPCError
from kilonova.compute.agent.network import PortBinder
from kilonova.compute.agent import operations
from kilonova.compute.agent.operations.snapshot import SNAPSHOT_TASK_STATES
from kilonova.compute.agent.operations import events as event_operations
from kilonova.compute.agent.operations import rebuild as rebuild_operations
from kilonova.compute.agent.resources import ProviderReporter
from kilonova.compute.agent.security_groups import security_groups
from kilonova.compute import events, faults, versions
from kilonova.compute.heartbeat import Heartbeat
from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import ComputeDriver

DISABLED_TRAIT = "COMPUTE_STATUS_DISABLED"
LOG = logging.getLogger(__name__)

class ComputeManager:
    def __init__(self, host: str, driver: ComputeDriver, conductor: RPCClient, placement, network, conf,
                 images=None, transport=None, volumes=None):
        self.host = host
        self._transport = transport  # this host's cell transport: the other hosts of a move are reached on it
        self.driver = driver
        self.conductor = conductor
        self.images = images  # the image service as the service user: snapshot checks and clean-up
        self.volumes = volumes  # the volume service as the service user: attachments of this host's servers
        self.conf = conf
        self.ports = PortBinder(network, host, conf.get("DEFAULT", "default_availability_zone"),
                                dhcp=bool(getattr(driver, "serves_dhcp", False)))
        self.reporter = ProviderReporter(placement, conf)
        self.heartbeat = Heartbeat(conductor, host, "nova-compute", conf.getfloat("DEFAULT", "report_interval"),
                                   version=versions.compute_service_version(conf))
        self.node_uuid: str | None = None
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._usage_dirty = True
        self._task: asyncio.Task | None = None
        self._sync_task: asyncio.Task | None = None
        self._sync_now = asyncio.Event()
        self.started_at = datetime.utcnow().isoformat(timespec="microseconds")
        self._started_builds: set[str] | None = set()  # builds this life took, until start-up is over
        self.failed_builds = 0
        self._status_disabled = False  # whether the provider carries COMPUTE_STATUS_DISABLED  # consecutive build failures on this host (a success resets it), as upstream
        operations.load()

    def __getattr__(self, name: str):
        """An RPC method of one of the operation modules, bound to this host."""
        operation = operations.REMOTE.get(name) if not name.startswith("_") else None
        if operation is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name}")
        return functools.partial(operation, self)

    def compute_rpc(self, host: str) -> RPCClient:
        """Another compute host of this cell (a move's steps go from host to host, as upstream's do)."""
        return RPCClient(self._transport, f"compute.{host}", self.conf.getfloat("DEFAULT", "rpc_response_timeout"),
                         interface=versions.COMPUTE, version_cap=versions.compute_pin(self.conf))

    # ------------------------------------------------------------------ life

    async def init_host(self) -> None:
        await self.driver.init_host()
        service = await self.heartbeat.beat()
        resources = self.driver.get_available_resource()
        self.node_uuid = await self.conductor.call(
            "compute_node_update", host=self.host, nodename=self.host,
            values={**resources, "hypervisor_hostname": self.host}, service_id=(service or {}).get("id"))
        # A disabled service's provider carries COMPUTE_STATUS_DISABLED: Placement leaves it out of candidates.
        self._status_disabled = bool((service or {}).get("disabled"))
        await self.reporter.sync(self.node_uuid, self.host, resources,
                                 self.driver.get_traits() + ([DISABLED_TRAIT] if self._status_disabled else []))
        await security_groups(self).start()  # every port's rules again (before guests restart), then kept current
        # Servers evacuated away while this host was down: their guests here go, before anything restores them.
        evacuated = await rebuild_operations.clean_evacuated(self)
        instances = await self.conductor.call("instances_on_host", host=self.host)
        for instance in instances:
            if instance["uuid"] in evacuated:
                continue
            if self._interrupted_build(instance):
                await self._fail_interrupted_build(instance)
                continue
            if instance["vm_state"] not in ("active", "stopped", "paused", "suspended", "resized"):
                continue
            if self.driver.syncs_power_state:
                await self._recover_guest(instance)
            else:
                await self._restore_guest(instance)
        if self.driver.syncs_power_state:  # a real hypervisor: its guests outlive the agent
            await self._remove_orphans()
        if self.ports.dhcp:  # an older release's servers learn this host's DHCP ports (the gateway is the router's)
            await event_operations.learn_dhcp_servers(self, [i for i in instances if i["uuid"] not in evacuated])
        self._started_builds = None  # only needed to tell this life's builds from a previous one's
        await self._report_usage()
        self._task = asyncio.create_task(self._periodic(), name=f"compute-{self.host}-periodic")
        interval = self.conf.getfloat("DEFAULT", "sync_power_state_interval")
        if self.driver.syncs_power_state and interval > 0:
            loop = asyncio.get_running_loop()
            self.driver.set_event_handler(lambda uuid: loop.call_soon_threadsafe(self._sync_now.set))
            self._sync_task = asyncio.create_task(self._sync_loop(interval), name=f"compute-{self.host}-sync")

    def _interrupted_build(self, instance: dict) -> bool:
        """A build of an earlier life of this agent that will not finish: it was spawning, or (in one
        process, whose queues died with it) its message is lost. Over RabbitMQ a build not yet started
        still has its message queued: it is left to it."""
        if instance["vm_state"] != "building" or instance["created_at"] >= self.started_at:
            return False
        messages_lost = self.conf.get("DEFAULT", "transport_url").startswith("inproc")
        return instance["task_state"] == "spawning" or (instance["task_state"] is None and messages_lost)

    async def _fail_interrupted_build(self, instance: dict) -> None:
        """A build this host was running when its agent stopped cannot resume: ERROR, and free what it held.

        The build message of that build comes back (it was never acknowledged) and finds the server
        spawning: it is dropped. A build this agent's new life has started meanwhile is left alone.
        """
        uuid = instance["uuid"]
        if uuid in (self._started_builds or ()):
            # This life's build of it (its message came back before start-up got here) set it spawning and holds
            # its lock until the spawn ends: start-up does not wait for that (its heartbeats would stop meanwhile).
            return
        async with self._locks[uuid]:
            if uuid in (self._started_builds or ()):
                return
            failed = await self._update(uuid, {"vm_state": "error", "task_state": None, "power_state": power.NOSTATE},
                                        expected_task_state=[instance["task_state"]], expected_vm_state=["building"],
                                        expected_host=self.host,
                                        fault="Build was interrupted by a restart of the compute service.")
            if failed is None:  # finished, moved or deleted meanwhile
                return
            await self.driver.destroy(instance)
            await self.ports.release(uuid, failed.get("network_info") or [])
            await self.reporter.release(uuid)

    async def _recover_guest(self, instance: dict) -> None:
        """After a restart of the agent (or of the whole host), make guest and database agree again.

        A guest the database says is running but that has no running domain (the host rebooted,
        libvirtd lost it) is started again when ``resume_guests_state_on_host_boot`` says so, else
        recorded as stopped (Nova's default). A snapshot the restart interrupted is abandoned.
        """
        uuid = instance["uuid"]
        async with self._locks[uuid]:
            values: dict[str, Any] = {}
            fault = None
            if instance["task_state"] in SNAPSHOT_TASK_STATES:
                LOG.warning("snapshot of %s was interrupted by the restart of %s", uuid, self.host)
                values["task_state"] = None
            elif instance["task_state"] is not None:
                return  # the operation under way reports, or its own recovery applies
            actual = await self.driver.get_power_state(instance)
            if instance["vm_state"] == "active" and actual in (power.NOSTATE, power.SHUTDOWN, power.CRASHED):
                if self.conf.getbool("DEFAULT", "resume_guests_state_on_host_boot"):
                    LOG.warning("instance %s on %s was running before the restart: starting it again", uuid,
                                self.host)
                    try:
                        await self.driver.resume_state_on_host_boot(instance)
                        values.update(power_state=power.RUNNING)
                    except Exception as exc:  # noqa: BLE001 - the guest cannot come back: say so
                        LOG.warning("instance %s could not be started again: %s", uuid, exc)
                        values.update(vm_state="error", power_state=await self.driver.get_power_state(instance))
                        fault = f"Could not resume the guest after a host restart: {exc}"
                else:
                    LOG.warning("instance %s on %s is no longer running after the restart: stopped", uuid, self.host)
                    values.update(vm_state="stopped", power_state=power.SHUTDOWN)
            elif actual != instance["power_state"]:
                values["power_state"] = actual
            if values:
                await self._update(uuid, values, fault=fault)

    async def _remove_orphans(self) -> None:
        """Guests of instances deleted while this agent was down: destroy them and remove their files."""
        try:
            known = {i["uuid"] for i in await self.conductor.call("instances_on_host", host=self.host)}
            known |= {uuid for uuid, lock in self._locks.items() if lock.locked()}
            for uuid in await self.driver.cleanup_orphans(known):
                LOG.warning("removed the guest of deleted instance %s from %s", uuid, self.host)
        except Exception:  # noqa: BLE001 - leftovers are untidy, not fatal; the next start tries again
            LOG.exception("removing deleted instances' guests on %s failed", self.host)

    async def _restore_guest(self, instance: dict) -> None:
        """After an agent restart the hypervisor's guests are still there; the fake driver recreates them."""
        if instance["uuid"] not in self.driver.list_instance_uuids():
            with contextlib.suppress(Exception):
                await self.driver.power_on(instance)
                if instance["vm_state"] == "stopped" or (instance["vm_state"] == "resized"
                                                         and instance["power_state"] == power.SHUTDOWN):
                    await self.driver.power_off(instance)

    async def _periodic(self) -> None:
        interval = self.conf.getfloat("DEFAULT", "report_interval")
        while True:
            await asyncio.sleep(interval)
            service = await self.heartbeat.beat()
            if service is not None and bool(service.get("disabled")) != self._status_disabled:
                await self._sync_status_trait(bool(service.get("disabled")))
            if self._usage_dirty:
                with contextlib.suppress(RPCError):
                    await self._report_usage()

    async def _sync_status_trait(self, disabled: bool) -> None:
        """The service was disabled or enabled (os-services): its provider's COMPUTE_STATUS_DISABLED follows at
        the next heartbeat, as upstream's compute manager syncs it (the scheduler's ComputeFilter, which reads
        the service record, already acts on it meanwhile)."""
        try:
            await self.reporter.set_trait(self.node_uuid, DISABLED_TRAIT, disabled)
        except Exception:  # noqa: BLE001 - tried again at the next heartbeat
            LOG.warning("could not set %s=%s on the provider of %s", DISABLED_TRAIT, disabled, self.host, exc_info=True)
            return
        self._status_disabled = disabled

    async def _report_usage(self) -> None:
        """The compute node's usage as Placement holds it: every claim on this host's provider counts,
        so a server being resized counts with both its flavors (the migration's claim here, the
        instance's on the other side) and a move's claims count where they are."""
        self._usage_dirty = False
        if self.node_uuid is None:
            return
        used = await self.reporter.usage(self.node_uuid)
        values = {"vcpus_used": used["resources"].get("VCPU", 0) + used["resources"].get("PCPU", 0),
                  "memory_mb_used": used["resources"].get("MEMORY_MB", 0),
                  "local_gb_used": used["resources"].get("DISK_GB", 0),
                  "running_vms": used["consumers"],
                  # consecutive failed builds: the scheduler's BuildFailureWeigher sends the next ones elsewhere
                  "stats": {"failed_builds": self.failed_builds}}
        report_topology = getattr(self.driver, "topology_report", None)
        if report_topology is not None:  # NUMA cells and PCI devices with this host's guests placed
            values.update(report_topology())
        await self.conductor.call("compute_node_update", host=self.host, nodename=self.host, values=values,
                                  service_id=None)

    async def _sync_loop(self, interval: float) -> None:
        """Every interval, and soon after the hypervisor reports a guest's state change."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), interval)
            if self._sync_now.is_set():
                await asyncio.sleep(0.5)  # let the operation that caused the event report first
                self._sync_now.clear()
            try:
                await self.sync_power_states()
            except Exception:  # noqa: BLE001 - the next round tries again
                LOG.exception("power state sync on %s failed", self.host)

    async def sync_power_states(self) -> int:
        """Make the database follow the hypervisor: a guest that shut down or crashed by itself is stopped.

        Instances with a task under way are left alone (their operation will report). Returns how
        many instances changed.
        """
        changed = 0
        for instance in await self.conductor.call("instances_on_host", host=self.host):
            uuid = instance["uuid"]
            if instance["task_state"] is not None or instance["vm_state"] in ("building", "error", "deleted"):
                continue
            if self._locks[uuid].locked():
                continue
            async with self._locks[uuid]:
                actual = await self.driver.get_power_state(instance)
                values: dict[str, Any] = {}
                if actual != instance["power_state"]:
                    values["power_state"] = actual
                if instance["vm_state"] == "active" and actual in (power.SHUTDOWN, power.CRASHED, power.NOSTATE):
                    LOG.warning("instance %s on %s is no longer running (power state %s): stopped",
                                uuid, self.host, actual)
                    values["vm_state"] = "stopped"
                if values and await self._update(uuid, values, expected_task_state=[None]) is not None:
                    changed += 1
        return changed

    async def stop(self) -> None:
        self.driver.set_event_handler(None)
        await security_groups(self).stop()
        for task in (self._task, self._sync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.driver.cleanup_host()

    async def _update(self, uuid: str, values: dict, expected_task_state: list | None = None,
                      fault: str | None = None, **expected: Any) -> dict | None:
        """Report a change through the conductor; None when the instance is not in the expected state.

        ``expected``: ``expected_vm_state`` (a list) and ``expected_host``, compare-and-set as
        ``expected_task_state`` is. ``fault``: a fault message recorded with the change (an ERROR state).
        """
        try:
            return await faults.update(self.conductor, uuid, values,
                                       faults.record(fault, self.host) if fault else None,
                                       expected_task_state=expected_task_state, **expected)
        except RemoteError as exc:
            if exc.exc_type in ("NotFound", "UnexpectedTaskState"):
                LOG.info("instance %s changed under %s: %s", uuid, self.host, exc.message)
                return None
            raise

    async def _current(self, uuid: str) -> dict | None:
        try:
            return await self.conductor.call("instance_get", instance_uuid=uuid)
        except RemoteError:
            return None

    @contextlib.asynccontextmanager
    async def event(self, instance_uuid: str, request_id: str | None, event: str, finishes: str | None = None):
        """``async with agent.event(uuid, request_id, "compute_..."):`` records a step of the instance action.

        ``finishes``: the step is the operation's last, so its end also finishes instance action ``finishes``
        (message Error when the step failed, raised or recorded with ``event.failed``).
        """
        # A conductor of RPC 1.5 finishes the action with the step's end, in the same call and transaction.
        together = finishes is not None and versions.conductor_speaks(self.conductor, "1.5")
        write = functools.partial(self._write_event, finish_action=finishes) if together else self._write_event
        recording = events.record(write, instance_uuid, request_id, event, self.host)
        step = await recording.__aenter__()
        try:
            yield step
        except BaseException as exc:
            await recording.__aexit__(type(exc), exc, exc.__traceback__)  # the event's Error, then the action's
            if isinstance(exc, Exception) and not together:
                await self.finish_action(instance_uuid, request_id, finishes, failed=True)
            raise
        await recording.__aexit__(None, None, None)
        if not together:
            await self.finish_action(instance_uuid, request_id, finishes, failed=step.error is not None)

    async def _write_event(self, phase: str, finish_action: str | None = None, **fields) -> None:
        """``finish_action``: with the end of the step, finish that instance action too (conductor RPC 1.5)."""
        if phase == "finish" and finish_action is not None:
            try:
                await self.conductor.call("action_event", phase=phase, finish_action=finish_action, **fields)
                return
            except RemoteError as exc:
                if exc.exc_type != "UnsupportedVersion":
                    raise
            # A conductor older than 1.5 that [upgrade_levels] conductor does not name: two calls, as before.
            await self.conductor.call("action_event", phase=phase, **fields)
            await self.finish_action(fields["instance_uuid"], fields["request_id"], finish_action,
                                     failed=fields.get("result") == "Error")
            return
        await self.conductor.call("action_event", phase=phase, **fields)

    async def finish_action(self, instance_uuid: str, request_id: str | None, action: str | None,
                            failed: bool = False) -> None:
        """The operation of instance action ``action`` is over (message Error when ``failed``). Best effort:
        a lost record is not worth failing the operation."""
        if request_id is None or action is None:
            return
        try:
            await self.conductor.call("action_finish", instance_uuid=instance_uuid, request_id=request_id,
                                      action=action, message="Error" if failed else None)
        except RPCError:
            LOG.warning("could not finish action %s of %s", action, instance_uuid, exc_info=True)

    def usage_changed(self) -> None:
        """A server arrived on or left this host: report the compute node's usage at the next period."""
        self._usage_dirty = True
