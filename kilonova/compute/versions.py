"""The compute services' RPC interfaces, their histories, and the service versions.

Each history doubles as the changelog: a new method or optional argument is a
new minor version, one line here (see ``kilonova.common.rpc_versions``).

Every service announces its *service version* with its heartbeat, and the
conductor keeps it in the service record (``services.version``). A service
version says which compute RPC version a compute host of that release speaks:
the API and the conductor read a host's record and write their messages for
it, so during a rolling upgrade (controllers first, then the compute hosts one
by one) new controllers keep talking to old hosts. ``[upgrade_levels] compute``
pins the compute RPC version instead (``auto``: each host's own record); on a
compute host the same pin makes it speak and announce that older version.
"""
from __future__ import annotations

from kilonova.common.rpc import RPCClient, Transport, parse_version
from kilonova.common.rpc_versions import Change, Interface

COMPUTE = Interface("compute", [
    Change("1.0", "build_and_run_instance, terminate_instance, stop/start/pause/unpause/suspend/resume/"
                  "reboot_instance, snapshot_instance, get_vnc_console, get_console_output."),
    Change("1.1", "build_and_run_instance takes deadline (epoch seconds): a build delivered after it is left to "
                  "the conductor's stuck-build reconciler.", arguments={"build_and_run_instance": ("deadline",)}),
    Change("1.2", "The server lifecycle: the power actions and reboot take request_id (their steps are recorded "
                  "as instance action events); resize and cold migration (prep_resize, resize_instance, "
                  "finish_resize, confirm_resize, revert_resize, finish_revert_resize), rebuild_instance, "
                  "shelve/shelve_offload/unshelve_instance, rescue/unrescue_instance, set_admin_password, "
                  "trigger_crash_dump, inject_network_info, get_diagnostics, backup_instance, "
                  "restore/soft_delete_instance, live migration (check_can_live_migrate_destination/source, "
                  "pre_live_migration, live_migration, live_migration_force_complete, live_migration_abort, "
                  "post_live_migration_at_destination, rollback_live_migration_at_destination), "
                  "external_instance_event.",
           arguments={m: ("request_id",) for m in (
               "stop_instance", "start_instance", "pause_instance", "unpause_instance", "suspend_instance",
               "resume_instance", "reboot_instance", "snapshot_instance", "terminate_instance")},
           methods=("prep_resize", "resize_instance", "finish_resize", "confirm_resize", "revert_resize",
                    "finish_revert_resize", "rebuild_instance", "shelve_instance", "shelve_offload_instance",
                    "unshelve_instance", "rescue_instance", "unrescue_instance", "set_admin_password",
                    "trigger_crash_dump", "inject_network_info", "get_diagnostics", "backup_instance",
                    "restore_instance", "soft_delete_instance", "check_can_live_migrate_destination",
                    "check_can_live_migrate_source", "pre_live_migration", "live_migration",
                    "live_migration_force_complete", "live_migration_abort", "post_live_migration_at_destination",
                    "rollback_live_migration_at_destination", "external_instance_event",
                    "live_migration_whereabouts")),
    Change("1.3", "attach_interface, detach_interface (os-interface: a port hot-plugged into, or out of, a server).",
           methods=("attach_interface", "detach_interface")),
    Change("1.4", "attach_volume, detach_volume, swap_volume (os-volume_attachments: a volume connected to, or "
                  "disconnected from, a server through the volume service's attachments).",
           methods=("attach_volume", "detach_volume", "swap_volume")),
    Change("1.5", "get_host_uptime, set_host_enabled, host_maintenance_mode, host_power_action (os-hypervisors "
                  "uptime and os-hosts: what is asked of the host itself, answered by its driver).",
           methods=("get_host_uptime", "set_host_enabled", "host_maintenance_mode", "host_power_action")),
    Change("1.6", "volume_snapshot_create, volume_snapshot_delete (os-assisted-volume-snapshots: the guest's disk "
                  "of a file-backed volume switched onto a new overlay, or a snapshot merged out of its chain).",
           methods=("volume_snapshot_create", "volume_snapshot_delete")),
])

