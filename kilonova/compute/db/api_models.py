"""Tables of the compute API database: flavors, keypairs, cell and instance mappings, build requests, aggregates,
console tokens, server groups."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class APIBase(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.utcnow().replace(microsecond=0)


class CellMapping(APIBase):
    __tablename__ = "cell_mappings"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    transport_url: Mapped[str] = mapped_column(sa.Text)
    database_connection: Mapped[str] = mapped_column(sa.Text)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class HostMapping(APIBase):
    __tablename__ = "host_mappings"
    id: Mapped[int] = mapped_column(primary_key=True)
    cell_id: Mapped[int] = mapped_column(sa.ForeignKey("cell_mappings.id"))
    host: Mapped[str] = mapped_column(sa.String(255), unique=True)


class InstanceMapping(APIBase):
    __tablename__ = "instance_mappings"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    cell_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cell_mappings.id"), index=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(255))
    queued_for_delete: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class BuildRequest(APIBase):
    """A server accepted by the API but not yet written to a cell (Nova's build_requests)."""
    __tablename__ = "build_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    instance: Mapped[dict] = mapped_column(sa.JSON)
    # The flavor's size, for quota usage sums (the instance JSON holds the whole flavor).
    vcpus: Mapped[int] = mapped_column(default=0, server_default="0")
    memory_mb: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=_now)


class RequestSpec(APIBase):
    __tablename__ = "request_specs"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    spec: Mapped[dict] = mapped_column(sa.JSON)


class Flavor(APIBase):
    __tablename__ = "flavors"
    id: Mapped[int] = mapped_column(primary_key=True)
    flavorid: Mapped[str] = mapped_column(sa.String(255), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    memory_mb: Mapped[int]
    vcpus: Mapped[int]
    root_gb: Mapped[int] = mapped_column(default=0)
    ephemeral_gb: Mapped[int] = mapped_column(default=0)
    swap: Mapped[int] = mapped_column(default=0)
    rxtx_factor: Mapped[float] = mapped_column(default=1.0)
    vcpu_weight: Mapped[int | None]
    disabled: Mapped[bool] = mapped_column(default=False)
    is_public: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None]
    extra_specs: Mapped[list["FlavorExtraSpec"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="flavor")
    projects: Mapped[list["FlavorProject"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="flavor")


class FlavorExtraSpec(APIBase):
    __tablename__ = "flavor_extra_specs"
    __table_args__ = (sa.UniqueConstraint("flavor_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    flavor_id: Mapped[int] = mapped_column(sa.ForeignKey("flavors.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str | None] = mapped_column(sa.String(255))
    flavor: Mapped[Flavor] = relationship(back_populates="extra_specs")


class FlavorProject(APIBase):
    __tablename__ = "flavor_projects"
    __table_args__ = (sa.UniqueConstraint("flavor_id", "project_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    flavor_id: Mapped[int] = mapped_column(sa.ForeignKey("flavors.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(sa.String(255))
    flavor: Mapped[Flavor] = relationship(back_populates="projects")


class KeyPair(APIBase):
    __tablename__ = "key_pairs"
    __table_args__ = (sa.UniqueConstraint("user_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(255))
    public_key: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.String(16), default="ssh")
    created_at: Mapped[datetime] = mapped_column(default=_now)


class Quota(APIBase):
    """Per-project overrides of the configured default limits."""
    __tablename__ = "quotas"
    __table_args__ = (sa.UniqueConstraint("project_id", "resource"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255))
    resource: Mapped[str] = mapped_column(sa.String(255))
    hard_limit: Mapped[int]


class QuotaClass(APIBase):
    """os-quota-class-sets: a named class's limits; the "default" class's stand in for [quota]'s defaults."""
    __tablename__ = "quota_classes"
    __table_args__ = (sa.UniqueConstraint("class_name", "resource"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    class_name: Mapped[str] = mapped_column(sa.String(255))
    resource: Mapped[str] = mapped_column(sa.String(255))
    hard_limit: Mapped[int]


class Aggregate(APIBase):
    """A host aggregate; its ``availability_zone`` metadata makes it an availability zone."""
    __tablename__ = "aggregates"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None]
    hosts: Mapped[list["AggregateHost"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AggregateHost.id")
    items: Mapped[list["AggregateMetadata"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AggregateMetadata.key")


class AggregateHost(APIBase):
    __tablename__ = "aggregate_hosts"
    __table_args__ = (sa.UniqueConstraint("host", "aggregate_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(255), index=True)
    aggregate_id: Mapped[int] = mapped_column(sa.ForeignKey("aggregates.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=_now)


class AggregateMetadata(APIBase):
    __tablename__ = "aggregate_metadata"
    __table_args__ = (sa.UniqueConstraint("aggregate_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    aggregate_id: Mapped[int] = mapped_column(sa.ForeignKey("aggregates.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255), index=True)
    value: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(default=_now)


class ConsoleAuthToken(APIBase):
    """A console URL's token: only its SHA-256 is kept; it opens one connection, until ``expires``."""
    __tablename__ = "console_auth_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    console_type: Mapped[str] = mapped_column(sa.String(255))
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), index=True)
    host: Mapped[str] = mapped_column(sa.String(255))
    port: Mapped[int]
    expires: Mapped[int] = mapped_column(index=True)  # unix time, as upstream
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=_now)


class InstanceGroup(APIBase):
    """A server group: its one policy (2.64's ``policy``; before, a one-item ``policies``) and rules."""
    __tablename__ = "instance_groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    user_id: Mapped[str] = mapped_column(sa.String(255))
    policy: Mapped[str] = mapped_column(sa.String(255))
    rules: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class InstanceGroupMember(APIBase):
    """A server in a group (a server is in one group at most); removed when the server is deleted."""
    __tablename__ = "instance_group_member"
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("instance_groups.id", ondelete="CASCADE"), index=True)
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class QuotaGeneration(APIBase):
    """A project's count of server creates recorded: a create counts usage, then records its build requests
    only if no other create of the project recorded since (quota never passed by racing API processes)."""
    __tablename__ = "quota_generations"
    project_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    generation: Mapped[int] = mapped_column(default=0)
