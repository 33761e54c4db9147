"""The interface every virt driver implements (fake now, libvirt later).

Methods are async; a driver whose hypervisor calls block runs them in worker threads.
Power states are Nova's integers.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

NOSTATE, RUNNING, PAUSED, SHUTDOWN, CRASHED, SUSPENDED = 0, 1, 3, 4, 6, 7


class BuildFailure(Exception):
    """The driver could not spawn the instance on this host (the conductor may retry elsewhere)."""


class BuildAbort(BuildFailure):
    """The build cannot succeed on any host (a network without a free address): the server goes to ERROR at
    once instead of being retried on every alternate, as upstream's BuildAbortException."""


class MigrationError(Exception):
    """A step of a resize, cold or live migration failed on this host; the message says why."""


class ResizeError(MigrationError):
    """Refused before anything changed (e.g. a smaller root disk): the server can go back to ACTIVE with a
    fault, as upstream's InstanceFaultRollback(ResizeError)."""


class MigrationPreCheckError(MigrationError):
    """A live migration cannot happen between these hosts (upstream answers 400 for its prechecks)."""


class LiveMigrationAborted(MigrationError):
    """``live_migration`` ended because ``live_migration_abort`` was called; the guest runs on the source."""


class NoActiveMigration(MigrationError):
    """Abort or force-complete of a live migration that is not (or no longer) running on this host."""


class InstanceNotRunning(Exception):
    """The guest must be running for this (upstream's InstanceNotRunning: the API answers 409)."""


class InstanceAgentNotEnabled(Exception):
    """The guest has no agent to do this (upstream's QemuGuestAgentNotEnabled: the API answers 409)."""

    def __init__(self, message: str = "QEMU guest agent is not enabled"):
        super().__init__(message)


class InstancePasswordSetFailed(Exception):
    """The guest's agent could not set the password (upstream answers 409 with this message)."""

    def __init__(self, uuid: str, reason: str):
        super().__init__(f"Failed to set admin password on {uuid} because {reason}")


class InterfaceAttachNotSupported(Exception):
    """The driver cannot hot-plug ports (upstream's AttachInterfaceNotSupported)."""


class VolumeAttachNotSupported(Exception):
    """This driver cannot connect volumes to its guests."""


