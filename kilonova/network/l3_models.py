"""Tables of Neutron's L3 resources: routers, floating IPs, and the per-project quota limits.

A router's interfaces and gateway are ordinary ports (``device_id`` the router, ``device_owner``
``network:router_interface`` / ``network:router_gateway``); a floating IP holds a port of its external
network (``network:floatingip``) for its address.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kilonova.network.models import NetworkBase, _StandardAttrs


class Router(_StandardAttrs, NetworkBase):
    __tablename__ = "routers"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    status: Mapped[str] = mapped_column(sa.String(16), default="ACTIVE")
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    gw_port_id: Mapped[str | None] = mapped_column(sa.ForeignKey("ports.id", ondelete="SET NULL"))
    enable_snat: Mapped[bool] = mapped_column(default=True)
    routes: Mapped[list] = mapped_column(sa.JSON, default=list)
    availability_zone_hints: Mapped[list] = mapped_column(sa.JSON, default=list)


class FloatingIP(_StandardAttrs, NetworkBase):
    __tablename__ = "floatingips"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    floating_network_id: Mapped[str] = mapped_column(sa.ForeignKey("networks.id"), index=True)
    floating_port_id: Mapped[str] = mapped_column(sa.ForeignKey("ports.id", ondelete="CASCADE"), unique=True)
    floating_ip_address: Mapped[str] = mapped_column(sa.String(64))
    # A deleted port takes its floating IPs' association with it (Neutron disassociates them).
    fixed_port_id: Mapped[str | None] = mapped_column(sa.ForeignKey("ports.id", ondelete="SET NULL"), index=True)
    fixed_ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    router_id: Mapped[str | None] = mapped_column(sa.ForeignKey("routers.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="DOWN")


class QuotaLimit(NetworkBase):
    """A project's limit of one resource, where it differs from the default (``PUT /v2.0/quotas/{id}``)."""
    __tablename__ = "quotas"
    __table_args__ = (sa.UniqueConstraint("project_id", "resource"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    resource: Mapped[str] = mapped_column(sa.String(255))
    limit: Mapped[int] = mapped_column()
