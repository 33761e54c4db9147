"""The instance_groups and instance_group_member tables (API database): server groups and their servers."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import NotFound
from kilonova.common.prepared import prepare
from kilonova.compute.db.api_models import InstanceGroup, InstanceGroupMember, InstanceMapping


class OverQuota(Exception):
    """Past the limit; ``held``: what was counted."""

    def __init__(self, held: int):
        super().__init__(held)
        self.held = held


def as_dict(group: InstanceGroup, members: list[str]) -> dict[str, Any]:
    return {"uuid": group.uuid, "name": group.name, "project_id": group.project_id, "user_id": group.user_id,
            "policy": group.policy, "rules": dict(group.rules or {}), "members": members}


def _row(session: Session, uuid: str) -> InstanceGroup:
    group = session.scalar(sa.select(InstanceGroup).where(InstanceGroup.uuid == uuid))
    if group is None:
        raise NotFound(f"Instance group {uuid} could not be found.")
    return group


def _members(session: Session, group_ids: list[int]) -> dict[int, list[str]]:
    """Each group's servers that are not deleted (a mapping not queued for delete), oldest first."""
    found: dict[int, list[str]] = {gid: [] for gid in group_ids}
    if not group_ids:
        return found
    rows = session.execute(
        sa.select(InstanceGroupMember.group_id, InstanceGroupMember.instance_uuid)
        .join(InstanceMapping, InstanceMapping.instance_uuid == InstanceGroupMember.instance_uuid)
        .where(InstanceGroupMember.group_id.in_(group_ids), InstanceMapping.queued_for_delete.is_(False))
        .order_by(InstanceGroupMember.id))
    for group_id, uuid in rows:
        found[group_id].append(uuid)
    return found


# Every scheduling with the group hint reads its group: plain columns from statements built once.
_GROUPS, _GROUP_MEMBERS, _MAPPINGS = InstanceGroup.__table__, InstanceGroupMember.__table__, InstanceMapping.__table__
_GROUP = sa.select(_GROUPS).where(_GROUPS.c.uuid == sa.bindparam("uuid"))
_MEMBERS_OF = (sa.select(_GROUP_MEMBERS.c.instance_uuid)
               .join(_MAPPINGS, _MAPPINGS.c.instance_uuid == _GROUP_MEMBERS.c.instance_uuid)
               .where(_GROUP_MEMBERS.c.group_id == sa.bindparam("group_id"), _MAPPINGS.c.queued_for_delete.is_(False))
               .order_by(_GROUP_MEMBERS.c.id))
prepare(_GROUP, _MEMBERS_OF)  # on SQLite's cursor


def get(session: Session, uuid: str) -> dict[str, Any]:
    group = session.execute(_GROUP, {"uuid": uuid}).first()
    if group is None:
        raise NotFound(f"Instance group {uuid} could not be found.")
    return as_dict(group, list(session.scalars(_MEMBERS_OF, {"group_id": group.id})))


def count(session: Session, project_id: str) -> int:
    return session.scalar(sa.select(sa.func.count(InstanceGroup.id)).where(
        InstanceGroup.project_id == project_id)) or 0


def create(session: Session, values: dict[str, Any], limit: int) -> dict[str, Any]:
    """values: uuid, name, project_id, user_id, policy, rules. OverQuota past ``limit`` groups (-1: none),
    counted in the writing transaction."""
    held = count(session, values["project_id"])
    if 0 <= limit <= held:
        raise OverQuota(held)
    group = InstanceGroup(**values)
    session.add(group)
    session.flush()
    return as_dict(group, [])


def list_groups(session: Session, project_id: str | None) -> list[dict[str, Any]]:
    """A project's groups (every project's with None), oldest first."""
    stmt = sa.select(InstanceGroup).order_by(InstanceGroup.id)
    if project_id is not None:
        stmt = stmt.where(InstanceGroup.project_id == project_id)
    groups = list(session.scalars(stmt))
    members = _members(session, [g.id for g in groups])
    return [as_dict(g, members[g.id]) for g in groups]


def delete(session: Session, uuid: str) -> None:
    group = _row(session, uuid)
    session.execute(sa.delete(InstanceGroupMember).where(InstanceGroupMember.group_id == group.id))
    session.delete(group)
    session.flush()


def member_count(session: Session, group_id: int, user_id: str | None = None) -> int:
    """The group's servers that are not deleted; ``user_id``: only those of that user (the classic quota
    driver's count, as upstream's)."""
    query = sa.select(sa.func.count()).select_from(InstanceGroupMember).join(
        InstanceMapping, InstanceMapping.instance_uuid == InstanceGroupMember.instance_uuid).where(
        InstanceGroupMember.group_id == group_id, InstanceMapping.queued_for_delete.is_(False))
    if user_id is not None:
        query = query.where(InstanceMapping.user_id == user_id)
    return session.scalar(query) or 0


def held(session: Session, uuid: str, user_id: str | None = None) -> int:
    """``member_count`` of the group with this uuid."""
    return member_count(session, _row(session, uuid).id, user_id)


def add_members(session: Session, uuid: str, instance_uuids: list[str], limit: int,
                user_id: str | None = None) -> None:
    """Record servers in a group; OverQuota when the group would hold more than ``limit`` (-1: no limit) of
    its servers (of ``user_id``'s, when given), counted in this writing transaction."""
    group = _row(session, uuid)
    held = member_count(session, group.id, user_id)
    if 0 <= limit < held + len(instance_uuids):
        raise OverQuota(held)
    for instance_uuid in instance_uuids:
        session.add(InstanceGroupMember(group_id=group.id, instance_uuid=instance_uuid))
    session.flush()


def remove_member(session: Session, instance_uuid: str) -> None:
    session.execute(sa.delete(InstanceGroupMember).where(InstanceGroupMember.instance_uuid == instance_uuid))


def group_of(session: Session, instance_uuid: str) -> str | None:
    """The uuid of the group a server is in, if any."""
    return session.scalar(sa.select(InstanceGroup.uuid).join(
        InstanceGroupMember, InstanceGroupMember.group_id == InstanceGroup.id).where(
        InstanceGroupMember.instance_uuid == instance_uuid))
