"""The ``security_groups`` and ``security_group_rules`` tables, each project's default group, and
which ports are in which groups."""
from __future__ import annotations

import uuid
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepared
from kilonova.network import errors, sg_rules
from kilonova.network.db import usage
from kilonova.network.models import (DefaultSecurityGroup, SecurityGroup, SecurityGroupPortBinding,
                                     SecurityGroupRule, utcnow)

GROUP_COLUMNS = ("id", "project_id", "name", "stateful", "description", "tags", "created_at", "updated_at",
                 "revision_number")
RULE_COLUMNS = ("id", "security_group_id", "project_id", "direction", "ethertype", "protocol", "port_range_min",
                "port_range_max", "remote_ip_prefix", "remote_group_id", "description", "created_at", "updated_at",
                "revision_number")
DEFAULT_NAME = "default"
DEFAULT_DESCRIPTION = "Default security group"

_GROUPS = SecurityGroup.__table__
_RULES = SecurityGroupRule.__table__
_BINDINGS = SecurityGroupPortBinding.__table__
_DEFAULTS = DefaultSecurityGroup.__table__


def group_not_found(group_id: str) -> Exception:
    return errors.fault(404, "SecurityGroupNotFound", f"Security group {group_id} does not exist")


def rule_not_found(rule_id: str) -> Exception:
    return errors.fault(404, "SecurityGroupRuleNotFound", f"Security group rule {rule_id} does not exist")


# ------------------------------------------------------------------------------------------ reading

