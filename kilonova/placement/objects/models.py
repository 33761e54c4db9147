"""Placement's tables. Each table is owned by one module of this package."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class PlacementBase(DeclarativeBase):
    pass


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


class ResourceClass(PlacementBase):
    """Standard classes keep the id of their index in os_resource_classes; custom ones start at 10000."""
    __tablename__ = "resource_classes"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class Trait(PlacementBase):
    __tablename__ = "traits"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class ResourceProvider(PlacementBase):
    __tablename__ = "resource_providers"
    __table_args__ = (sa.Index("ix_resource_providers_root_id", "root_provider_id"),
                      sa.Index("ix_resource_providers_parent_id", "parent_provider_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    generation: Mapped[int] = mapped_column(default=0)
    # bumped when the provider's usage drops without a generation bump (see objects.capacity)
    usage_serial: Mapped[int] = mapped_column(default=0, server_default="0")
    root_provider_id: Mapped[int | None] = mapped_column(sa.Integer)
    parent_provider_id: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class Inventory(PlacementBase):
    __tablename__ = "inventories"
    __table_args__ = (sa.UniqueConstraint("resource_provider_id", "resource_class_id",
                                          name="uniq_inventories0resource_provider_resource_class"),
                      sa.Index("ix_inventories_resource_class_id", "resource_class_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    resource_provider_id: Mapped[int] = mapped_column(sa.Integer)
    resource_class_id: Mapped[int] = mapped_column(sa.Integer)
    total: Mapped[int] = mapped_column(sa.Integer)
    reserved: Mapped[int] = mapped_column(sa.Integer)
    min_unit: Mapped[int] = mapped_column(sa.Integer)
    max_unit: Mapped[int] = mapped_column(sa.Integer)
    step_size: Mapped[int] = mapped_column(sa.Integer)
    allocation_ratio: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class ConsumerType(PlacementBase):
    __tablename__ = "consumer_types"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)


class Consumer(PlacementBase):
    __tablename__ = "consumers"
    __table_args__ = (sa.Index("ix_consumers_project_user", "project_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    project_id: Mapped[str] = mapped_column(sa.String(255))
    user_id: Mapped[str] = mapped_column(sa.String(255))
    generation: Mapped[int] = mapped_column(default=0)
    consumer_type_id: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class Allocation(PlacementBase):
    """One consumer's use of one class on one provider; never updated, only replaced."""
    __tablename__ = "allocations"
    __table_args__ = (sa.Index("ix_allocations_provider_class_used", "resource_provider_id",
                               "resource_class_id", "used"),
                      sa.Index("ix_allocations_consumer_id", "consumer_id"),
                      sa.Index("ix_allocations_resource_class_id", "resource_class_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    resource_provider_id: Mapped[int] = mapped_column(sa.Integer)
    consumer_id: Mapped[str] = mapped_column(sa.String(36))
    resource_class_id: Mapped[int] = mapped_column(sa.Integer)
    used: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class Aggregate(PlacementBase):
    __tablename__ = "placement_aggregates"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)


class ProviderAggregate(PlacementBase):
    __tablename__ = "resource_provider_aggregates"
    __table_args__ = (sa.Index("ix_rp_aggregates_aggregate_id", "aggregate_id"),)
    resource_provider_id: Mapped[int] = mapped_column(primary_key=True)
    aggregate_id: Mapped[int] = mapped_column(primary_key=True)


class ProviderTrait(PlacementBase):
    __tablename__ = "resource_provider_traits"
    __table_args__ = (sa.Index("ix_rp_traits_trait_id", "trait_id"),)
    resource_provider_id: Mapped[int] = mapped_column(primary_key=True)
    trait_id: Mapped[int] = mapped_column(primary_key=True)
