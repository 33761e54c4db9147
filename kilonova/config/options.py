"""Every configuration option, declared once: section -> option -> type, default, what is allowed, help.

Sections and names are nova.conf's where Nova has the option (Keystone's, Glance's, Cinder's or
Placement's for theirs); ``MOVED`` lists the places earlier releases of Kilonova read an option from,
still read with a deprecation warning. A new option: add a line to its section (``Str``, ``Int``,
``Float``, ``Bool``, ``List``, ``Port``); ``kilonova config-sample`` and the start-up check follow.
"""
from __future__ import annotations

from kilonova.config.types import Bool, Float, Int, List, Opt, Port, Str

VERSION = r"\d+\.\d+"
SECONDS = {"min": 0}
QUOTA = {"min": -1}            # -1: unlimited
SQL_URL = {"pattern": r"[A-Za-z0-9+_]+://.*", "pattern_help": "an SQLAlchemy URL (sqlite:///path, postgresql://...)"}
URL = {"pattern": r"https?://[^/\s]+(/\S*)?", "pattern_help": "an http:// or https:// URL, or empty"}


def _pci_aliases(text: str) -> None:
    import json

    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"JSON: a {{...}} alias or a list of them ({exc})") from None
    for alias in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(alias, dict) or not isinstance(alias.get("name"), str):
            raise ValueError('JSON: a {"name": ..., "vendor_id": ..., "product_id": ...} alias or a list of them')


def _port_range(text: str) -> None:
    low, _, high = text.partition("-")
    if not 0 < int(low) <= int(high or low) <= 65535:
        raise ValueError("a port or a range LOW-HIGH of ports (1-65535, LOW <= HIGH)")


def _database(name: str) -> dict[str, Opt]:
    return {"connection": Str(f"sqlite:///{{state_dir}}/{name}.sqlite", "Where this database lives.", **SQL_URL)}


def _per_service(suffix: str, help_first: str, **kind) -> dict[str, Opt]:
    names = ("identity", "compute", "placement", "image", "network", "block-storage")
    return {f"{name}_{suffix}": Str("", help_first if i == 0 else f"As identity_{suffix}, for {name}.", **kind)
            for i, name in enumerate(names)}


