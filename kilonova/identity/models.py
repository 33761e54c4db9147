"""The identity database's tables (Keystone's, reduced to what Kilonova serves)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_DOMAIN_ID = "default"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class IdentityBase(DeclarativeBase):
    """Metadata of the identity database only."""


class Domain(IdentityBase):
    __tablename__ = "domains"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)


class Project(IdentityBase):
    __tablename__ = "projects"
    __table_args__ = (sa.UniqueConstraint("domain_id", "name", name="uniq_projects_domain_name"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    domain_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("domains.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(sa.String(64))
    description: Mapped[str | None] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)


class User(IdentityBase):
    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("domain_id", "name", name="uniq_users_domain_name"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    domain_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("domains.id"), index=True)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    default_project_id: Mapped[str | None] = mapped_column(sa.String(64))
    extra: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    # Wrong passwords since the last login or unlock, and when the last one came (account lockout).
    failed_auth_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    failed_auth_at: Mapped[datetime | None] = mapped_column(sa.DateTime)


class Role(IdentityBase):
    __tablename__ = "roles"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    domain_id: Mapped[str | None] = mapped_column(sa.String(64))
    description: Mapped[str | None] = mapped_column(sa.Text)
    extra: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class ImpliedRole(IdentityBase):
    __tablename__ = "implied_roles"

    prior_role_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    implied_role_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


class Assignment(IdentityBase):
    """A role granted to a user on a project, a domain or the system (target_id "all")."""

    __tablename__ = "assignments"

    target_type: Mapped[str] = mapped_column(sa.String(16), primary_key=True)  # project | domain | system
    target_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True, index=True)
    actor_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True, index=True)
    role_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


class Region(IdentityBase):
    __tablename__ = "regions"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    parent_region_id: Mapped[str | None] = mapped_column(sa.String(255))


class CatalogService(IdentityBase):
    __tablename__ = "services"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class Endpoint(IdentityBase):
    __tablename__ = "endpoints"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("services.id", ondelete="CASCADE"), index=True)
    interface: Mapped[str] = mapped_column(sa.String(8))
    region_id: Mapped[str | None] = mapped_column(sa.String(255))
    url: Mapped[str] = mapped_column(sa.Text)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class RevocationEvent(IdentityBase):
    """Tokens matching the event and issued at or before ``revoked_at`` (epoch seconds) are invalid."""

    __tablename__ = "revocation_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    audit_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(64))
    project_id: Mapped[str | None] = mapped_column(sa.String(64))
    revoked_at: Mapped[float] = mapped_column(sa.Float)


class RegisteredLimit(IdentityBase):
    """Keystone's registered limit: a service's default limit of a resource, optionally per region."""

    __tablename__ = "registered_limits"

    internal_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    service_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    region_id: Mapped[str | None] = mapped_column(sa.String(255))
    resource_name: Mapped[str] = mapped_column(sa.String(255))
    default_limit: Mapped[int] = mapped_column(sa.Integer)
    description: Mapped[str | None] = mapped_column(sa.Text)


class ProjectLimit(IdentityBase):
    """Keystone's limit: a project's (or domain's) own value of a registered limit."""

    __tablename__ = "limits"

    internal_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    project_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    domain_id: Mapped[str | None] = mapped_column(sa.String(64))
    registered_limit_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("registered_limits.id"), index=True)
    resource_limit: Mapped[int] = mapped_column(sa.Integer)
    description: Mapped[str | None] = mapped_column(sa.Text)