CONDUCTOR = Interface("conductor", [
    Change("1.0", "schedule_and_build_instances, build_failed, instance_update/get/destroy, add_fault, "
                  "service_report, compute_node_update, report_many, instances_on_host, get_stats."),
    Change("1.1", "service_report takes version (the reporting service's version).",
           arguments={"service_report": ("version",)}),
    Change("1.2", "instance_update takes expected_vm_state and expected_host (compare-and-set on them too).",
           arguments={"instance_update": ("expected_vm_state", "expected_host")}),
    Change("1.3", "The server lifecycle: action_event, action_finish (instance action records), migration_get, "
                  "migration_update, migrations_on_host (migration records) for agents; migrate_server (resize, "
                  "cold migration), live_migrate_instance, rebuild_instance (rebuild, evacuate), "
                  "unshelve_instance for the API.",
           methods=("action_event", "action_finish", "migration_get", "migration_update", "migrations_on_host",
                    "migrate_server", "live_migrate_instance", "rebuild_instance", "unshelve_instance")),
    Change("1.4", "instance_update takes fault, recorded in the same transaction as the state change (a server "
                  "is never shown in ERROR without its fault).",
           arguments={"instance_update": ("fault",)}),
    Change("1.5", "action_event takes finish_action: the end of an operation's last step also finishes its "
                  "instance action, in one call where an agent made two.",
           arguments={"action_event": ("finish_action",)}),
    Change("1.6", "build_failed takes aborted: a build no host can do (its network has no free address) ends in "
                  "ERROR at once instead of being retried on the alternates.",
           arguments={"build_failed": ("aborted",)}),
    Change("1.7", "bdm_list, bdm_update, bdm_destroy: the block device mappings (volumes) of a server, for agents.",
           methods=("bdm_list", "bdm_update", "bdm_destroy")),
])

SCHEDULER = Interface("scheduler", [
    Change("1.0", "select_destinations."),
])

# Fanned out by the network service to the compute hosts that enforce security groups (as Neutron's
# security-group notifications go to its agents); hosts that do not, and older releases, do not listen.
SECURITY_GROUPS = Interface("security-groups", [
    Change("1.0", "security_groups_changed(hosts, security_group_ids): the rules of ports bound to these hosts "
                  "changed (a rule, a group's stateful, a port's groups or addresses, a remote group's members)."),
])

# Service version N (the list's N-th entry) -> the compute RPC version a compute host of that version speaks.
SERVICE_VERSIONS = (
    "1.0",  # 1: the first release (records written before versions were reported say 1)
    "1.1",  # 2: build deadlines
    "1.2",  # 3: the server lifecycle (resize, migrations, rebuild, shelve, rescue, ...)
    "1.3",  # 4: port interfaces (attach_interface, detach_interface)
    "1.4",  # 5: volumes (attach_volume, detach_volume, swap_volume)
    "1.5",  # 6: the host calls (get_host_uptime, set_host_enabled, host_maintenance_mode, host_power_action)
    "1.6",  # 7: assisted volume snapshots (volume_snapshot_create, volume_snapshot_delete)
)
SERVICE_VERSION = len(SERVICE_VERSIONS)
# The oldest compute service this release's API and conductor still write for (backports reach down to it).
OLDEST_COMPUTE_SERVICE_VERSION = 1


def compute_rpc_of(service_version: int | None) -> str:
    """The compute RPC version of a service record's version (one newer than this code: ours)."""
    if not service_version or service_version < 1:
        return SERVICE_VERSIONS[0]
    return SERVICE_VERSIONS[min(service_version, SERVICE_VERSION) - 1]


def compute_pin(conf) -> str | None:
    """``[upgrade_levels] compute`` as a version, or None for ``auto`` (each host's own record)."""
    value = conf.get("upgrade_levels", "compute").strip()
    if value.lower() in ("", "auto"):
        return None
    major, minor = COMPUTE.cap(value)  # refuses what this release cannot speak
    return f"{major}.{minor}"


def compute_speaks(conf) -> str:
    """The compute RPC version a compute host of this process serves: the pin, or the newest."""
    return compute_pin(conf) or COMPUTE.latest


def compute_service_version(conf) -> int:
    """The service version a compute host of this process announces: the newest that speaks no more than its pin."""
    speaks = parse_version(compute_speaks(conf))
    return max(n for n, rpc in enumerate(SERVICE_VERSIONS, 1) if parse_version(rpc) <= speaks)


def conductor_speaks(client, version: str) -> bool:
    """Whether the conductor ``client`` writes for takes messages of ``version`` (its ``[upgrade_levels]
    conductor`` cap allows them). A client without an interface (a stub) is taken for an old conductor."""
    interface = getattr(client, "interface", None)
    return interface is not None and interface.cap(client.version_cap) >= parse_version(version)


def conductor_client(transport: Transport, conf) -> RPCClient:
    return RPCClient(transport, "conductor", conf.getfloat("DEFAULT", "rpc_response_timeout"), interface=CONDUCTOR,
                     version_cap=conf.get("upgrade_levels", "conductor").strip() or None)


def scheduler_client(transport: Transport, conf) -> RPCClient:
    return RPCClient(transport, "scheduler", conf.getfloat("DEFAULT", "rpc_response_timeout"), interface=SCHEDULER,
                     version_cap=conf.get("upgrade_levels", "scheduler").strip() or None)