DEFAULTS: dict[str, dict[str, Opt]] = {
    "DEFAULT": {
        "state_dir": Str("", "Where databases, keys, images and instances live (also --state-dir or "
                         "$KILONOVA_STATE_DIR); empty: the user's data directory."),
        "host": Str("", "This node's name in service records; empty: the hostname."),
        "my_ip": Str("127.0.0.1", "This host's address: the APIs of this process listen on it, and it is where every "
                     "service is found unless [endpoints] says otherwise."),
        "transport_url": Str("inproc://", "RPC between services: inproc:// keeps it inside the process; "
                             "rabbit://user:password@host:5672/vhost: RabbitMQ.", secret=True,
                             pattern=r"(inproc|rabbit|amqp)://.*",
                             pattern_help="inproc:// or rabbit://user:password@host:port/vhost"),
        "region_name": Str("RegionOne", "The region of every catalog entry."),
        "rpc_response_timeout": Int(60, "Seconds an RPC call waits for its answer.", min=1),
        "service_down_time": Int(60, "Seconds without a heartbeat after which a service counts as down.", min=1),
        "report_interval": Int(10, "Seconds between a service's heartbeats.", min=1),
        "debug": Bool(False, "Log at DEBUG instead of INFO (`kilonova --debug` too)."),
        "log_format": Str("text", "text, or json: one JSON object a line. Every line carries its request ids.",
                          choices=("text", "json")),
        "log_dir": Str("", "Where logs go: log_file (relative to log_dir when both are set), or with log_dir alone "
                       "one file per process named after its services (kilonova-api.log, kilonova-up.log); "
                       "neither: stderr."),
        "log_file": Str("", "See log_dir."),
        "metrics_port": Port(0, "A port (on my_ip) where this process answers /metrics and /healthcheck for all it "
                             "runs (0: none); for `kilonova serve` processes without an API (conductor, scheduler, "
                             "compute). Each API answers both on its own port anyway."),
        "cpu_allocation_ratio": Float(4.0, "Virtual CPUs a compute host offers per physical CPU (Placement's "
                                      "allocation_ratio of VCPU).", min=0.0),
        "ram_allocation_ratio": Float(1.0, "The same for memory (MEMORY_MB).", min=0.0),
        "disk_allocation_ratio": Float(1.0, "The same for disk (DISK_GB).", min=0.0),
        "reserved_host_cpus": Int(0, "Host CPUs kept from guests (Placement's reserved VCPU).", min=0),
        "reserved_host_memory_mb": Int(512, "Host memory kept from guests, in MiB.", min=0),
        "reserved_host_disk_mb": Int(0, "Host disk kept from guests, in MiB.", min=0),
        "resume_guests_state_on_host_boot": Bool(False, "When the compute agent starts and a guest the database says is "
                                                 "running has no running domain (the host rebooted): start it again "
                                                 "(true) or record it as stopped (false)."),
        "shelved_offload_time": Int(0, "Seconds a SHELVED server keeps its guest and claim before it is offloaded "
                                    "(0: at once; -1: never, only an explicit shelveOffload does it).", min=-1),
        "shelved_poll_interval": Int(3600, "How often the servers shelved longer than shelved_offload_time are "
                                     "looked for, in seconds.", min=1),
        "allow_resize_to_same_host": Bool(False, "A resize may choose the server's own host (a cold migration never "
                                          "does)."),
        "resize_confirm_window": Int(0, "Seconds after which a resize or cold migration left in VERIFY_RESIZE is "
                                     "confirmed automatically (0: never); checked every [conductor] "
                                     "reconcile_interval.", **SECONDS),
        "reclaim_instance_interval": Int(0, "Seconds a deleted server stays SOFT_DELETED (restorable, its resources "
                                         "kept) before it is reclaimed; 0: a delete is immediate.", **SECONDS),
        "vif_plugging_timeout": Int(300, "Seconds a compute agent waits for the network service's "
                                    "network-vif-plugged event of each new port before a guest counts as spawned "
                                    "(drivers that wait: libvirt).", **SECONDS),
        "vif_plugging_is_fatal": Bool(True, "Whether a vif_plugging_timeout fails the build (true) or is only "
                                      "logged (false)."),
        "default_availability_zone": Str("nova", "The availability zone of compute hosts in no aggregate with one."),
        "compute_driver": Str("fake", "fake: simulated hosts ([fake_driver]); libvirt: this machine is one host "
                              "named [DEFAULT] host, running real guests.", choices=("fake", "libvirt")),
        "instance_build_timeout": Int(600, "Seconds a build may take before the server goes to ERROR with a fault "
                                      "(0: no limit).", **SECONDS),
        "sync_power_state_interval": Int(10, "Seconds between comparisons of each guest's power state with the "
                                         "database (0: never).", min=0),
        "force_config_drive": Bool(False, "Give every server a config drive, asked for or not."),
        "mkisofs_cmd": Str("genisoimage", "The command that builds config drive ISO images."),
        "force_raw_images": Bool(True, "libvirt: convert cached base images to raw."),
        "instances_path": Str("{state_dir}/instances", "libvirt: where the guests' disks and files live."),
        "shutdown_timeout": Int(60, "libvirt: seconds a guest gets to shut down on ACPI before it is destroyed "
                                "(stop, soft reboot).", **SECONDS),
    },
    "ports": {
        "identity": Port(5000, "The identity API's port (`kilonova up --base-port P`: P)."),
        "compute": Port(8774, "The compute API's port (--base-port: P+1)."),
        "placement": Port(8778, "Placement's port (--base-port: P+2)."),
        "image": Port(9292, "The image API's port (--base-port: P+3)."),
        "network": Port(9696, "The network API's port (--base-port: P+4)."),
        "block-storage": Port(8776, "The block-storage API's port (--base-port: P+5)."),
    },
    "endpoints": {
        **_per_service("host", "Services on separate hosts: the host name or address each service's API is reached "
                       "at by the other services and published at in the catalog's internal and admin entries "
                       "(http://<host>:<[ports] port>); empty: [DEFAULT] my_ip."),
        **_per_service("public_url", "The full URL users are given in the catalog's public entries (e.g. a TLS proxy "
                       "in front, ending in /v3 for identity and /v2.1 for compute); empty: the internal URL.", **URL),
    },
    "database": _database("cell1"),
    "cell0_database": _database("cell0"),
    "api_database": _database("nova_api"),
    "placement_database": _database("placement"),
    "identity_database": _database("keystone"),
    "image_database": _database("glance"),
    "network_database": _database("neutron"),
    "volume_database": _database("cinder"),
    "token": {
        "expiration": Float(3600, "Seconds a token is valid.", min=0.001),
    },
    "fernet_tokens": {
        "key_repository": Str("{state_dir}/fernet-keys", "The Fernet token keys."),
    },
    "glance_store": {
        "filesystem_store_datadir": Str("{state_dir}/images", "Where image data is stored."),
    },
    "identity": {
        "password_hash_rounds": Int(17, "scrypt work factor of new password hashes (N = 2**this, r=8, p=1): 17 is "
                                    "OWASP's recommendation (~0.6 s of CPU and 128 MiB per hash); lower only for tests. "
                                    "Each hash keeps its own parameters, so stored ones stay valid, and a successful "
                                    "login re-hashes a password stored with other ones.", min=1, max=22),
        "password_hash_workers": Int(0, "Threads hashing passwords, off the event loop (0: half the CPUs, at least "
                                     "one).", min=0),
        "password_hash_queue_limit": Int(8, "Logins that may wait for a hashing thread or be hashed at once; past "
                                         "that, logins are answered 503 at once.", min=1),
        "failed_login_limit": Int(10, "Wrong passwords accepted from one source address within failed_login_window "
                                  "seconds; past that, its logins are answered 429 without being checked until the "
                                  "window has room again (0: no limit).", min=0),
        "failed_login_window": Int(60, "See failed_login_limit.", min=1),
        "admin_password": Str("", "The bootstrap admin's password; empty: generated into secrets.json.", secret=True),
        "demo_password": Str("", "The bootstrap demo user's password; empty: generated.", secret=True),
    },
    "security_compliance": {
        "lockout_failure_attempts": Int(None, "As Keystone: after this many wrong passwords in a row a user's "
                                        "account is locked (every login, even with the right password, answers "
                                        "401) for lockout_duration seconds after the last one, or until an admin "
                                        "sets the user enabled (empty or 0: never locked).", min=0, optional=True),
        "lockout_duration": Int(1800, "Empty or 0: locked until an admin sets the user enabled.", min=0,
                                optional=True),
    },
    "keystone_authtoken": {
        "token_cache_time": Int(30, "Seconds a validated token is trusted by the other services before they ask the "
                                "identity service again.", min=0),
    },
    "service_user": {
        "username": Str("kilonova", "The user services call each other as."),
        "password": Str("", "Its password; empty: generated into secrets.json.", secret=True),
        "project_name": Str("service", "Its project."),
    },
    "image": {
        "image_size_cap": Int(1099511627776, "Largest image upload accepted, in bytes (1 TiB).", min=1),
    },
    "image_format": {
        "require_image_format_match": Bool(True, "As Glance: an upload whose content is not its disk_format is "
                                           "refused (false: only logged). Data that fails its format's safety checks "
                                           "(a qcow2 data-file or backing file, a VMDK's flat extent) is refused "
                                           "either way."),
    },
    "volume": {
        "backend": Str("file", "Where the volumes are: file (one sparse raw file per volume in volumes_dir) or lvm "
                       "(one LVM thin volume per volume in volume_group's thin pool <volume_group>-pool, as Cinder's "
                       "LVM driver with lvm_type = thin; the group and the pool are made by the operator).",
                       choices=("file", "lvm")),
        "volume_group": Str("cinder-volumes", "The LVM volume group of the lvm backend."),
        "volume_format": Str("raw", "The file backend's format of new volumes: raw (sparse files) or qcow2 (a chain "
                             "of qcow2 files, snapshots as overlays, as Cinder's NFS driver with nfs_qcow2_volumes; "
                             "a snapshot of a volume a guest has open is taken by its compute host: "
                             "os-assisted-volume-snapshots).", choices=("raw", "qcow2")),
        "volumes_dir": Str("{state_dir}/volumes", "Where the file-backed volumes live (one sparse raw file per "
                           "volume), and with either backend the volume service's scratch files (images being "
                           "written into volumes, NBD export records)."),
        "quota_volumes": Int(10, "A project's default volume quota (-1: unlimited).", **QUOTA),
        "quota_snapshots": Int(10, "Default snapshot quota.", **QUOTA),
        "quota_gigabytes": Int(1000, "Default quota of GiB of volumes and snapshots.", **QUOTA),
        "quota_backups": Int(10, "Default backup quota.", **QUOTA),
        "quota_backup_gigabytes": Int(1000, "Default quota of GiB of backups.", **QUOTA),
        "quota_groups": Int(10, "Default group quota.", **QUOTA),
        "per_volume_size_limit": Int(-1, "Largest volume in GiB (-1: unlimited).", **QUOTA),
        "attachment_timeout": Int(1800, "Seconds an attachment may stay attaching or detaching (connected to a "
                                  "host but never completed) before it is removed and its volume freed; longer "
                                  "than a server build. Reservations (no connector) are kept, as Cinder keeps "
                                  "them.", min=1),
        "assisted_snapshot_timeout": Int(120, "Seconds the volume service waits for a compute host's report on an "
                                         "assisted snapshot (os-assisted-volume-snapshots) of an in-use qcow2 "
                                         "volume, or its os-extend_volume_completion of an extend, also across its "
                                         "own restarts; past it the snapshot is ended (error / error_deleting, as "
                                         "Cinder's remotefs driver gives up) and the extend decided by the file's "
                                         "size.", min=1),
        "max_over_subscription_ratio": Float(20.0, "Thin provisioning: what the backend gives out may be this many "
                                             "times its size, and a new volume must fit in this many times its "
                                             "free space less reserved_percentage of its size.", min=1.0),
        "reserved_percentage": Int(0, "Percent of the backend kept free.", min=0, max=100),
        "target_ip_address": Str("", "Where volumes are served over NBD to compute hosts on other machines "
                                 "(empty: [DEFAULT] my_ip)."),
        "nbd_ports": Str("10809-10999", "The TCP ports qemu-nbd exports take (one per volume connected remotely).",
                         pattern=r"\d+(-\d+)?", pattern_help="a port or a range LOW-HIGH", check=_port_range),
        "message_ttl": Int(2592000, "Seconds a user message (GET /messages) is kept.", min=1),
    },
    "placement": {
        "max_allocation_candidates": Int(-1, "The most allocation requests one GET /allocation_candidates generates, "
                                         "before `limit` is applied (-1: no cap).", min=-1),
        "allocation_candidates_generation_strategy": Str(
            "depth-first", "depth-first (every candidate of one tree, then the next tree) or breadth-first (one "
            "candidate of each tree per round; with a cap, the candidates are spread over all trees).",
            choices=("depth-first", "breadth-first")),
        "max_candidate_combinations": Int(1000000, "Kilonova's guard against combinatorial blow-up (e.g. 8 child "
                                          "providers asked for by 6 request groups: 8^6 combinations): the search "
                                          "stops after looking at this many combinations of providers and returns "
                                          "what it found, with a warning in the log (-1: no guard).", min=-1),
        "randomize_allocation_candidates": Bool(False, "Shuffle the candidates (with `limit`, a random sample of all "
                                                "of them)."),
        "allocation_conflict_retry_count": Int(10, "How many times an allocation write is tried again when a provider "
                                               "generation moved under it, before answering 409.", min=0),
        "auth_strategy": Str("keystone", "keystone (tokens validated by the identity service) or noauth2 (testing: "
                             "the token is \"user[:project]\", user \"admin\" has the admin role).",
                             choices=("keystone", "noauth2")),
    },
    "oslo_policy": {
        "policy_file": Str("policy.yaml", "A YAML/JSON file overriding any service's default policy rules, "
                           "`rule: check string` as upstream's (relative: to the state directory); read at start (a "
                           "malformed one stops it) and again when it changes."),
        "enforce_scope": Bool(True, "Check the scope of tokens against the rules' scope types."),
        "enforce_new_defaults": Bool(True, "Use the secure-RBAC default rules, not the deprecated ones."),
    },
    "cors": {
        "allowed_origin": List((), "Origins allowed to make cross-origin requests (empty: CORS off; * for any)."),
        "allow_credentials": Bool(True, "Answer Access-Control-Allow-Credentials."),
        "expose_headers": List(("X-Auth-Token", "X-Openstack-Request-Id", "X-Subject-Token", "X-Service-Token",
                                "OpenStack-API-Version"), "Headers a cross-origin client may read."),
        "max_age": Int(3600, "Seconds a preflight answer may be cached.", min=0),
        "allow_methods": List(("GET", "PUT", "POST", "DELETE", "PATCH"), "Methods a cross-origin request may use."),
        "allow_headers": List(("X-Auth-Token", "X-Openstack-Request-Id", "X-Identity-Status", "X-Roles",
                               "X-Service-Catalog", "X-User-Id", "X-Tenant-Id", "OpenStack-API-Version"),
                              "Headers a cross-origin request may send."),
    },
    "quota": {
        "instances": Int(10, "Servers per project (-1: unlimited).", **QUOTA),
        "cores": Int(20, "VCPUs per project.", **QUOTA),
        "ram": Int(51200, "MiB of RAM per project.", **QUOTA),
        "key_pairs": Int(100, "Key pairs per user.", **QUOTA),
        "metadata_items": Int(128, "Metadata items per server.", **QUOTA),
        "server_groups": Int(10, "Server groups per project.", **QUOTA),
        "server_group_members": Int(10, "Servers per server group.", **QUOTA),
        "driver": Str("nova.quota.DbQuotaDriver", "nova.quota.DbQuotaDriver (the limits above and os-quota-sets), "
                      "nova.quota.UnifiedLimitsDriver (Keystone's registered limits and limits) or "
                      "nova.quota.NoopQuotaDriver (none).",
                      choices=("nova.quota.DbQuotaDriver", "DbQuotaDriver", "db", "nova.quota.UnifiedLimitsDriver",
                               "UnifiedLimitsDriver", "unified_limits", "nova.quota.NoopQuotaDriver",
                               "NoopQuotaDriver", "noop")),
        "count_usage_from_placement": Bool(False, "DbQuotaDriver: instances counted from instance mappings, cores and "
                                           "ram from Placement's usages."),
        "unified_limits_resource_strategy": Str("require", "UnifiedLimitsDriver: resources with no registered limit "
                                                "are enforced as 0 when in unified_limits_resource_list (require) or "
                                                "when not in it (ignore); the others are unlimited.",
                                                choices=("require", "ignore")),
        "unified_limits_resource_list": List(("servers",), "See unified_limits_resource_strategy."),
    },
    "filter_scheduler": {
        "enabled_filters": List(
            ("ComputeFilter", "AvailabilityZoneFilter", "ComputeCapabilitiesFilter", "ImagePropertiesFilter",
             "ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter", "SameHostFilter", "DifferentHostFilter",
             "JsonFilter"),
            "The filters hosts pass, in order: upstream's default list, and the filters of the same_host, "
            "different_host and query hints (a hint whose filter is not enabled is ignored). Also available: "
            "AggregateInstanceExtraSpecsFilter, AggregateMultiTenancyIsolation, AggregateImagePropertiesIsolation, "
            "NUMATopologyFilter, PciPassthroughFilter, and the filters of the target_cell, different_cell and "
            "build_near_host_ip/cidr hints: TargetCellFilter, DifferentCellFilter, SimpleCIDRAffinityFilter (off, as "
            "upstream: their hints are ignored until enabled)."),
        "aggregate_image_properties_isolation_namespace": Str("", "AggregateImagePropertiesIsolation: only aggregate "
                                                              "keys starting with namespace + separator count."),
        "aggregate_image_properties_isolation_separator": Str(".", "See "
                                                              "aggregate_image_properties_isolation_namespace."),
        "ram_weight_multiplier": Float(1.0, "Weight of free RAM (negative: stack instead of spread)."),
        "cpu_weight_multiplier": Float(1.0, "Weight of free VCPUs."),
        "disk_weight_multiplier": Float(1.0, "Weight of free disk."),
        "soft_affinity_weight_multiplier": Float(1.0, "soft-affinity groups: hosts with more of the group's servers "
                                                 "weigh more.", min=0.0),
        "soft_anti_affinity_weight_multiplier": Float(1.0, "soft-anti-affinity groups: hosts with fewer of the "
                                                      "group's servers weigh more.", min=0.0),
        "io_ops_weight_multiplier": Float(-1.0, "Instances building or in an I/O-heavy task (resize, snapshot, "
                                          "rebuild...): negative, fewer is better."),
        "num_instances_weight_multiplier": Float(0.0, "Instances on the host (0: ignored; positive: more is better, "
                                                 "negative: fewer)."),
        "build_failure_weight_multiplier": Float(1000000.0, "Hosts whose recent builds failed go last (the count "
                                                 "resets on the host's next successful build)."),
        "cross_cell_move_weight_multiplier": Float(1000000.0, "A move prefers its cell (Kilonova never moves a "
                                                   "server between cells: no effect today)."),
        "hypervisor_version_weight_multiplier": Float(1.0, "Newer hypervisor versions are better."),
        "image_props_weight_multiplier": Float(0.0, "Hosts whose instances' images share properties with the "
                                               "request's image (0: off). Every weigher's multiplier may also be set "
                                               "per aggregate (metadata key = the option's name)."),
        "image_props_weight_setting": List((), "property=weight pairs (os_distro=10,hw_machine_type=2); only those "
                                           "count (empty: every property, weight 1).",
                                           pattern=r"[\w:.-]+=-?\d+(\.\d+)?", pattern_help="property=weight"),
        "host_subset_size": Int(1, "Choose at random among this many best hosts.", min=1),
        "shuffle_best_same_weighed_hosts": Bool(False, "Choose at random among the hosts that share the best weight "
                                                "(concurrent requests spread)."),
    },
    "scheduler": {
        "discover_hosts_in_cells_interval": Int(-1, "Seconds between mappings of new compute hosts to their cells "
                                                "(cell_v2 discover_hosts); -1: never.", min=-1),
        "max_attempts": Int(3, "Hosts a build is tried on (the first and its alternates).", min=1),
        "max_placement_results": Int(1000, "The most allocation candidates asked of Placement.", min=1),
        "limit_tenants_to_placement_aggregate": Bool(False, "A project named in aggregates' filter_tenant_id metadata "
                                                     "is kept to those aggregates' hosts."),
        "placement_aggregate_required_for_tenants": Bool(False, "With limit_tenants_to_placement_aggregate: a "
                                                         "project named in no aggregate has nowhere to go."),
        "query_placement_for_availability_zone": Bool(True, "A requested zone defined by aggregates asks Placement "
                                                      "for those aggregates' hosts only."),
        "query_placement_for_image_type_support": Bool(False, "The image's disk format as a required "
                                                       "COMPUTE_IMAGE_TYPE_* trait of the host."),
        "enable_isolated_aggregate_filtering": Bool(False, "Aggregates whose metadata requires traits "
                                                    "(trait:X=required) take only requests requiring them."),
    },
    "pci": {
        "alias": Str("", "PCI aliases flavors name in pci_passthrough:alias=NAME:COUNT: one JSON object or a JSON "
                     "list, each {\"name\": ..., \"vendor_id\": ..., \"product_id\": ..., \"device_type\": ...}.",
                     check=_pci_aliases),
    },
    "network": {
        "notify_compute_on_port_status_changes": Bool(True, "Send the compute API the events of its servers' ports "
                                                      "(network-vif-plugged when a port is bound and becomes ACTIVE, "
                                                      "-unplugged, -deleted, network-changed), as Neutron's "
                                                      "notify_nova_on_port_* options."),
    },
    "l3": {
        "agent": Str("auto", "The L3 agent: routers as network namespaces that route and NAT (kilonova serve l3). "
                     "auto: on in a process that runs the network service and the libvirt driver together (the "
                     "all-in-one); in a cloud of several hosts run it (true) on the one network node.",
                     choices=("auto", "true", "false")),
        "host_gateway": Bool(True, "The host side of an external network's bridge carries the network's gateway "
                             "address (DevStack's br-ex holds 172.24.4.1), so that the host reaches floating IPs "
                             "and routers' gateways."),
        "resync_interval": Int(30, "Seconds between full resyncs of every router (changes themselves are applied "
                               "when announced; at least 1).", min=0),
    },
    "wsgi": {
        "client_socket_timeout": Int(900, "Seconds an API connection may wait with no request data arriving (a "
                                     "silent new connection, a request head or body sent slowly) before it is "
                                     "closed; 0 waits forever.", min=0),
    },
    "api": {
        "enable_instance_password": Bool(True, "Return the generated or given admin password in create, rebuild, "
                                         "rescue and evacuate responses."),
        "auth_strategy": Str("", "Placement's own spelling of [placement] auth_strategy; wins when set.",
                             choices=("", "keystone", "noauth2")),
    },
    "conductor": {
        "reconcile_interval": Int(60, "Seconds between the conductor's looks for builds, deletes and other operations "
                                  "stuck past their timeouts.", min=1),
        "live_migration_stall_timeout": Int(600, "A live migration whose record nothing has moved for this many "
                                            "seconds is ended by the conductor: the hosts are asked where the guest "
                                            "runs, and it stays there.", min=1),
    },
    "upgrade_levels": {
        "compute": Str("auto", "The compute RPC version written for compute hosts during a rolling upgrade: auto = "
                       "what each host's service record announces; X.Y = at most X.Y (on a compute host: it speaks "
                       "and announces X.Y).", pattern=f"auto|{VERSION}", pattern_help="auto or a version X.Y"),
        "conductor": Str("", "Cap of what is sent to the conductor (X.Y); empty: this release's own.",
                         pattern=VERSION, pattern_help="a version X.Y, or empty"),
        "scheduler": Str("", "Cap of what is sent to the scheduler (X.Y); empty: this release's own.",
                         pattern=VERSION, pattern_help="a version X.Y, or empty"),
    },
    "compute": {
        "delete_timeout": Int(600, "Seconds a delete may stay DELETING before a conductor finishes it without the "
                              "compute host (at once when the host's service is down).", min=1),
        "shelve_timeout": Int(600, "Seconds a shelve, shelve offload or unshelve may stay under way before a "
                              "conductor finishes or undoes it (its compute host died, its message was lost).", min=1),
        "volume_attach_timeout": Int(300, "Seconds a volume may stay attaching or detaching before a conductor gives "
                                     "the reservation back (available) or keeps the volume attached (in-use).", min=1),
        "move_timeout": Int(600, "Seconds a resize or cold migration may stay at one step before the conductor rolls "
                            "it back to its source host, or ends it there, with a fault saying what failed.", min=1),
        "action_timeout": Int(300, "Seconds a rescue, unrescue, restore, soft delete or admin password change may "
                              "stay under way before a conductor ends it without its compute host.", min=1),
        "cell": Str("", "The cell (name or uuid) a new compute host of this process joins; empty: the first cell."),
        "cpu_dedicated_set": Str("", "libvirt: host CPUs (e.g. 2-7,^4) reserved for hw:cpu_policy=dedicated guests, "
                                 "one guest per CPU, reported to Placement as PCPU. Both sets empty: every CPU is "
                                 "shared. Only a dedicated set: no VCPU inventory.",
                                 pattern=r"[\d\s,^-]*", pattern_help="a CPU set such as 2-7,^4"),
        "cpu_shared_set": Str("", "libvirt: the host CPUs every other guest floats over (VCPU).",
                              pattern=r"[\d\s,^-]*", pattern_help="a CPU set such as 0-1"),
    },
    "image_cache": {
        "manager_interval": Int(2400, "Seconds between runs of the libvirt image cache manager (0: never).", min=0),
        "remove_unused_original_minimum_age_seconds": Int(86400, "Cached base images no instance uses are removed "
                                                          "once older than this.", min=0),
    },
    "libvirt": {
        "virt_type": Str("", "kvm or qemu; empty: kvm when a KVM guest can run on this host, else qemu (TCG).",
                         choices=("", "kvm", "qemu")),
        "cpu_mode": Str("", "empty: host-model for kvm, none for qemu.",
                        choices=("", "host-model", "host-passthrough", "custom", "none")),
        "cpu_models": List((), "With cpu_mode custom: the CPU model guests get (the first)."),
        "connection_uri": Str("", "The libvirt URI; empty: qemu:///system."),
        "images_type": Str("qcow2", "qcow2: a copy-on-write overlay per instance on the cached base; raw: a full "
                           "copy.", choices=("qcow2", "raw")),
        "wait_soft_reboot_seconds": Float(120.0, "Seconds a soft reboot waits for the guest before it reboots hard "
                                          "(nova.conf takes whole seconds; fractions are accepted here).", min=0.0),
        "machine_type": Str("pc", "The QEMU machine type of guests whose image sets no hw_machine_type."),
        "live_migration_uri": Str("", "Read on the destination: how the source's libvirtd reaches this host's "
                                  "(empty: qemu+<live_migration_scheme>://<inbound addr>/system; a %s is replaced by "
                                  "that address)."),
        "live_migration_scheme": Str("tcp", "The scheme of that URI.", choices=("tcp", "ssh", "tls")),
        "live_migration_inbound_addr": Str("", "The address QEMU's migration stream and the disks' copy connect to "
                                           "(empty: [DEFAULT] my_ip)."),
        "live_migration_bandwidth": Int(0, "Read on the source: the migration's maximum bandwidth in MiB/s "
                                        "(0: unlimited; force-complete lifts it).", min=0),
        "live_migration_completion_timeout": Float(800.0, "Seconds per GiB of memory and copied disk a live "
                                                   "migration may take (0: no limit; nova.conf takes whole seconds, "
                                                   "fractions are accepted here).", min=0.0),
        "live_migration_timeout_action": Str("abort", "What happens to a live migration past its completion timeout: "
                                             "abort, or force_complete (pause the guest so that it finishes).",
                                             choices=("abort", "force_complete")),
    },
    "vnc": {
        "enabled": Bool(True, "Guests get a VNC console."),
        "server_listen": Str("127.0.0.1", "Where guests' VNC servers listen."),
        "server_proxyclient_address": Str("", "The address the noVNC proxy (maybe on another host) connects to for "
                                          "this host's guests' VNC servers; empty: server_listen (or [DEFAULT] "
                                          "my_ip when that is 0.0.0.0 or ::)."),
        "novncproxy_host": Str("", "Where the noVNC proxy (service novncproxy) listens; empty: [DEFAULT] my_ip."),
        "novncproxy_port": Port(6080, "Its port (`kilonova up --base-port P`: P+6). 0: any free port (all-in-one "
                                "only: the compute API in the same process learns which one)."),
        "novncproxy_base_url": Str("", "The URL users are given, before \"?path=...\"; empty: "
                                   "http://<host>:<port>/vnc_lite.html.", **URL),
        "novnc_web": Str("/usr/share/novnc", "noVNC's HTML/JS client (Debian's novnc package puts it here)."),
    },
    "consoleauth": {
        "token_ttl": Int(600, "Seconds a console URL's token stays valid; each token opens one connection only.",
                         min=1),
    },
    "fake_driver": {
        "hosts": Int(4, "Simulated compute hosts (`kilonova up --hosts N`).", min=0),
        "host_prefix": Str("compute", "Simulated hosts are named <host_prefix>1, 2, ...; empty: after [DEFAULT] host "
                           "(itself when hosts = 1)."),
        "vcpus": Int(32, "VCPUs of each.", min=1),
        "memory_mb": Int(131072, "MiB of memory of each.", min=1),
        "disk_gb": Int(2048, "GiB of disk of each.", min=1),
        "numa_nodes": List(("0",), "NUMA cells each host reports (vCPUs and memory split evenly over them; 0: no "
                           "NUMA topology), or per host: compute1=2,compute2=1 (hosts not named: none).",
                           pattern=r"([\w.-]+=)?\d+", pattern_help="N or host=N"),
        "pci_devices": List((), "PCI devices each host reports: vendor:product:count[:numa_node] entries; an entry "
                            "host=vendor:product:count is that host's only."),
        "spawn_delay": Float(0.0, "Seconds each spawn takes.", min=0.0),
        "destroy_delay": Float(0.0, "Seconds each guest's destroy takes (to hold a delete mid-way in tests).",
                               min=0.0),
        "wait_for_vif_plugging": Bool(False, "Tests: spawns wait for the network service's network-vif-plugged "
                                      "events, as libvirt's do."),
        "fail_spawn_hosts": List((), "Host names whose spawns fail (failure injection for tests)."),
        "live_migration_delay": Float(0.5, "Seconds a simulated live migration takes (unless force-completed or "
                                      "aborted sooner).", min=0.0),
        "step_delays": List((), "Tests: driver calls held that many seconds first, on every fake host, e.g. "
                            "finish_migration=3,migrate_disk_and_power_off=1.",
                            pattern=r"\w+=\d+(\.\d+)?", pattern_help="method=seconds"),
        "fail_steps": List((), "Tests: driver calls that fail (after their delay) on the hosts of fail_step_hosts, "
                           "e.g. finish_migration,rebuild."),
        "fail_step_hosts": List((), "Hosts where fail_steps fail (empty: every host)."),
        "step_gates": List((), "Tests: the calls named here wait (at most step_gate_timeout seconds) until a file of "
                           "the same name appears in step_gate_dir, and take it: each file lets one call through."),
        "step_gate_dir": Str("{state_dir}/step-gates", "See step_gates."),
        "step_gate_timeout": Int(300, "See step_gates.", min=0),
    },
}