class ComputeDriver:
    hypervisor_type = "unknown"
    # Guests can change power state by themselves (a shutdown inside the guest, a crash):
    # the agent then compares the hypervisor with the database every sync interval.
    syncs_power_state = True
    # A spawn is done once the network service reported each new port plugged (network-vif-plugged):
    # the compute agent then waits [DEFAULT] vif_plugging_timeout for those events, as Nova does for libvirt.
    waits_for_vif_plugging = False
    # Security groups become rules on the host (the agent then hands it its ports' groups: update_port_filters).
    enforces_security_groups = False

    async def init_host(self) -> None:
        """Connect to the hypervisor and check the host, before the agent reports anything."""

    def set_event_handler(self, handler) -> None:
        """``handler(instance_uuid)`` is called, from any thread, when a guest changes state by itself."""

    async def cleanup_host(self) -> None:
        """Stop the driver's own background work (the agent is stopping; guests keep running)."""

    def describe(self) -> str:
        """One line for start-up messages: which driver, and how it runs guests."""
        return self.hypervisor_type

    async def spawn(self, instance: dict, image_meta: dict, network_info: list[dict],
                    block_device_info: list[dict] | None = None) -> None:
        """Create and start the guest. ``block_device_info``: its volumes (block device mappings with their
        ``connection_info`` and ``device_name``; the one of ``boot_index`` 0 is its root disk)."""
        raise NotImplementedError

    async def update_port_filters(self, ports: list[dict], groups: dict[str, dict],
                                  members: dict[str, list[str]]) -> None:
        """Make the host filter exactly ``ports`` (the network service's ports bound here) by their groups
        (id -> group with its ``security_group_rules``); ``members``: remote group id -> its addresses."""

    async def destroy(self, instance: dict, destroy_disks: bool = True) -> None:
        """Remove the guest; its disks too unless ``destroy_disks`` is False (upstream's flag: an evacuated
        guest's old host must keep disks on storage it shares with the guest's new host)."""
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

    # ---------------------------------------------------------------- lifecycle operations
    # Each raises NotImplementedError on a driver that cannot do it; the agent then fails the
    # operation with a fault saying so. ``instance`` is the cell's instance dict; during a resize its
    # ``new_flavor`` / ``old_flavor`` are set and ``flavor`` is the one the guest has now.

    async def migrate_disk_and_power_off(self, instance: dict, dest_host: str, flavor: dict) -> dict:
        """Source host of a resize or cold migration: stop the guest and make its disks ready to move.

        Returns ``disk_info``, a JSON-able dict the destination's ``finish_migration`` receives
        (where the disks are, their formats). The source keeps its copy until confirm or revert.
        """
        raise NotImplementedError

    async def finish_migration(self, instance: dict, disk_info: dict, network_info: list[dict], image_meta: dict,
                               resize_instance: bool, power_on: bool,
                               block_device_info: list[dict] | None = None) -> None:
        """Destination of a resize or cold migration: take the disks (growing them to the new flavor when
        ``resize_instance``), define the guest with ``instance["flavor"]`` (the new one), start it if
        ``power_on``. ``block_device_info``: the server's volumes (block device mappings) with their
        ``connection_info`` for this host, which the guest's volume disks take instead of the source's."""
        raise NotImplementedError

    async def confirm_migration(self, instance: dict) -> None:
        """Source host, at confirm: remove what is left of the guest there (disks kept for a revert)."""
        raise NotImplementedError

    async def volume_snapshot_create(self, instance: dict, volume_id: str, create_info: dict) -> None:
        """os-assisted-volume-snapshots: the guest's disk of the (qcow2, file-backed) volume switched onto
        ``create_info["new_file"]``, an overlay the volume service made next to the volume's active file."""
        raise NotImplementedError

    async def volume_snapshot_delete(self, instance: dict, volume_id: str, snapshot_id: str,
                                     delete_info: dict) -> None:
        """os-assisted-volume-snapshots: a snapshot's file merged out of the chain of the guest's disk
        (``merge_target_file`` None: the active file pulls down to ``file_to_merge``; else ``file_to_merge``
        is committed into ``merge_target_file``)."""
        raise NotImplementedError

    async def finish_revert_migration(self, instance: dict, network_info: list[dict], power_on: bool,
                                      block_device_info: list[dict] | None = None) -> None:
        """Source host, at revert: bring the guest back from the copy kept there, with ``instance["flavor"]``
        (the old one again); its volumes connected as ``block_device_info`` has them (as finish_migration)."""
        raise NotImplementedError

    async def rebuild(self, instance: dict, image_meta: dict, network_info: list[dict],
                      admin_password: str | None = None) -> None:
        """Recreate the guest's root disk from ``image_meta`` (and its config drive, with ``admin_password``
        when given) and boot it. ``instance`` already carries the new image_ref, name and metadata."""
        raise NotImplementedError

    async def rescue(self, instance: dict, rescue_image_meta: dict, network_info: list[dict],
                     admin_password: str | None) -> None:
        """Boot the guest from a rescue disk made of ``rescue_image_meta``, its own root disk attached second."""
        raise NotImplementedError

    async def unrescue(self, instance: dict) -> None:
        """Boot the guest from its own root disk again and remove the rescue disk."""
        raise NotImplementedError

    async def set_admin_password(self, instance: dict, new_pass: str) -> None:
        """Set the guest's admin password through its agent; InstanceAgentNotEnabled when it has none,
        InstancePasswordSetFailed when the agent fails."""
        raise NotImplementedError

    async def trigger_crash_dump(self, instance: dict) -> None:
        """Send the guest an NMI (upstream's trigger_crash_dump)."""
        raise NotImplementedError

    async def inject_network_info(self, instance: dict, network_info: list[dict]) -> None:
        """Hand the guest its (possibly changed) network configuration. A no-op where nothing is injected."""

    async def network_info_changed(self, instance: dict, network_info: list[dict]) -> None:
        """The network service changed the instance's ports (addresses, floating IPs): the host's copy of its
        network information is refreshed. A no-op where the driver keeps none."""

    # Ports can be hot-plugged into and out of its guests (os-interface); else both calls are refused.
    supports_attach_interface = False

    async def attach_interface(self, instance: dict, vif: dict) -> None:
        """Plug the port ``vif`` (a network_info entry) into the guest, running or stopped."""
        raise InterfaceAttachNotSupported(f"Attaching interfaces is not supported for instance {instance['uuid']}.")

    async def detach_interface(self, instance: dict, vif: dict) -> None:
        """Unplug the port ``vif`` from the guest."""
        raise InterfaceAttachNotSupported(f"Detaching interfaces is not supported for instance {instance['uuid']}.")

    # Volumes can be connected to its guests (os-volume_attachments, boot from volume); else refused.
    supports_volumes = False

    async def attach_volume(self, instance: dict, connection_info: dict, device: str) -> str:
        """Connect the volume of ``connection_info`` to the guest, running or stopped, as ``device``
        (``/dev/vdX``; the driver may pick another free one): returns the device it used."""
        raise VolumeAttachNotSupported(f"Attaching volumes is not supported for instance {instance['uuid']}.")

    async def detach_volume(self, instance: dict, connection_info: dict, device: str) -> None:
        """Disconnect the volume at ``device`` from the guest (a device already gone is not an error)."""
        raise VolumeAttachNotSupported(f"Detaching volumes is not supported for instance {instance['uuid']}.")

    async def extend_volume(self, instance: dict, connection_info: dict, new_size: int, device: str) -> None:
        """The volume at ``device`` has grown to ``new_size`` bytes: let the guest see it."""
        raise VolumeAttachNotSupported(f"Extending volumes is not supported for instance {instance['uuid']}.")

    async def swap_volume(self, instance: dict, old_connection_info: dict, new_connection_info: dict,
                          device: str) -> None:
        """Copy the volume at ``device`` to the new volume and put the new one in its place."""
        raise VolumeAttachNotSupported(f"Swapping volumes is not supported for instance {instance['uuid']}.")

    async def get_diagnostics(self, instance: dict) -> dict:
        """Diagnostics in the 2.48 format: state, driver, hypervisor, hypervisor_os, uptime, config_drive,
        num_cpus, num_nics, num_disks, memory_details {maximum, used}, cpu_details [{id, time,
        utilisation}], nic_details [...], disk_details [...]."""
        raise NotImplementedError

    # The host itself (os-hosts, os-hypervisors uptime), as upstream's ComputeDriver: a driver that cannot
    # raises NotImplementedError, which the API answers with a 501.

    async def get_host_uptime(self) -> str:
        """The output of ``uptime`` on this host."""
        raise NotImplementedError

    async def set_host_enabled(self, enabled: bool) -> str:
        """Let the host take new guests or not: "enabled" or "disabled"."""
        raise NotImplementedError

    async def host_maintenance_mode(self, host: str, mode: bool) -> str:
        """Start (evacuating the guests) or end a maintenance window: "on_maintenance" or "off_maintenance"."""
        raise NotImplementedError

    async def host_power_action(self, action: str) -> str:
        """Reboot, shut down or power up the host: the action done."""
        raise NotImplementedError

    # A live migration calls, in this order, handing each one's returned migrate_data to the next:
    # dest.check_can_live_migrate_destination -> source.check_can_live_migrate_source ->
    # dest.pre_live_migration -> source.live_migration, then source.post_live_migration_at_source and
    # dest.post_live_migration_at_destination, or dest.rollback_live_migration_at_destination when
    # live_migration raised (the libvirt driver needs the checks' data; the fake one copes without).

    async def check_can_live_migrate_destination(self, instance: dict, block_migration: bool | None) -> dict:
        """Destination of a live migration, before anything changes: can the guest run here?

        ``block_migration`` None means "auto" (2.25): the driver decides from whether both hosts share the
        instances' storage. Returns the first ``migrate_data`` (JSON-able, at least ``block_migration``
        as a bool) for the source's ``check_can_live_migrate_source``; raises MigrationPreCheckError."""
        return {"block_migration": bool(block_migration), "dest_host": getattr(self, "host", None)}

    async def check_can_live_migrate_source(self, instance: dict, migrate_data: dict) -> dict:
        """Source of a live migration, after the destination's check: refuse (MigrationPreCheckError) or
        return ``migrate_data`` with what the destination needs, for its ``pre_live_migration``."""
        return migrate_data

    async def pre_live_migration(self, instance: dict, network_info: list[dict], migrate_data: dict) -> dict:
        """Destination of a live migration, before it starts: plug networks, make the disks' files ready
        (empty ones for a block migration). Returns ``migrate_data`` with what the source needs."""
        raise NotImplementedError

    async def live_migration(self, instance: dict, dest_host: str, migrate_data: dict, progress=None) -> None:
        """Source of a live migration: move the running guest to ``dest_host``. Awaits
        ``progress({"memory_total_bytes", "memory_processed_bytes", "memory_remaining_bytes",
        "disk_total_bytes", "disk_processed_bytes", "disk_remaining_bytes"})`` from time to time.
        Raises when the migration fails (MigrationError) or is aborted (LiveMigrationAborted); the guest
        then still runs on the source."""
        raise NotImplementedError

    async def live_migration_force_complete(self, instance: dict) -> None:
        """Make a running live migration finish (pause the guest until it is copied, as upstream)."""
        raise NotImplementedError

    async def live_migration_abort(self, instance: dict) -> None:
        """Cancel a running live migration; the guest stays on the source."""
        raise NotImplementedError

    async def post_live_migration_at_source(self, instance: dict, network_info: list[dict]) -> None:
        """Source, after the guest runs on the destination: remove what is left of it here."""
        raise NotImplementedError

    async def post_live_migration_at_destination(self, instance: dict, network_info: list[dict]) -> None:
        """Destination, after the guest arrived: make it this host's own (persistent definition)."""
        raise NotImplementedError

    async def rollback_live_migration_at_destination(self, instance: dict, network_info: list[dict]) -> None:
        """Destination, after a failed or aborted live migration: remove what pre_live_migration made."""
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


async def uptime_line() -> str:
    """``uptime``'s line on this machine (``LANG=C``), as upstream's libvirt driver answers a host's uptime."""
    proc = await asyncio.create_subprocess_exec("uptime", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "LANG": "C"})
    out, _ = await proc.communicate()
    return out.decode(errors="replace")
