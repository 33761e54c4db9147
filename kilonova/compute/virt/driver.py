"""The interface every virt driver implements (fake now, libvirt later).

Methods are async; a driver whose hypervisor calls block runs them in worker threads.
Power states are Nova's integers.
"""
from __future__ import annotations

from typing import Any

NOSTATE, RUNNING, PAUSED, SHUTDOWN, CRASHED, SUSPENDED = 0, 1, 3, 4, 6, 7


class BuildFailure(Exception):
    """The driver could not spawn the instance on this host (the conductor may retry elsewhere)."""


class ComputeDriver:
    hypervisor_type = "unknown"
    # Guests can change power state by themselves (a shutdown inside the guest, a crash):
    # the agent then compares the hypervisor with the database every sync interval.
    syncs_power_state = True

    async def init_host(self) -> None:
        """Connect to the hypervisor and check the host, before the agent reports anything."""

    def set_event_handler(self, handler) -> None:
        """``handler(instance_uuid)`` is called, from any thread, when a guest changes state by itself."""

    async def cleanup_host(self) -> None:
        """Stop the driver's own background work (the agent is stopping; guests keep running)."""

    def describe(self) -> str:
        """One line for start-up messages: which driver, and how it runs guests."""
        return self.hypervisor_type

    async def spawn(self, instance: dict, image_meta: dict, network_info: list[dict]) -> None:
        raise NotImplementedError

    async def destroy(self, instance: dict) -> None:
        raise NotImplementedError

    async def reboot(self, instance: dict, reboot_type: str) -> None:
        raise NotImplementedError

    async def power_off(self, instance: dict) -> None:
        raise NotImplementedError

    async def power_on(self, instance: dict) -> None:
        raise NotImplementedError

    async def pause(self, instance: dict) -> None:
        raise NotImplementedError

    async def unpause(self, instance: dict) -> None:
        raise NotImplementedError

    async def suspend(self, instance: dict) -> None:
        raise NotImplementedError

    async def resume(self, instance: dict) -> None:
        raise NotImplementedError

    async def get_console_output(self, instance: dict) -> str:
        raise NotImplementedError

    async def get_vnc_console(self, instance: dict) -> dict:
        """Where the guest's VNC server listens: {"host": ..., "port": ...}."""
        raise NotImplementedError

    async def snapshot(self, instance: dict, image_id: str, progress=None) -> None:
        """Upload the instance's root disk as the data of image ``image_id`` (created, queued, by the API).

        The driver sets the image's disk and container formats (it knows what it uploads) and awaits
        ``progress("image_uploading")``, when given, once the disk is copied and the upload starts.
        """
        raise NotImplementedError

    async def resume_state_on_host_boot(self, instance: dict) -> None:
        """Start a guest the host lost (it rebooted): plug its network, define and start its domain."""
        await self.power_on(instance)

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        """Remove guests (and their files) of this host's instances that no longer exist; their uuids."""
        return []

    async def get_power_state(self, instance: dict) -> int:
        raise NotImplementedError

    def list_instance_uuids(self) -> list[str]:
        raise NotImplementedError

    def get_available_resource(self) -> dict[str, Any]:
        """vcpus, memory_mb, local_gb, hypervisor_type/version, supported_instances, ..."""
        raise NotImplementedError

    def get_traits(self) -> list[str]:
        return []
