"""One INI configuration file, nova.conf style, with defaults for everything.

No file is needed for the all-in-one: every option has a default, and the
state directory decides where the SQLite databases, keys and images live.
Options are declared once in ``DEFAULTS`` so an operator can read the full
list in one place (``kilonova config-sample`` prints it).
"""
from __future__ import annotations

import configparser
import os
import socket
from pathlib import Path

import platformdirs

# section -> option -> default (as a string, the way it would be written in the file).
# "{state_dir}" is substituted with the resolved state directory.
DEFAULTS: dict[str, dict[str, str]] = {
    "DEFAULT": {
        "state_dir": "",
        # This node's name in service records (nova.conf's [DEFAULT] host); empty = the hostname.
        "host": "",
        # This host's address: the APIs of this process listen on it, and it is where every service is
        # found unless [endpoints] says otherwise.
        "my_ip": "127.0.0.1",
        # "inproc://" keeps RPC inside the process; rabbit://user:password@host:5672/vhost: RabbitMQ.
        "transport_url": "inproc://",
        "region_name": "RegionOne",
        "rpc_response_timeout": "60",
        "service_down_time": "60",
        "report_interval": "10",
        # Log at DEBUG instead of INFO (nova.conf's option; `kilonova --debug` too).
        "debug": "false",
        # text (default) or json: one JSON object a line. Every line carries its request ids.
        "log_format": "text",
        # Where logs go: log_file (relative to log_dir when both are set), or with log_dir alone one file per
        # process named after its services (kilonova-api.log, kilonova-up.log); neither: stderr.
        "log_dir": "",
        "log_file": "",
        # A port (on my_ip) where this process answers /metrics and /healthcheck for all it runs (0: none);
        # for `kilonova serve` processes without an API (conductor, scheduler, compute). Each API answers both
        # on its own port anyway.
        "metrics_port": "0",
        # Capacity a compute host reports to Placement (nova.conf's names).
        "cpu_allocation_ratio": "4.0",
        "ram_allocation_ratio": "1.0",
        "disk_allocation_ratio": "1.0",
        "reserved_host_cpus": "0",
        "reserved_host_memory_mb": "512",
        "reserved_host_disk_mb": "0",
        # When the compute agent starts and a guest the database says is running has no running domain
        # (the host rebooted): start it again (true) or record it as stopped (false, Nova's default).
        "resume_guests_state_on_host_boot": "false",
        # As upstream: seconds a SHELVED server keeps its guest and claim before it is offloaded
        # (0: at once, upstream's default; -1: never, only an explicit shelveOffload does it).
        "shelved_offload_time": "0",
        # As upstream: how often the servers shelved longer than shelved_offload_time are looked for.
        "shelved_poll_interval": "3600",
        # A resize may choose the server's own host (a cold migration never does).
        "allow_resize_to_same_host": "false",
        # Seconds after which a resize or cold migration left in VERIFY_RESIZE is confirmed automatically
        # (0 = never, upstream's default); checked every [conductor] reconcile_interval.
        "resize_confirm_window": "0",
        # Seconds a deleted server stays SOFT_DELETED (restorable, its resources kept) before it is
        # reclaimed; 0: a delete is immediate (Nova's default).
        "reclaim_instance_interval": "0",
        # How long a compute agent waits for the network service's network-vif-plugged event of each
        # new port before a guest counts as spawned (drivers that wait: libvirt), and whether a
        # timeout fails the build (true) or is only logged (false).
        "vif_plugging_timeout": "300",
        "vif_plugging_is_fatal": "true",
    },
    "ports": {
        "identity": "5000",
        "compute": "8774",
        "placement": "8778",
        "image": "9292",
        "network": "9696",
        "block-storage": "8776",
    },
    "endpoints": {
        # Services on separate hosts: the host name or address each service's API is reached at by
        # the other services and published at in the catalog's internal and admin entries
        # (http://<host>:<[ports] port>); empty = [DEFAULT] my_ip.
        "identity_host": "",
        "compute_host": "",
        "placement_host": "",
        "image_host": "",
        "network_host": "",
        "block-storage_host": "",
        # The full URL users are given in the catalog's public entries (e.g. a TLS proxy in front,
        # ending in /v3 for identity and /v2.1 for compute); empty = the internal URL.
        "identity_public_url": "",
        "compute_public_url": "",
        "placement_public_url": "",
        "image_public_url": "",
        "network_public_url": "",
        "block-storage_public_url": "",
    },
    "database": {"connection": "sqlite:///{state_dir}/cell1.sqlite"},
    "cell0_database": {"connection": "sqlite:///{state_dir}/cell0.sqlite"},
    "api_database": {"connection": "sqlite:///{state_dir}/nova_api.sqlite"},
    "placement_database": {"connection": "sqlite:///{state_dir}/placement.sqlite"},
    "identity_database": {"connection": "sqlite:///{state_dir}/keystone.sqlite"},
    "image_database": {"connection": "sqlite:///{state_dir}/glance.sqlite"},
    "network_database": {"connection": "sqlite:///{state_dir}/neutron.sqlite"},
    "volume_database": {"connection": "sqlite:///{state_dir}/cinder.sqlite"},
    "identity": {
        "token_expiration": "3600",
        "key_repository": "{state_dir}/fernet-keys",
        # scrypt work factor of new password hashes (N = 2**this, r=8, p=1): 17 is OWASP's recommendation
        # (~0.6 s of CPU and 128 MiB per hash); lower only for tests. Each hash keeps its own parameters, so
        # stored ones stay valid, and a successful login re-hashes a password stored with other ones.
        "password_hash_rounds": "17",
        # Threads hashing passwords, off the event loop (0: half the CPUs, at least one), and how many
        # logins may wait for them or be hashed at once; past that, logins are answered 503 at once.
        "password_hash_workers": "0",
        "password_hash_queue_limit": "8",
        # Wrong passwords accepted from one source address within failed_login_window seconds; past that,
        # its logins are answered 429 without being checked until the window has room again (0: no limit).
        "failed_login_limit": "10",
        "failed_login_window": "60",
        # Passwords of the bootstrap users; `kilonova up` generates them into secrets.json.
        "admin_password": "",
        "demo_password": "",
    },
    "security_compliance": {
        # As Keystone: after this many wrong passwords in a row a user's account is locked (every login,
        # even with the right password, answers 401) for lockout_duration seconds after the last one, or
        # until an admin sets the user enabled again (empty or 0: never locked; Keystone's default).
        "lockout_failure_attempts": "",
        # Empty or 0: locked until an admin sets the user enabled (Keystone's default: 1800).
        "lockout_duration": "1800",
    },
    "keystone_authtoken": {
        # How long a validated token is trusted by the other services before
        # asking the identity service again (keystonemiddleware's token_cache_time).
        "token_cache_time": "30",
    },
    "service_user": {
        "username": "kilonova",
        "password": "",
        "project_name": "service",
    },
    "image": {
        "filesystem_store_datadir": "{state_dir}/images",
        # Largest image upload accepted, in bytes (Glance's image_size_cap; 1 TiB).
        "image_size_cap": "1099511627776",
    },
    "image_format": {
        # As Glance: an upload whose content is not its disk_format is refused (false: only logged). Data
        # that fails its format's safety checks (a qcow2 data-file or backing file, a VMDK's flat extent)
        # is refused either way (kilonova/common/image_safety.py).
        "require_image_format_match": "true",
    },
    "volume": {
        # Where the volumes are: "file" (one sparse raw file per volume in volumes_dir) or "lvm" (one LVM thin
        # volume per volume in volume_group's thin pool "<volume_group>-pool", as Cinder's LVM driver with
        # lvm_type = thin; the group and the pool are made by the operator).
        "backend": "file",
        "volume_group": "cinder-volumes",
        # Where the file-backed volumes live (one sparse raw file per volume), and with either backend the
        # volume service's scratch files (images being written into volumes, NBD export records).
        "volumes_dir": "{state_dir}/volumes",
        # Cinder's default quotas of a project (-1: unlimited).
        "quota_volumes": "10",
        "quota_snapshots": "10",
        "quota_gigabytes": "1000",
        "quota_backups": "10",
        "quota_backup_gigabytes": "1000",
        "quota_groups": "10",
        "per_volume_size_limit": "-1",
        # Seconds an attachment may stay reserved or attaching (never completed) before it is removed
        # and its volume freed; longer than a server build ([compute] build_timeout).
        "attachment_timeout": "1800",
        # Cinder's thin provisioning: what the backend gives out may be this many times its size, and a new
        # volume must fit in this many times its free space less reserved_percentage of its size.
        "max_over_subscription_ratio": "20.0",
        "reserved_percentage": "0",
        # Where volumes are served over NBD to compute hosts on other machines (empty: [DEFAULT] my_ip), and
        # the TCP ports their qemu-nbd exports take (one per volume connected remotely).
        "target_ip_address": "",
        "nbd_ports": "10809-10999",
        # Seconds a user message (GET /messages) is kept, as Cinder's message_ttl.
        "message_ttl": "2592000",
    },
    "placement": {
        # As upstream: the most allocation requests one GET /allocation_candidates
        # generates, before ``limit`` is applied (-1: no cap, upstream's default).
        "max_allocation_candidates": "-1",
        # As upstream: depth-first (every candidate of one tree, then the next tree)
        # or breadth-first (one candidate of each tree per round; with a cap, the
        # candidates are spread over all trees).
        "allocation_candidates_generation_strategy": "depth-first",
        # Kilonova's guard against combinatorial blow-up (e.g. 8 child providers
        # asked for by 6 request groups: 8^6 combinations): the search stops
        # after looking at this many combinations of providers and returns what
        # it found, with a warning in the log (-1: no guard).
        "max_candidate_combinations": "1000000",
        # As upstream: shuffle the candidates (with ``limit``, a random sample of all of them).
        "randomize_allocation_candidates": "false",
        # As upstream: how many times an allocation write is tried again when a provider
        # generation moved under it, before answering 409.
        "allocation_conflict_retry_count": "10",
        # keystone (tokens validated by the identity service) or noauth2
        # (testing: the token is "user[:project]", user "admin" has the admin role).
        "auth_strategy": "keystone",
    },
    "oslo_policy": {
        # A YAML/JSON file overriding any service's default policy rules, `rule: check string` as upstream's
        # (relative: to the state dir); read at start (a malformed one stops it) and again when it changes.
        "policy_file": "policy.yaml",
        "enforce_scope": "true",
        "enforce_new_defaults": "true",
    },
    "cors": {
        # Comma-separated origins allowed to make cross-origin requests (empty: CORS off).
        "allowed_origin": "",
        "allow_credentials": "true",
        # Upstream Placement's own defaults for these (it sets oslo.middleware's).
        "expose_headers": "X-Auth-Token,X-Openstack-Request-Id,X-Subject-Token,X-Service-Token,OpenStack-API-Version",
        "max_age": "3600",
        "allow_methods": "GET,PUT,POST,DELETE,PATCH",
        "allow_headers": "X-Auth-Token,X-Openstack-Request-Id,X-Identity-Status,X-Roles,X-Service-Catalog,"
                         "X-User-Id,X-Tenant-Id,OpenStack-API-Version",
    },
    "quota": {
        "instances": "10",
        "cores": "20",
        "ram": "51200",
        "key_pairs": "100",
        "metadata_items": "128",
        "server_groups": "10",
        "server_group_members": "10",
        # nova.quota.DbQuotaDriver (limits above and os-quota-sets), nova.quota.UnifiedLimitsDriver (Keystone's
        # registered limits and limits; also spelled unified_limits) or nova.quota.NoopQuotaDriver (none).
        "driver": "nova.quota.DbQuotaDriver",
        # DbQuotaDriver: instances counted from instance mappings, cores and ram from Placement's usages.
        "count_usage_from_placement": "false",
        # UnifiedLimitsDriver: resources with no registered limit are enforced as 0 when in the list (require)
        # or when not in it (ignore); the others are unlimited.
        "unified_limits_resource_strategy": "require",
        "unified_limits_resource_list": "servers",
    },
    "filter_scheduler": {
        # Upstream's default list, and the filters of the same_host, different_host and query hints (which
        # upstream leaves for the operator to enable: a hint whose filter is not enabled is ignored).
        # Also available: AggregateInstanceExtraSpecsFilter, AggregateMultiTenancyIsolation,
        # AggregateImagePropertiesIsolation, NUMATopologyFilter, PciPassthroughFilter, and the filters of the
        # target_cell, different_cell and build_near_host_ip/cidr hints: TargetCellFilter, DifferentCellFilter,
        # SimpleCIDRAffinityFilter (off, as upstream: their hints are ignored until enabled).
        "enabled_filters": "ComputeFilter,AvailabilityZoneFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,"
                           "ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter,"
                           "SameHostFilter,DifferentHostFilter,JsonFilter",
        # AggregateImagePropertiesIsolation: only aggregate keys starting with namespace + separator count.
        "aggregate_image_properties_isolation_namespace": "",
        "aggregate_image_properties_isolation_separator": ".",
        "ram_weight_multiplier": "1.0",
        "cpu_weight_multiplier": "1.0",
        "disk_weight_multiplier": "1.0",
        # The soft server-group policies: hosts with more (soft-affinity) or fewer (soft-anti-affinity) of
        # the group's servers weigh more.
        "soft_affinity_weight_multiplier": "1.0",
        "soft_anti_affinity_weight_multiplier": "1.0",
        # Instances building or in an I/O-heavy task (resize, snapshot, rebuild...): fewer is better.
        "io_ops_weight_multiplier": "-1.0",
        # Instances on the host (0: ignored, as upstream; positive: more is better, negative: fewer).
        "num_instances_weight_multiplier": "0.0",
        # Hosts whose recent builds failed go last (the count resets on the host's next successful build).
        "build_failure_weight_multiplier": "1000000.0",
        # A move prefers its cell (kilonova never moves a server between cells: no effect today).
        "cross_cell_move_weight_multiplier": "1000000.0",
        # Newer hypervisor versions are better.
        "hypervisor_version_weight_multiplier": "1.0",
        # Hosts whose instances' images share properties with the request's image (0: off, as upstream);
        # image_props_weight_setting: property=weight pairs (os_distro=10,hw_machine_type=2), only those count.
        "image_props_weight_multiplier": "0.0",
        "image_props_weight_setting": "",
        # Every weigher's multiplier may also be set per aggregate (metadata key = the option's name).
        "host_subset_size": "1",
        # Choose at random among the hosts that share the best weight (concurrent requests spread).
        "shuffle_best_same_weighed_hosts": "false",
        "max_attempts": "3",
        "max_placement_results": "1000",
    },
    "scheduler": {
        # Seconds between mappings of new compute hosts to their cells (cell_v2 discover_hosts); -1: never.
        "discover_hosts_in_cells_interval": "-1",
        # Placement pre-filters (kilonova/compute/scheduler/request_filters.py), upstream's options and defaults:
        # a project named in aggregates' filter_tenant_id metadata is kept to those aggregates ...
        "limit_tenants_to_placement_aggregate": "false",
        # ... and, with this too, a project named in none has nowhere to go.
        "placement_aggregate_required_for_tenants": "false",
        # A requested zone defined by aggregates asks Placement for those aggregates' hosts only.
        "query_placement_for_availability_zone": "true",
        # The image's disk format as a required COMPUTE_IMAGE_TYPE_* trait of the host.
        "query_placement_for_image_type_support": "false",
        # Aggregates whose metadata requires traits (trait:X=required) take only requests requiring them.
        "enable_isolated_aggregate_filtering": "false",
    },
    "pci": {
        # PCI aliases flavors name in pci_passthrough:alias=NAME:COUNT: one JSON object or a JSON list, each
        # {"name": ..., "vendor_id": ..., "product_id": ..., "device_type": ...} (upstream's fields).
        "alias": "",
    },
    "network": {
        # Send the compute API the events of its servers' ports (network-vif-plugged when a port is bound
        # and becomes ACTIVE, -unplugged, -deleted, network-changed): Neutron's notify_nova_on_port_* options.
        "notify_compute_on_port_status_changes": "true",
    },
    "l3": {
        # The L3 agent: routers as network namespaces that route and NAT (kilonova serve l3). auto: on in a
        # process that runs the network service and the libvirt driver together (the all-in-one); in a cloud of
        # several hosts run it (true) on the one network node, as Neutron's legacy L3 agent, whose external
        # networks' bridges reach the outside and whose tenant networks' bridges reach the guests.
        "agent": "auto",
        # The host side of an external network's bridge carries the network's gateway address (DevStack's
        # br-ex holds 172.24.4.1), so that the host reaches floating IPs and routers' gateways.
        "host_gateway": "true",
        # Seconds between full resyncs of every router (changes themselves are applied when announced).
        "resync_interval": "30",
    },
    "wsgi": {
        # As nova.conf: seconds an API connection may wait with no request data arriving (a silent new
        # connection, a request head or body sent slowly) before it is closed; 0 waits forever.
        "client_socket_timeout": "900",
    },
    "api": {
        # Return the generated or given admin password in create, rebuild, rescue and evacuate responses.
        "enable_instance_password": "true",
    },
    "conductor": {
        # How often the conductor looks for builds and deletes stuck past [compute] build_timeout / delete_timeout.
        "reconcile_interval": "60",
        # A live migration whose record nothing has moved for this long is ended by the conductor: the
        # hosts are asked where the guest runs, and it stays there (the migration ends completed or error).
        "live_migration_stall_timeout": "600",
    },
    "upgrade_levels": {
        # The compute RPC version written for compute hosts during a rolling upgrade: auto = what each
        # host's service record announces; X.Y = at most X.Y (on a compute host: it speaks and announces X.Y).
        "compute": "auto",
        # Caps of what is sent to the conductor and the scheduler (X.Y); empty = this release's own.
        "conductor": "",
        "scheduler": "",
    },
    "compute": {
        "default_availability_zone": "nova",
        "build_timeout": "600",
        # Seconds a delete may stay DELETING before a conductor finishes it without the compute host
        # (at once when the host's service is down).
        "delete_timeout": "600",
        # Seconds a shelve, shelve offload or unshelve may stay under way before a conductor finishes or
        # undoes it (its compute host died, its message was lost).
        "shelve_timeout": "600",
        # Seconds a volume may stay attaching or detaching (its host died, its message was lost) before a
        # conductor gives the reservation back (available) or keeps the volume attached (in-use).
        "volume_attach_timeout": "300",
        # Seconds a resize or cold migration may stay at one step (its migration record not updated) before
        # the conductor rolls it back to its source host, or ends it there, with a fault saying what failed.
        "move_timeout": "600",
        # Seconds a rescue, unrescue, restore, soft delete or admin password change may stay under way
        # before a conductor ends it without its compute host (kilonova/compute/conductor/tasks/rescue_and_friends.py).
        "action_timeout": "300",
        # The cell (name or uuid) a new compute host of this process joins; empty: the first cell.
        "cell": "",
        # fake: simulated hosts ([fake_driver]); libvirt: this machine is one host named [DEFAULT] host.
        "compute_driver": "fake",
        # How often the agent compares each guest's power state with the database (0 = never).
        "sync_power_state_interval": "10",
        # Give every server a config drive, asked for or not (nova.conf's [DEFAULT] force_config_drive).
        "force_config_drive": "false",
        "mkisofs_cmd": "genisoimage",
        # libvirt: host CPUs (e.g. "2-7,^4") reserved for hw:cpu_policy=dedicated guests, one guest per CPU,
        # reported to Placement as PCPU; and the CPUs every other guest floats over (VCPU). Both empty:
        # every CPU is shared. Only a dedicated set: no VCPU inventory, as in Nova.
        "cpu_dedicated_set": "",
        "cpu_shared_set": "",
    },
    "libvirt": {
        # kvm or qemu; empty = kvm when a KVM guest can run on this host, else qemu (TCG).
        "virt_type": "",
        # host-model, host-passthrough, custom, none; empty = host-model for kvm, none for qemu.
        "cpu_mode": "",
        "cpu_models": "",
        # Empty = qemu:///system.
        "connection_uri": "",
        "instances_path": "{state_dir}/instances",
        # qcow2: a copy-on-write overlay per instance on the cached base; raw: a full copy.
        "images_type": "qcow2",
        # Convert cached base images to raw (nova.conf's [DEFAULT] force_raw_images).
        "force_raw_images": "true",
        # Cached base images no instance uses are removed once older than this.
        "remove_unused_original_minimum_age_seconds": "86400",
        "image_cache_manager_interval": "2400",
        # Seconds a guest gets to shut down on ACPI before it is destroyed (stop, soft reboot).
        "shutdown_timeout": "60",
        "wait_soft_reboot_seconds": "120",
        "machine_type": "pc",
        # Live migration, read on the destination: how the source's libvirtd reaches this host's libvirtd
        # (empty = qemu+<live_migration_scheme>://<inbound addr>/system; a %s is replaced by that address),
        # and the address QEMU's migration stream and the disks' copy connect to (empty = [DEFAULT] my_ip).
        "live_migration_uri": "",
        "live_migration_scheme": "tcp",
        "live_migration_inbound_addr": "",
        # Read on the source: the migration's maximum bandwidth in MiB/s (0 = unlimited; force-complete lifts it).
        "live_migration_bandwidth": "0",
        # Seconds per GiB of memory and copied disk a live migration may take (0 = no limit), and then what
        # happens to it: abort, or force_complete (pause the guest so that it finishes).
        "live_migration_completion_timeout": "800",
        "live_migration_timeout_action": "abort",
    },
    "vnc": {
        "enabled": "true",
        "server_listen": "127.0.0.1",
        # The address the noVNC proxy (maybe on another host) connects to for this host's guests' VNC
        # servers; empty = server_listen (or [DEFAULT] my_ip when that is 0.0.0.0 or ::).
        "server_proxyclient_address": "",
        # The noVNC proxy (service novncproxy); empty host = [DEFAULT] my_ip. Port 0: any free port
        # (all-in-one only: the compute API in the same process learns which one).
        "novncproxy_host": "",
        "novncproxy_port": "6080",
        # The URL users are given, before "?path=..."; empty = http://<host>:<port>/vnc_lite.html.
        "novncproxy_base_url": "",
        # noVNC's HTML/JS client (Debian's novnc package puts it here).
        "novnc_web": "/usr/share/novnc",
    },
    "consoleauth": {
        # Seconds a console URL's token stays valid; each token opens one connection only.
        "token_ttl": "600",
    },
    "fake_driver": {
        "hosts": "4",
        # Simulated hosts are named <host_prefix>1, 2, ...; empty: after [DEFAULT] host (itself when hosts = 1).
        "host_prefix": "compute",
        "vcpus": "32",
        "memory_mb": "131072",
        "disk_gb": "2048",
        # NUMA cells each host reports (vCPUs and memory split evenly over them; 0: no NUMA topology), or
        # per host: "compute1=2,compute2=1" (hosts not named: none).
        "numa_nodes": "0",
        # PCI devices each host reports: "vendor:product:count[:numa_node]" entries, comma-separated; an
        # entry "host=vendor:product:count" is that host's only.
        "pci_devices": "",
        "spawn_delay": "0.0",
        # Seconds each guest's destroy takes (to hold a delete mid-way in tests).
        "destroy_delay": "0.0",
        # Tests: spawns wait for the network service's network-vif-plugged events, as libvirt's do.
        "wait_for_vif_plugging": "false",
        # Comma-separated host names whose spawns fail (failure injection for tests).
        "fail_spawn_hosts": "",
        # Seconds a simulated live migration takes (unless force-completed or aborted sooner).
        "live_migration_delay": "0.5",
        # Timing and failure injection for tests, driver method by driver method, on every fake host:
        # "finish_migration=3,migrate_disk_and_power_off=1" holds those calls that many seconds first;
        # "finish_migration,rebuild" makes those calls fail (after their delay) on the hosts of
        # fail_step_hosts (empty: on every host).
        "step_delays": "",
        "fail_steps": "",
        "fail_step_hosts": "",
        # Tests: the calls named here wait (at most step_gate_timeout seconds) until a file of the same name
        # appears in step_gate_dir, and take it: each file lets one call through.
        "step_gates": "",
        "step_gate_dir": "{state_dir}/step-gates",
        "step_gate_timeout": "300",
    },
}


