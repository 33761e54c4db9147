"""Tables of the network database: networks, subnets, ports, IP allocations and security groups."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class NetworkBase(DeclarativeBase):
    pass


def utcnow() -> datetime:
    """Stored with microseconds so that listings keep creation order; shown to the second."""
    return datetime.utcnow()


class _StandardAttrs:
    """Neutron's standard attributes: description, tags, timestamps, revision number."""
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    tags: Mapped[list] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    revision_number: Mapped[int] = mapped_column(default=0)


class Network(_StandardAttrs, NetworkBase):
    __tablename__ = "networks"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="ACTIVE")
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    shared: Mapped[bool] = mapped_column(default=False)
    external: Mapped[bool] = mapped_column(default=False)
    mtu: Mapped[int] = mapped_column(default=1500)
    port_security_enabled: Mapped[bool] = mapped_column(default=True)
    network_type: Mapped[str | None] = mapped_column(sa.String(32))
    physical_network: Mapped[str | None] = mapped_column(sa.String(64))
    segmentation_id: Mapped[int | None] = mapped_column()
    availability_zone_hints: Mapped[list] = mapped_column(sa.JSON, default=list)
    subnets: Mapped[list["Subnet"]] = relationship(back_populates="network", lazy="selectin",
                                                   order_by="Subnet.created_at, Subnet.id")


class Subnet(_StandardAttrs, NetworkBase):
    __tablename__ = "subnets"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    ip_version: Mapped[int] = mapped_column()
    cidr: Mapped[str] = mapped_column(sa.String(64))
    gateway_ip: Mapped[str | None] = mapped_column(sa.String(64))
    enable_dhcp: Mapped[bool] = mapped_column(default=True)
    allocation_pools: Mapped[list] = mapped_column(sa.JSON, default=list)
    dns_nameservers: Mapped[list] = mapped_column(sa.JSON, default=list)
    host_routes: Mapped[list] = mapped_column(sa.JSON, default=list)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(sa.String(16))
    ipv6_address_mode: Mapped[str | None] = mapped_column(sa.String(16))
    network: Mapped[Network] = relationship(back_populates="subnets")


class Port(_StandardAttrs, NetworkBase):
    __tablename__ = "ports"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    mac_address: Mapped[str] = mapped_column(sa.String(32), unique=True)
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    binding_host_id: Mapped[str] = mapped_column(sa.String(255), default="")
    binding_profile: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    binding_vnic_type: Mapped[str] = mapped_column(sa.String(64), default="normal")
    port_security_enabled: Mapped[bool] = mapped_column(default=True)
    fixed_ips: Mapped[list["IPAllocation"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="IPAllocation.id")


class IPAllocation(NetworkBase):
    """One address of one subnet held by one port."""
    __tablename__ = "ip_allocations"
    __table_args__ = (sa.UniqueConstraint("subnet_id", "ip_address"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    port_id: Mapped[str] = mapped_column(sa.ForeignKey("ports.id", ondelete="CASCADE"), index=True)
    subnet_id: Mapped[str] = mapped_column(sa.ForeignKey("subnets.id", ondelete="CASCADE"), index=True)
    network_id: Mapped[str] = mapped_column(sa.String(36), index=True)
    ip_address: Mapped[str] = mapped_column(sa.String(64))


class SecurityGroup(_StandardAttrs, NetworkBase):
    __tablename__ = "security_groups"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    stateful: Mapped[bool] = mapped_column(default=True)


class DefaultSecurityGroup(NetworkBase):
    """One row per project: its ``default`` group (the primary key keeps two first uses from making two)."""
    __tablename__ = "default_security_groups"
    project_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
                                                   unique=True)


class SecurityGroupRule(NetworkBase):
    __tablename__ = "security_group_rules"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
                                                   index=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    direction: Mapped[str] = mapped_column(sa.String(16))
    ethertype: Mapped[str] = mapped_column(sa.String(8))
    protocol: Mapped[str | None] = mapped_column(sa.String(40))
    port_range_min: Mapped[int | None] = mapped_column()
    port_range_max: Mapped[int | None] = mapped_column()
    remote_ip_prefix: Mapped[str | None] = mapped_column(sa.String(64))
    remote_group_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("security_groups.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    revision_number: Mapped[int] = mapped_column(default=0)


class SecurityGroupPortBinding(NetworkBase):
    """A port's membership of a group; a group a port is bound to cannot be deleted."""
    __tablename__ = "security_group_port_bindings"
    port_id: Mapped[str] = mapped_column(sa.ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(sa.ForeignKey("security_groups.id"), primary_key=True,
                                                   index=True)


# The L3 tables (routers, floating IPs, quotas) share this metadata.
from kilonova.network import l3_models  # noqa: E402,F401
