"""Per-project quota limits (defaults overridden by ``PUT /v2.0/quotas/{id}``) and their enforcement."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepared
from kilonova.network import errors
from kilonova.network.l3_models import QuotaLimit

DEFAULTS = {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50, "security_group": 10,
            "security_group_rule": 100, "rbac_policy": 10, "subnetpool": -1}


# Built once: every port create and every server create's port-quota check reads these.
_STORED = prepared(sa.select(QuotaLimit.resource, QuotaLimit.limit)
                   .where(QuotaLimit.project_id == sa.bindparam("project_id")))


def limits(session: Session, project_id: str) -> dict[str, int]:
    stored = session.execute(_STORED, {"project_id": project_id}).all()
    return {**DEFAULTS, **{resource: limit for resource, limit in stored if resource in DEFAULTS}}


def projects_with_limits(session: Session) -> list[str]:
    return sorted(set(session.scalars(sa.select(QuotaLimit.project_id))))


def set_limits(session: Session, project_id: str, values: dict[str, int]) -> dict[str, int]:
    for resource, limit in values.items():
        row = session.scalars(sa.select(QuotaLimit).where(QuotaLimit.project_id == project_id,
                                                          QuotaLimit.resource == resource)).first()
        if row is None:
            session.add(QuotaLimit(project_id=project_id, resource=resource, limit=limit))
        else:
            row.limit = limit
    session.flush()
    return limits(session, project_id)


def reset(session: Session, project_id: str) -> None:
    session.execute(sa.delete(QuotaLimit).where(QuotaLimit.project_id == project_id))


def check(session: Session, project_id: str, resource: str, used: int, wanted: int = 1) -> None:
    """OverQuota (409) when ``used`` + ``wanted`` items of ``resource`` exceed the project's limit."""
    limit = limits(session, project_id)[resource]
    if 0 <= limit < used + wanted:
        raise errors.fault(409, "OverQuota", f"Quota exceeded for resources: ['{resource}'].")
