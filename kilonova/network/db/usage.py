"""Counting a project's resources (quota details) and replacing tags of any standard resource."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepared
from kilonova.network import errors
from kilonova.network.db import quota_limits
from kilonova.network.l3_models import FloatingIP, Router
from kilonova.network.models import Network, Port, SecurityGroup, SecurityGroupRule, Subnet, utcnow

MODELS = {"network": Network, "subnet": Subnet, "port": Port, "router": Router, "floatingip": FloatingIP,
          "security_group": SecurityGroup}
COUNTED = {**MODELS, "security_group_rule": SecurityGroupRule}

# Statements built once (a server create asks for the counts, every port create for one of them).
_COUNT_OF = {name: sa.select(sa.func.count()).select_from(model)
             .where(model.project_id == sa.bindparam("project_id")) for name, model in COUNTED.items()}
_COUNTS = prepared(sa.select(*(count.scalar_subquery().label(name) for name, count in _COUNT_OF.items())))
for _count in _COUNT_OF.values():
    prepared(_count)


def counts(session: Session, project_id: str) -> dict[str, int]:
    """Every counted resource of ``project_id``, in one statement."""
    row = session.execute(_COUNTS, {"project_id": project_id}).one()
    return {name: row._mapping[name] or 0 for name in COUNTED}


def check_quota(session: Session, resource: str, project_ids: list[str]) -> None:
    """OverQuota (409) when creating one ``resource`` for each of ``project_ids`` (a bulk create names a project
    once per item) would take a project past its limit; checked in the creating transaction."""
    for project_id in sorted(set(project_ids)):
        used = session.scalar(_COUNT_OF[resource], {"project_id": project_id})
        quota_limits.check(session, project_id, resource, used or 0, project_ids.count(project_id))


def set_tags(session: Session, resource: str, resource_id: str, tags: list[str]) -> list[str]:
    item = session.get(MODELS[resource], resource_id)
    if item is None:
        raise errors.not_found(resource, resource_id)
    item.tags = list(dict.fromkeys(tags))
    item.revision_number += 1
    item.updated_at = utcnow()
    return list(item.tags)