# Where earlier releases read an option: (section, option) -> where it lives now. Still read from there, with
# a deprecation warning at start; the new place wins when both are set. Readers may use either name.
MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("compute", "default_availability_zone"): ("DEFAULT", "default_availability_zone"),
    ("compute", "compute_driver"): ("DEFAULT", "compute_driver"),
    ("compute", "build_timeout"): ("DEFAULT", "instance_build_timeout"),
    ("compute", "sync_power_state_interval"): ("DEFAULT", "sync_power_state_interval"),
    ("compute", "force_config_drive"): ("DEFAULT", "force_config_drive"),
    ("compute", "mkisofs_cmd"): ("DEFAULT", "mkisofs_cmd"),
    ("libvirt", "force_raw_images"): ("DEFAULT", "force_raw_images"),
    ("libvirt", "instances_path"): ("DEFAULT", "instances_path"),
    ("libvirt", "shutdown_timeout"): ("DEFAULT", "shutdown_timeout"),
    ("libvirt", "image_cache_manager_interval"): ("image_cache", "manager_interval"),
    ("libvirt", "remove_unused_original_minimum_age_seconds"): ("image_cache",
                                                                "remove_unused_original_minimum_age_seconds"),
    ("filter_scheduler", "max_attempts"): ("scheduler", "max_attempts"),
    ("filter_scheduler", "max_placement_results"): ("scheduler", "max_placement_results"),
    # keystone.conf's and glance-api.conf's places for theirs
    ("identity", "token_expiration"): ("token", "expiration"),
    ("identity", "key_repository"): ("fernet_tokens", "key_repository"),
    ("image", "filesystem_store_datadir"): ("glance_store", "filesystem_store_datadir"),
}


def declared(value: object) -> Opt:
    """An option of ``DEFAULTS``; a bare string (the older way of adding one) is a string option."""
    return value if isinstance(value, Opt) else Str(str(value), "")


for _options in DEFAULTS.values():
    for _name, _value in _options.items():
        _options[_name] = declared(_value)