def _rules_of(session: Session, group_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {group_id: [] for group_id in group_ids}
    if not group_ids:
        return found
    query = sa.select(*(_RULES.c[c] for c in RULE_COLUMNS)).where(_RULES.c.security_group_id.in_(group_ids)) \
        .order_by(_RULES.c.created_at, _RULES.c.id)
    for row in session.execute(query).mappings():
        found[row["security_group_id"]].append(dict(row))
    return found


def _defaults(session: Session, group_ids: list[str]) -> set[str]:
    if not group_ids:
        return set()
    return set(session.scalars(sa.select(_DEFAULTS.c.security_group_id)
                               .where(_DEFAULTS.c.security_group_id.in_(group_ids))))


def _with_rules(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [row["id"] for row in rows]
    rules, defaults = _rules_of(session, ids), _defaults(session, ids)
    for row in rows:
        row["security_group_rules"] = rules[row["id"]]
        row["is_default"] = row["id"] in defaults
        for rule in row["security_group_rules"]:
            rule["belongs_to_default_sg"] = row["is_default"]
    return rows


def _group_row(session: Session, group_id: str) -> dict[str, Any]:
    row = session.execute(sa.select(*(_GROUPS.c[c] for c in GROUP_COLUMNS)).where(_GROUPS.c.id == group_id)
                          ).mappings().first()
    if row is None:
        raise group_not_found(group_id)
    return dict(row)


def get_group(session: Session, group_id: str) -> dict[str, Any]:
    return _with_rules(session, [_group_row(session, group_id)])[0]


def list_groups(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    query = sa.select(*(_GROUPS.c[c] for c in GROUP_COLUMNS)).order_by(_GROUPS.c.created_at, _GROUPS.c.id)
    if visible_to is not None:
        query = query.where(_GROUPS.c.project_id == visible_to)
    for name in ("id", "name", "project_id"):
        if name in filters:
            query = query.where(_GROUPS.c[name].in_(filters[name]))
    return _with_rules(session, [dict(row) for row in session.execute(query).mappings()])


def get_rule(session: Session, rule_id: str) -> dict[str, Any]:
    row = session.execute(sa.select(*(_RULES.c[c] for c in RULE_COLUMNS)).where(_RULES.c.id == rule_id)
                          ).mappings().first()
    if row is None:
        raise rule_not_found(rule_id)
    rule = dict(row)
    rule["belongs_to_default_sg"] = bool(_defaults(session, [rule["security_group_id"]]))
    rule["group_project_id"] = _group_row(session, rule["security_group_id"])["project_id"]
    return rule


def list_rules(session: Session, visible_to: str | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Rules of ``visible_to``'s groups or its own (None: all)."""
    query = sa.select(*(_RULES.c[c] for c in RULE_COLUMNS)).order_by(_RULES.c.created_at, _RULES.c.id)
    if visible_to is not None:
        owned = sa.select(_GROUPS.c.id).where(_GROUPS.c.project_id == visible_to)
        query = query.where(sa.or_(_RULES.c.project_id == visible_to, _RULES.c.security_group_id.in_(owned)))
    for name in ("id", "security_group_id", "project_id", "direction", "ethertype", "remote_group_id"):
        if name in filters:
            query = query.where(_RULES.c[name].in_(filters[name]))
    rules = [dict(row) for row in session.execute(query).mappings()]
    defaults = _defaults(session, sorted({rule["security_group_id"] for rule in rules}))
    for rule in rules:
        rule["belongs_to_default_sg"] = rule["security_group_id"] in defaults
    return rules


def find_by_name_or_id(session: Session, project_id: str, name_or_id: str) -> list[str]:
    """Ids of the project's groups named ``name_or_id``, else the one with that id."""
    named = list(session.scalars(sa.select(_GROUPS.c.id).where(_GROUPS.c.project_id == project_id,
                                                              _GROUPS.c.name == name_or_id)))
    if named:
        return named
    return list(session.scalars(sa.select(_GROUPS.c.id).where(_GROUPS.c.project_id == project_id,
                                                             _GROUPS.c.id == name_or_id)))


# ------------------------------------------------------------------------------------------ quotas

def check_quota(session: Session, resource: str, project_id: str, adding: int) -> None:
    usage.check_quota(session, resource, [project_id] * adding)


# ------------------------------------------------------------------------------------------ writing

def _insert_rule(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    row = {"id": str(uuid.uuid4()), "protocol": None, "port_range_min": None, "port_range_max": None,
           "remote_ip_prefix": None, "remote_group_id": None, "description": "", "created_at": now,
           "updated_at": now, "revision_number": 0, **values}
    session.execute(_RULES.insert(), row)
    return row


def _touch(session: Session, group_id: str) -> None:
    """A group's revision moves with its rules, as Neutron's does."""
    session.execute(_GROUPS.update().where(_GROUPS.c.id == group_id).values(
        revision_number=_GROUPS.c.revision_number + 1, updated_at=utcnow()))


def _insert_group(session: Session, values: dict[str, Any], default: bool) -> str:
    now = utcnow()
    row = {"id": str(uuid.uuid4()), "name": "", "description": "", "stateful": True, "tags": [],
           "created_at": now, "updated_at": now, "revision_number": 0, **values}
    session.execute(_GROUPS.insert(), row)
    for ethertype in sg_rules.ETHERTYPES:
        if default:  # members of the default group reach each other
            _insert_rule(session, {"security_group_id": row["id"], "project_id": row["project_id"],
                                   "direction": "ingress", "ethertype": ethertype, "remote_group_id": row["id"]})
        _insert_rule(session, {"security_group_id": row["id"], "project_id": row["project_id"],
                               "direction": "egress", "ethertype": ethertype})
    return row["id"]


_DEFAULT_OF = prepared(sa.select(_DEFAULTS.c.security_group_id)
                       .where(_DEFAULTS.c.project_id == sa.bindparam("project_id")))


def default_group_id(session: Session, project_id: str) -> str | None:
    return session.scalar(_DEFAULT_OF, {"project_id": project_id})


def ensure_default(session: Session, project_id: str) -> str:
    """The project's default group, made on its first use (two first uses at once: one wins, the other
    gets an IntegrityError and is retried)."""
    existing = default_group_id(session, project_id)
    if existing is not None:
        return existing
    group_id = _insert_group(session, {"project_id": project_id, "name": DEFAULT_NAME,
                                       "description": DEFAULT_DESCRIPTION}, default=True)
    session.execute(_DEFAULTS.insert(), {"project_id": project_id, "security_group_id": group_id})
    return group_id


def create_group(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    ensure_default(session, values["project_id"])
    check_quota(session, "security_group", values["project_id"], 1)
    check_quota(session, "security_group_rule", values["project_id"], len(sg_rules.ETHERTYPES))
    return get_group(session, _insert_group(session, values, default=False))


def _in_use(session: Session, group_id: str) -> bool:
    return session.execute(sa.select(_BINDINGS.c.port_id).where(_BINDINGS.c.security_group_id == group_id)
                           ).first() is not None


def _group_in_use(group_id: str) -> Exception:
    return errors.fault(409, "SecurityGroupInUse", f"Security Group {group_id} in use.")


def update_group(session: Session, group_id: str, values: dict[str, Any]) -> dict[str, Any]:
    group = _group_row(session, group_id)
    if "name" in values and default_group_id(session, group["project_id"]) == group_id:
        raise errors.fault(409, "SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
    if values.get("stateful", group["stateful"]) != group["stateful"] and _in_use(session, group_id):
        raise _group_in_use(group_id)  # its ports' filtering would change kind under them
    session.execute(_GROUPS.update().where(_GROUPS.c.id == group_id).values(
        **values, revision_number=group["revision_number"] + 1, updated_at=utcnow()))
    return get_group(session, group_id)


def delete_group(session: Session, group_id: str, privileged: bool) -> None:
    group = _group_row(session, group_id)
    if _in_use(session, group_id):
        raise _group_in_use(group_id)
    if default_group_id(session, group["project_id"]) == group_id and not privileged:
        raise errors.fault(409, "SecurityGroupCannotRemoveDefault",
                           "Insufficient rights for removing default security group.")
    session.execute(_RULES.delete().where(_RULES.c.remote_group_id == group_id))
    session.execute(_RULES.delete().where(_RULES.c.security_group_id == group_id))
    session.execute(_DEFAULTS.delete().where(_DEFAULTS.c.security_group_id == group_id))
    session.execute(_GROUPS.delete().where(_GROUPS.c.id == group_id))


def create_rules(session: Session, group_id: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert ``rules`` (converted and checked) into ``group_id``: 409 for a duplicate or over quota."""
    group = _group_row(session, group_id)
    for rule in rules:
        if rule.get("remote_group_id"):
            _group_row(session, rule["remote_group_id"])
    keys = [sg_rules.key(rule) for rule in rules]
    if len(set(keys)) != len(keys):
        raise errors.fault(409, "DuplicateSecurityGroupRuleInPost", "Duplicate Security Group Rule in POST.")
    for existing in _rules_of(session, [group_id])[group_id]:
        if sg_rules.key(existing) in keys:
            raise errors.fault(409, "SecurityGroupRuleExists",
                               f"Security group rule already exists. Rule id is {existing['id']}.")
    check_quota(session, "security_group_rule", rules[0]["project_id"], len(rules))
    created = [_insert_rule(session, rule) for rule in rules]
    _touch(session, group_id)
    is_default = default_group_id(session, group["project_id"]) == group_id
    for rule in created:
        rule["belongs_to_default_sg"] = is_default
    return created


def delete_rule(session: Session, rule_id: str) -> None:
    rule = get_rule(session, rule_id)
    session.execute(_RULES.delete().where(_RULES.c.id == rule_id))
    _touch(session, rule["security_group_id"])


# ------------------------------------------------------------------------------------------ ports

# Every read of a port (each move rebinds the server's ports) reads its groups: built once.
_GROUPS_OF_PORTS = prepared(sa.select(_BINDINGS.c.port_id, _BINDINGS.c.security_group_id).where(
    _BINDINGS.c.port_id.in_(sa.bindparam("port_ids", expanding=True))).order_by(_BINDINGS.c.security_group_id))


def groups_of_ports(session: Session, port_ids: Iterable[str]) -> dict[str, list[str]]:
    ids = list(port_ids)
    found: dict[str, list[str]] = {port_id: [] for port_id in ids}
    if ids:
        for port_id, group_id in session.execute(_GROUPS_OF_PORTS, {"port_ids": ids}):
            found[port_id].append(group_id)
    return found


def check_usable(session: Session, group_ids: list[str], project_id: str, privileged: bool) -> None:
    """SecurityGroupNotFound naming the groups that do not exist or belong to another project."""
    rows = session.execute(sa.select(_GROUPS.c.id, _GROUPS.c.project_id).where(_GROUPS.c.id.in_(group_ids))).all()
    usable = {group_id for group_id, owner in rows if privileged or owner == project_id}
    missing = [group_id for group_id in group_ids if group_id not in usable]
    if missing:
        raise group_not_found(", ".join(missing))


def bind_port(session: Session, port_id: str, group_ids: list[str]) -> None:
    session.execute(_BINDINGS.delete().where(_BINDINGS.c.port_id == port_id))
    if group_ids:
        session.execute(_BINDINGS.insert(), [{"port_id": port_id, "security_group_id": g} for g in group_ids])


def _port_security_required() -> Exception:
    return errors.fault(400, "PortSecurityAndIPRequiredForSecurityGroups",
                        "Port security must be enabled and port must have an IP address in order to use security "
                        "groups.")


def _trusted(port: dict[str, Any]) -> bool:
    """Ports the network itself owns (DHCP, routers) have no security groups."""
    return str(port.get("device_owner") or "").startswith("network:")


def for_new_port(session: Session, port: dict[str, Any], wanted: list[str] | None, privileged: bool) -> list[str]:
    if _trusted(port):
        return []
    if wanted is None:
        return [ensure_default(session, port["project_id"])] if port["port_security_enabled"] else []
    if wanted and not port["port_security_enabled"]:
        raise _port_security_required()
    check_usable(session, wanted, port["project_id"], privileged)
    return wanted


def for_port_update(session: Session, port: dict[str, Any], values: dict[str, Any], wanted: list[str] | None,
                    privileged: bool) -> list[str] | None:
    """The port's new groups (None: unchanged), checked against its port security as it will be."""
    port_security = values.get("port_security_enabled", port["port_security_enabled"])
    if wanted is None:
        if not port_security and port["security_groups"]:
            raise errors.fault(409, "PortSecurityPortHasSecurityGroup",
                               "Port has security group associated. Cannot disable port security or ip address "
                               "until security group is removed")
        return None
    if wanted and not port_security:
        raise _port_security_required()
    check_usable(session, wanted, port["project_id"], privileged)
    return wanted


def _hosts_of_groups_statement() -> Any:
    from kilonova.network.models import Port

    referencing = sa.select(_RULES.c.security_group_id).where(
        _RULES.c.remote_group_id.in_(sa.bindparam("members", expanding=True)))
    in_groups = sa.select(_BINDINGS.c.port_id).where(sa.or_(
        _BINDINGS.c.security_group_id.in_(sa.bindparam("ids", expanding=True)),
        _BINDINGS.c.security_group_id.in_(referencing)))
    return prepared(sa.select(Port.binding_host_id).distinct()
                    .where(Port.id.in_(in_groups), Port.binding_host_id != ""))


# Built once: the security-group notifier asks this after every batch of port changes.
_HOSTS_OF_GROUPS = _hosts_of_groups_statement()


def hosts_of_groups(session: Session, rules_of: Iterable[str], members_of: Iterable[str]) -> set[str]:
    """The hosts whose port rules change when the rules of groups ``rules_of`` change (those binding a port in
    one of them) or the members of groups ``members_of`` (those binding a port in one of them, or in a group
    with a rule naming one of them as its remote group: its rules hold the members' addresses)."""
    members = list(members_of)
    ids = list(rules_of) + members
    if not ids:
        return set()
    return set(session.scalars(_HOSTS_OF_GROUPS, {"ids": ids, "members": members}))
