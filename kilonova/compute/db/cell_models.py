"""Tables of a cell database (cell0 and every cellN): instances and the hosts that run them."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates


class CellBase(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.utcnow()


class Instance(CellBase):
    __tablename__ = "instances"
    __table_args__ = (sa.Index("ix_instances_project_deleted", "project_id", "deleted"),
                      sa.Index("ix_instances_host_deleted", "host", "deleted"))
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    display_name: Mapped[str | None] = mapped_column(sa.String(255))
    display_description: Mapped[str | None] = mapped_column(sa.Text)
    project_id: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[str] = mapped_column(sa.String(255))
    hostname: Mapped[str | None] = mapped_column(sa.String(255))
    host: Mapped[str | None] = mapped_column(sa.String(255))
    node: Mapped[str | None] = mapped_column(sa.String(255))
    availability_zone: Mapped[str | None] = mapped_column(sa.String(255))
    flavor: Mapped[dict] = mapped_column(sa.JSON)
    # The flavor's size again, kept in step with ``flavor``: quota usage is a SUM over these.
    vcpus: Mapped[int] = mapped_column(default=0, server_default="0")
    memory_mb: Mapped[int] = mapped_column(default=0, server_default="0")
    image_ref: Mapped[str | None] = mapped_column(sa.String(255))
    vm_state: Mapped[str] = mapped_column(sa.String(255))
    task_state: Mapped[str | None] = mapped_column(sa.String(255))
    power_state: Mapped[int] = mapped_column(default=0)
    key_name: Mapped[str | None] = mapped_column(sa.String(255))
    key_data: Mapped[str | None] = mapped_column(sa.Text)
    user_data: Mapped[str | None] = mapped_column(sa.Text)
    config_drive: Mapped[str | None] = mapped_column(sa.String(255))
    access_ip_v4: Mapped[str | None] = mapped_column(sa.String(39))
    access_ip_v6: Mapped[str | None] = mapped_column(sa.String(39))
    reservation_id: Mapped[str | None] = mapped_column(sa.String(255))
    launch_index: Mapped[int | None]
    locked: Mapped[bool] = mapped_column(default=False)
    locked_by: Mapped[str | None] = mapped_column(sa.String(16))
    progress: Mapped[int | None]
    metadata_: Mapped[dict] = mapped_column("metadata", sa.JSON, default=dict)
    system_metadata: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    network_info: Mapped[list] = mapped_column(sa.JSON, default=list)
    security_groups: Mapped[list] = mapped_column(sa.JSON, default=list)
    tags: Mapped[list] = mapped_column(sa.JSON, default=list)
    # During a resize or cold migration: the flavor before and after it (``flavor`` is the one in force).
    old_flavor: Mapped[dict | None] = mapped_column(sa.JSON)
    new_flavor: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None] = mapped_column(index=True)
    launched_at: Mapped[datetime | None]
    terminated_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # 0 while the instance exists; its id once soft-deleted (Nova's convention keeps uniqueness simple).
    deleted: Mapped[int] = mapped_column(default=0)

    @validates("flavor")
    def _sizes_from_flavor(self, _key: str, flavor: dict | None) -> dict | None:
        self.vcpus = int((flavor or {}).get("vcpus") or 0)
        self.memory_mb = int((flavor or {}).get("memory_mb") or 0)
        return flavor


class ShelvedImage(CellBase):
    """A snapshot image made for a shelve, from the shelve's start until the image is deleted
    (kilonova/compute/conductor/tasks/shelved_image_sweep.py)."""
    __tablename__ = "shelved_images"
    image_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class BlockDeviceMapping(CellBase):
    """A volume of a server (upstream's block_device_mapping, the fields its API shows): attached with
    ``os-volume_attachments`` or given at create in ``block_device_mapping_v2``. ``status`` is Kilonova's:
    ``attaching`` from the reservation until the host has connected it, ``attached``, ``detaching``."""
    __tablename__ = "block_device_mapping"
    __table_args__ = (sa.UniqueConstraint("instance_uuid", "volume_id"),
                      sa.UniqueConstraint("instance_uuid", "device_name"))
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), index=True)
    source_type: Mapped[str] = mapped_column(sa.String(255))
    destination_type: Mapped[str] = mapped_column(sa.String(255))
    device_name: Mapped[str | None] = mapped_column(sa.String(255))
    boot_index: Mapped[int | None]
    volume_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    volume_size: Mapped[int | None]
    image_id: Mapped[str | None] = mapped_column(sa.String(36))
    snapshot_id: Mapped[str | None] = mapped_column(sa.String(36))
    attachment_id: Mapped[str | None] = mapped_column(sa.String(36))
    connection_info: Mapped[dict | None] = mapped_column(sa.JSON)
    delete_on_termination: Mapped[bool] = mapped_column(default=False)
    tag: Mapped[str | None] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(32), default="attaching")
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None]


class InstanceFault(CellBase):
    __tablename__ = "instance_faults"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), index=True)
    code: Mapped[int]
    message: Mapped[str] = mapped_column(sa.String(255))
    details: Mapped[str | None] = mapped_column(sa.Text)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(default=_now)


class InstanceAction(CellBase):
    __tablename__ = "instance_actions"
    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(sa.String(255))
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), index=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    user_id: Mapped[str | None] = mapped_column(sa.String(255))
    project_id: Mapped[str | None] = mapped_column(sa.String(255))
    start_time: Mapped[datetime] = mapped_column(default=_now)
    finish_time: Mapped[datetime | None]
    message: Mapped[str | None] = mapped_column(sa.String(255))
    updated_at: Mapped[datetime | None]


class InstanceActionEvent(CellBase):
    """One step of an instance action (``compute_resize_instance``, ``conductor_migrate_server``, ...)."""
    __tablename__ = "instance_actions_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(sa.ForeignKey("instance_actions.id"), index=True)
    event: Mapped[str] = mapped_column(sa.String(255))
    start_time: Mapped[datetime] = mapped_column(default=_now)
    finish_time: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(sa.String(255))  # "Success" or "Error" once finished
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    details: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime | None]


class Migration(CellBase):
    """A move of an instance between hosts (resize, cold or live migration, evacuation), as upstream records it.

    While a resize or cold migration is under way the migration's uuid is the Placement consumer of the
    source host's allocation, the instance's uuid that of the destination's.
    """
    __tablename__ = "migrations"
    __table_args__ = (sa.Index("ix_migrations_instance_uuid_status", "instance_uuid", "status"),
                      sa.Index("ix_migrations_source_compute_status", "source_compute", "status"),
                      sa.Index("ix_migrations_dest_compute_status", "dest_compute", "status"))
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36))
    migration_type: Mapped[str] = mapped_column(sa.String(32))  # migration, resize, live-migration, evacuation
    status: Mapped[str] = mapped_column(sa.String(255))
    source_compute: Mapped[str | None] = mapped_column(sa.String(255))
    source_node: Mapped[str | None] = mapped_column(sa.String(255))
    dest_compute: Mapped[str | None] = mapped_column(sa.String(255))
    dest_node: Mapped[str | None] = mapped_column(sa.String(255))
    dest_host: Mapped[str | None] = mapped_column(sa.String(255))  # the destination's address (live migration)
    old_instance_type_id: Mapped[int | None]
    new_instance_type_id: Mapped[int | None]
    # The step under way, for the reconcile pass that finishes or undoes a move cut short by a crash.
    step: Mapped[str | None] = mapped_column(sa.String(64))
    hidden: Mapped[bool] = mapped_column(default=False)
    cross_cell_move: Mapped[bool] = mapped_column(default=False)
    memory_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    memory_processed: Mapped[int | None] = mapped_column(sa.BigInteger)
    memory_remaining: Mapped[int | None] = mapped_column(sa.BigInteger)
    disk_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    disk_processed: Mapped[int | None] = mapped_column(sa.BigInteger)
    disk_remaining: Mapped[int | None] = mapped_column(sa.BigInteger)
    user_id: Mapped[str | None] = mapped_column(sa.String(255))
    project_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None] = mapped_column(index=True)
    deleted_at: Mapped[datetime | None]
    deleted: Mapped[int] = mapped_column(default=0)


class Service(CellBase):
    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("host", "binary", "deleted"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    binary: Mapped[str] = mapped_column(sa.String(255))
    topic: Mapped[str | None] = mapped_column(sa.String(255))
    report_count: Mapped[int] = mapped_column(default=0)
    disabled: Mapped[bool] = mapped_column(default=False)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(255))
    forced_down: Mapped[bool] = mapped_column(default=False)
    last_seen_up: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None]
    deleted: Mapped[int] = mapped_column(default=0)


class ComputeNode(CellBase):
    __tablename__ = "compute_nodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    service_id: Mapped[int | None] = mapped_column(sa.ForeignKey("services.id"))
    host: Mapped[str] = mapped_column(sa.String(255), index=True)
    hypervisor_hostname: Mapped[str] = mapped_column(sa.String(255))
    hypervisor_type: Mapped[str] = mapped_column(sa.String(255))
    hypervisor_version: Mapped[int] = mapped_column(default=1000)
    host_ip: Mapped[str | None] = mapped_column(sa.String(39))
    vcpus: Mapped[int]
    memory_mb: Mapped[int]
    local_gb: Mapped[int]
    vcpus_used: Mapped[int] = mapped_column(default=0)
    memory_mb_used: Mapped[int] = mapped_column(default=0)
    local_gb_used: Mapped[int] = mapped_column(default=0)
    running_vms: Mapped[int] = mapped_column(default=0)
    cpu_info: Mapped[str] = mapped_column(sa.Text, default="{}")
    # JSON, as the compute agent reports them: {"failed_builds": n}; the host's NUMA cells; its PCI device pools.
    stats: Mapped[str] = mapped_column(sa.Text, default="{}", server_default="{}")
    numa_topology: Mapped[str | None] = mapped_column(sa.Text)
    pci_stats: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None]
    deleted: Mapped[int] = mapped_column(default=0)
