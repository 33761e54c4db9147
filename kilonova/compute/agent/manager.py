"""The compute agent of one host: builds, powers and deletes the servers placed on it.

It never opens a database: state goes through the conductor, capacity to
Placement, ports to the network service. Operations on one instance are
serialised by a per-instance lock, so a delete that arrives during a build runs
after it and cleans up everything the build created.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from kilonova.common.rpc import RemoteError, RPCClient, RPCError
from kilonova.compute.agent.network import PortBinder
from kilonova.compute.agent.resources import ProviderReporter
from kilonova.compute import versions
from kilonova.compute.heartbeat import Heartbeat
from kilonova.compute.virt import driver as power
from kilonova.compute.virt.driver import ComputeDriver

LOG = logging.getLogger(__name__)

# action -> (driver method, vm_state after, power_state after)
POWER_OPERATIONS = {
    "stop_instance": ("power_off", "stopped", power.SHUTDOWN),
    "start_instance": ("power_on", "active", power.RUNNING),
    "pause_instance": ("pause", "paused", power.PAUSED),
    "unpause_instance": ("unpause", "active", power.RUNNING),
    "suspend_instance": ("suspend", "suspended", power.SUSPENDED),
    "resume_instance": ("resume", "active", power.RUNNING),
}


SNAPSHOT_TASK_STATES = ("image_snapshot_pending", "image_snapshot", "image_pending_upload", "image_uploading")


class SnapshotAborted(Exception):
    """The snapshot cannot finish: the server changed under it or the image did not become active."""


class ComputeManager:
    def __init__(self, host: str, driver: ComputeDriver, conductor: RPCClient, placement, network, conf,
                 images=None):
        self.host = host
        self.driver = driver
        self.conductor = conductor
        self.images = images  # the image service as the service user: snapshot checks and clean-up
        self.conf = conf
        self.ports = PortBinder(network, host, conf.get("compute", "default_availability_zone"))
        self.reporter = ProviderReporter(placement, conf)
        self.heartbeat = Heartbeat(conductor, host, "nova-compute", conf.getfloat("DEFAULT", "report_interval"),
                                   version=versions.compute_service_version(conf))
        self.node_uuid: str | None = None
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._flavors: dict[str, dict] = {}  # instance uuid -> flavor, for usage reports
        self._usage_dirty = True
        self._task: asyncio.Task | None = None
        self._sync_task: asyncio.Task | None = None
        self._sync_now = asyncio.Event()
        self.started_at = datetime.utcnow().isoformat(timespec="microseconds")
        self._started_builds: set[str] | None = set()  # builds this life took, until start-up is over

    # ------------------------------------------------------------------ life

    async def init_host(self) -> None:
        await self.driver.init_host()
        service = await self.heartbeat.beat()
        resources = self.driver.get_available_resource()
        self.node_uuid = await self.conductor.call(
            "compute_node_update", host=self.host, nodename=self.host,
            values={**resources, "hypervisor_hostname": self.host}, service_id=(service or {}).get("id"))
        await self.reporter.sync(self.node_uuid, self.host, resources, self.driver.get_traits())
        for instance in await self.conductor.call("instances_on_host", host=self.host):
            if self._interrupted_build(instance):
                await self._fail_interrupted_build(instance)
                continue
            self._flavors[instance["uuid"]] = instance["flavor"]
            if instance["vm_state"] not in ("active", "stopped", "paused", "suspended"):
                continue
            if self.driver.syncs_power_state:
                await self._recover_guest(instance)
            else:
                await self._restore_guest(instance)
        if self.driver.syncs_power_state:  # a real hypervisor: its guests outlive the agent
            await self._remove_orphans()
        self._started_builds = None  # only needed to tell this life's builds from a previous one's
        await self._report_usage()
        self._task = asyncio.create_task(self._periodic(), name=f"compute-{self.host}-periodic")
        interval = self.conf.getfloat("compute", "sync_power_state_interval")
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
        async with self._locks[uuid]:
            if uuid in (self._started_builds or ()):
                return
            failed = await self._update(uuid, {"vm_state": "error", "task_state": None, "power_state": power.NOSTATE},
                                        expected_task_state=[instance["task_state"]], expected_vm_state=["building"],
                                        expected_host=self.host)
            if failed is None:  # finished, moved or deleted meanwhile
                return
            await self.driver.destroy(instance)
            await self.ports.release(uuid, failed.get("network_info") or [])
            await self.reporter.release(uuid)
            await self.conductor.call("add_fault", instance_uuid=uuid, code=500, host=self.host,
                                      message="Build was interrupted by a restart of the compute service.")

    async def _recover_guest(self, instance: dict) -> None:
        """After a restart of the agent (or of the whole host), make guest and database agree again.

        A guest the database says is running but that has no running domain (the host rebooted,
        libvirtd lost it) is started again when ``resume_guests_state_on_host_boot`` says so, else
        recorded as stopped (Nova's default). A snapshot the restart interrupted is abandoned.
        """
        uuid = instance["uuid"]
        async with self._locks[uuid]:
            values: dict[str, Any] = {}
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
                        with contextlib.suppress(RemoteError):
                            await self.conductor.call("add_fault", instance_uuid=uuid, code=500, host=self.host,
                                                      message=f"Could not resume the guest after a host "
                                                              f"restart: {exc}"[:255])
                else:
                    LOG.warning("instance %s on %s is no longer running after the restart: stopped", uuid, self.host)
                    values.update(vm_state="stopped", power_state=power.SHUTDOWN)
            elif actual != instance["power_state"]:
                values["power_state"] = actual
            if values:
                await self._update(uuid, values)

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
                if instance["vm_state"] == "stopped":
                    await self.driver.power_off(instance)

    async def _periodic(self) -> None:
        interval = self.conf.getfloat("DEFAULT", "report_interval")
        while True:
            await asyncio.sleep(interval)
            await self.heartbeat.beat()
            if self._usage_dirty:
                with contextlib.suppress(RPCError):
                    await self._report_usage()

    async def _report_usage(self) -> None:
        self._usage_dirty = False
        flavors = list(self._flavors.values())
        values = {"vcpus_used": sum(f["vcpus"] for f in flavors),
                  "memory_mb_used": sum(f["memory_mb"] for f in flavors),
                  "local_gb_used": sum(f["root_gb"] + f.get("ephemeral_gb", 0) for f in flavors),
                  "running_vms": len(flavors)}
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
        for task in (self._task, self._sync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.driver.cleanup_host()

    async def _update(self, uuid: str, values: dict, expected_task_state: list | None = None,
                      **expected: Any) -> dict | None:
        """Report a change through the conductor; None when the instance is not in the expected state.

        ``expected``: ``expected_vm_state`` (a list) and ``expected_host``, compare-and-set as
        ``expected_task_state`` is.
        """
        try:
            return await self.conductor.call("instance_update", instance_uuid=uuid, values=values,
                                              expected_task_state=expected_task_state, **expected)
        except RemoteError as exc:
            if exc.exc_type in ("NotFound", "UnexpectedTaskState"):
                LOG.info("instance %s changed under %s: %s", uuid, self.host, exc.message)
                return None
            raise

    # ------------------------------------------------------------------ RPC: build / delete

    async def build_and_run_instance(self, instance: dict, request_spec: dict, alternates: list,
                                     attempt: int = 1, deadline: float | None = None) -> None:
        uuid = instance["uuid"]
        if deadline is not None and time.time() > deadline:
            LOG.warning("the build of %s reached %s after its deadline: left to the conductor", uuid, self.host)
            return
        async with self._locks[uuid]:
            # Only a server still waiting for this host is built: a late or repeated message (the server
            # timed out to ERROR and gave back its claim, is ACTIVE already, was rescheduled elsewhere or
            # deleted) finds it in another state and is dropped.
            if await self._update(uuid, {"task_state": "spawning"}, expected_task_state=[None],
                                  expected_vm_state=["building"], expected_host=self.host) is None:
                LOG.info("build of %s on %s dropped: the server no longer waits for this build", uuid, self.host)
                return
            if self._started_builds is not None:
                self._started_builds.add(uuid)
            network_info: list[dict] = []
            try:
                network_info = await self.ports.allocate(instance, request_spec.get("requested_networks") or [])
                await self.driver.spawn(instance, request_spec.get("image") or {}, network_info)
            except Exception as exc:  # noqa: BLE001 - any failure here is a failed build to report
                LOG.info("build of %s failed on %s: %s", uuid, self.host, exc)
                await self.ports.release(uuid, network_info)
                await self.driver.destroy(instance)
                await self.conductor.cast("build_failed", instance_uuid=uuid, host=self.host, reason=str(exc),
                                          request_spec=request_spec, alternates=alternates, attempt=attempt)
                return
            done = await self._update(uuid, {
                "vm_state": "active", "task_state": None, "power_state": await self.driver.get_power_state(instance),
                "launched_at": datetime.utcnow().isoformat(timespec="microseconds"), "network_info": network_info,
            }, expected_task_state=["spawning"])
            if done is None:  # deleted while spawning: undo
                await self.driver.destroy(instance)
                await self.ports.release(uuid, network_info)
                return
            self._flavors[uuid] = instance["flavor"]
            self._usage_dirty = True

    async def terminate_instance(self, instance: dict) -> None:
        uuid = instance["uuid"]
        async with self._locks[uuid]:
            await self.driver.destroy(instance)
            current = await self._current(uuid) or instance
            await self.ports.release(uuid, current.get("network_info") or [])
            await self.reporter.release(uuid)
            await self.conductor.call("instance_destroy", instance_uuid=uuid)
            self._flavors.pop(uuid, None)
            self._usage_dirty = True
        self._locks.pop(uuid, None)

    async def _current(self, uuid: str) -> dict | None:
        try:
            return await self.conductor.call("instance_get", instance_uuid=uuid)
        except RemoteError:
            return None

    # ------------------------------------------------------------------ RPC: power

    async def _power(self, method: str, instance: dict) -> None:
        driver_method, vm_state, power_state = POWER_OPERATIONS[method]
        uuid = instance["uuid"]
        async with self._locks[uuid]:
            try:
                await getattr(self.driver, driver_method)(instance)
            except Exception as exc:  # noqa: BLE001 - report and leave the server usable
                LOG.warning("%s of %s failed on %s: %s", method, uuid, self.host, exc)
                await self._update(uuid, {"task_state": None})
                await self.conductor.call("add_fault", instance_uuid=uuid, code=500, message=str(exc)[:255],
                                          host=self.host)
                return
            await self._update(uuid, {"vm_state": vm_state, "power_state": power_state, "task_state": None})

    async def stop_instance(self, instance: dict) -> None:
        await self._power("stop_instance", instance)

    async def start_instance(self, instance: dict) -> None:
        await self._power("start_instance", instance)

    async def pause_instance(self, instance: dict) -> None:
        await self._power("pause_instance", instance)

    async def unpause_instance(self, instance: dict) -> None:
        await self._power("unpause_instance", instance)

    async def suspend_instance(self, instance: dict) -> None:
        await self._power("suspend_instance", instance)

    async def resume_instance(self, instance: dict) -> None:
        await self._power("resume_instance", instance)

    async def reboot_instance(self, instance: dict, reboot_type: str = "SOFT") -> None:
        uuid = instance["uuid"]
        async with self._locks[uuid]:
            try:
                # A simulated guest lost with its agent is recreated first; a real hypervisor's reboot
                # rebuilds a missing domain itself.
                if not self.driver.syncs_power_state and uuid not in self.driver.list_instance_uuids():
                    await self.driver.power_on(instance)
                await self.driver.reboot(instance, reboot_type)
            except Exception as exc:  # noqa: BLE001
                LOG.warning("reboot of %s failed on %s: %s", uuid, self.host, exc)
                await self._update(uuid, {"task_state": None})
                return
            await self._update(uuid, {"vm_state": "active", "power_state": power.RUNNING, "task_state": None})

    async def get_vnc_console(self, instance: dict) -> dict:
        """{"host", "port"} of the guest's VNC server, for a console proxy to connect to."""
        return await self.driver.get_vnc_console(instance)

    async def snapshot_instance(self, instance: dict, image_id: str) -> None:
        """createImage: the API made image ``image_id`` (queued) and set task_state image_snapshot_pending.

        Task states follow Nova: image_snapshot, image_pending_upload (the disk is copied),
        image_uploading, then None. A failure (or the server being deleted meanwhile) removes
        the image unless it became active, clears the task state and records a fault.
        """
        uuid = instance["uuid"]
        async with self._locks[uuid]:
            if await self._update(uuid, {"task_state": "image_snapshot"},
                                  expected_task_state=["image_snapshot_pending"]) is None:
                await self._discard_image(image_id)
                return
            current = ["image_snapshot"]

            async def progress(task_state: str) -> None:
                if await self._update(uuid, {"task_state": task_state}, expected_task_state=current) is None:
                    raise SnapshotAborted(f"instance {uuid} changed (deleted?) during its snapshot")
                current[:] = [task_state]

            try:
                await progress("image_pending_upload")
                await self.driver.snapshot(instance, image_id, progress)
                await self._check_image_active(image_id)
            except Exception as exc:  # noqa: BLE001 - report, and leave the server as it was
                LOG.warning("event=compute.instance.snapshot.error instance=%s image=%s host=%s: %s",
                            uuid, image_id, self.host, exc)
                await self._discard_image(image_id)
                await self._update(uuid, {"task_state": None}, expected_task_state=current)
                if not isinstance(exc, SnapshotAborted):
                    with contextlib.suppress(RemoteError):
                        await self.conductor.call("add_fault", instance_uuid=uuid, code=500, host=self.host,
                                                  message=f"Snapshot to image {image_id} failed: {exc}"[:255])
                return
            await self._update(uuid, {"task_state": None}, expected_task_state=current)
            LOG.info("event=compute.instance.snapshot.end instance=%s image=%s host=%s", uuid, image_id, self.host)

    async def _check_image_active(self, image_id: str) -> None:
        if self.images is None:
            return
        response = await self.images.get(f"/v2/images/{image_id}")
        status = response.json().get("status") if response.status_code == 200 else f"gone ({response.status_code})"
        if status != "active":
            raise RuntimeError(f"image {image_id} is {status} after its upload, not active")

    async def _discard_image(self, image_id: str) -> None:
        """Delete a snapshot image that did not become active (nothing usable is in it)."""
        if self.images is None:
            return
        try:
            response = await self.images.get(f"/v2/images/{image_id}")
            if response.status_code == 200 and response.json().get("status") != "active":
                await self.images.delete(f"/v2/images/{image_id}")
        except Exception:  # noqa: BLE001 - an orphan queued image is harmless; say so and go on
            LOG.warning("could not delete the failed snapshot image %s", image_id, exc_info=True)

    async def get_console_output(self, instance: dict, length: int | None = None) -> str:
        output = await self.driver.get_console_output(instance)
        if length is not None and length >= 0:
            lines = output.splitlines(keepends=True)
            output = "".join(lines[-length:]) if length else ""
        return output