def option_comments() -> dict[tuple[str, str], list[str]]:
    """(section, option) -> the comment lines written above that option in ``DEFAULTS`` (for config-sample)."""
    import re

    comments: dict[tuple[str, str], list[str]] = {}
    section, pending = "", []
    for line in Path(__file__).read_text().split("DEFAULTS: dict", 1)[1].split("\n}\n", 1)[0].splitlines():
        if match := re.match(r'^    "(\w+)": \{', line):
            section, pending = match.group(1), []
        elif match := re.match(r"^        # ?(.*)$", line):
            pending.append(match.group(1))
        elif (match := re.match(r'^        "(\w+)":', line)) and pending:
            comments[(section, match.group(1))], pending = pending, []
    return comments


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("kilonova"))


class ConfigError(ValueError):
    """A configuration value that cannot work; the command line prints it as one line and exits 2."""


class Config:
    """Typed read access to the merged defaults + file + overrides."""

    def __init__(self, parser: configparser.ConfigParser, state_dir: Path):
        self._parser = parser
        self.state_dir = state_dir

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, state_dir: str | os.PathLike | None = None,
             overrides: dict[str, dict[str, str]] | None = None) -> "Config":
        parser = configparser.ConfigParser(interpolation=None)
        for section, options in DEFAULTS.items():
            if section != "DEFAULT" and not parser.has_section(section):
                parser.add_section(section)
            for key, value in options.items():
                parser.set(section, key, value)
        if path:
            if not Path(path).exists():
                raise ConfigError(f"configuration file {path} does not exist")
            parser.read(path)
        for section, options in (overrides or {}).items():
            if section != "DEFAULT" and not parser.has_section(section):
                parser.add_section(section)
            for key, value in options.items():
                parser.set(section, key, str(value))
        chosen = state_dir or parser.get("DEFAULT", "state_dir") or os.environ.get("KILONOVA_STATE_DIR")
        resolved = Path(chosen).expanduser().resolve() if chosen else default_state_dir()
        parser.set("DEFAULT", "state_dir", str(resolved))
        if not parser.get("DEFAULT", "host"):
            parser.set("DEFAULT", "host", socket.gethostname())
        return cls(parser, resolved)

    def get(self, section: str, key: str) -> str:
        value = self._parser.get(section, key)
        return value.replace("{state_dir}", str(self.state_dir))

    def getint(self, section: str, key: str) -> int:
        return int(self.get(section, key))

    def getfloat(self, section: str, key: str) -> float:
        return float(self.get(section, key))

    def getbool(self, section: str, key: str) -> bool:
        return self.get(section, key).strip().lower() in ("1", "true", "yes", "on")

    def getlist(self, section: str, key: str) -> list[str]:
        return [item.strip() for item in self.get(section, key).split(",") if item.strip()]

    def set(self, section: str, key: str, value: str) -> None:
        if section != "DEFAULT" and not self._parser.has_section(section):
            self._parser.add_section(section)
        self._parser.set(section, key, str(value))

    def write(self, path: Path) -> None:
        with open(path, "w") as fh:
            self._parser.write(fh)
