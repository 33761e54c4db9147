"""Counting a project's resources (quota details) and replacing tags of any standard resource."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.network import errors
from kilonova.network.l3_models import FloatingIP, Router
from kilonova.network.models import Network, Port, SecurityGroup, SecurityGroupRule, Subnet, utcnow

MODELS = {"network": Network, "subnet": Subnet, "port": Port, "router": Router, "floatingip": FloatingIP,
          "security_group": SecurityGroup}
COUNTED = {**MODELS, "security_group_rule": SecurityGroupRule}


def counts(session: Session, project_id: str) -> dict[str, int]:
    return {name: session.scalar(sa.select(sa.func.count()).select_from(model)
                                 .where(model.project_id == project_id)) or 0
            for name, model in COUNTED.items()}


def set_tags(session: Session, resource: str, resource_id: str, tags: list[str]) -> list[str]:
    item = session.get(MODELS[resource], resource_id)
    if item is None:
        raise errors.not_found(resource, resource_id)
    item.tags = list(dict.fromkeys(tags))
    item.revision_number += 1
    item.updated_at = utcnow()
    return list(item.tags)
