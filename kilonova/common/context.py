"""The request context every service derives from a validated token."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestContext:
    user_id: str | None = None
    user_name: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    domain_id: str | None = None
    roles: list[str] = field(default_factory=list)
    token: str | None = None
    request_id: str | None = None
    system_scope: str | None = None
    # Set by a service from its policy's context_is_admin rule, as oslo.context's is_admin is (None: the
    # admin role decides). Not sent along with the context: each service asks its own policy.
    admin_by_policy: bool | None = field(default=None, compare=False, repr=False)

    @property
    def is_admin(self) -> bool:
        if self.admin_by_policy is not None:
            return self.admin_by_policy
        return "admin" in self.roles

    @property
    def can_read(self) -> bool:
        return bool({"admin", "member", "reader"} & set(self.roles))

    @property
    def can_write(self) -> bool:
        return bool({"admin", "member"} & set(self.roles))

    @classmethod
    def from_token(cls, token_body: dict, token: str, request_id: str | None = None) -> "RequestContext":
        """Build a context from a Keystone v3 token document (``{"token": {...}}``)."""
        data = token_body["token"]
        user = data.get("user", {})
        project = data.get("project") or {}
        return cls(
            user_id=user.get("id"),
            user_name=user.get("name"),
            project_id=project.get("id"),
            project_name=project.get("name"),
            domain_id=(project.get("domain") or user.get("domain") or {}).get("id"),
            roles=[role["name"] for role in data.get("roles", [])],
            token=token,
            request_id=request_id,
            system_scope="all" if data.get("system") else None,
        )

    @classmethod
    def admin(cls, request_id: str | None = None) -> "RequestContext":
        """A context for internal work done by the services themselves."""
        return cls(user_id="kilonova-internal", project_id=None, roles=["admin"], request_id=request_id)

    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id, "user_name": self.user_name, "project_id": self.project_id,
            "project_name": self.project_name, "domain_id": self.domain_id, "roles": list(self.roles),
            "request_id": self.request_id,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "RequestContext":
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__ and k != "admin_by_policy"})
