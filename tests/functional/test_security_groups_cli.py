"""Security groups and their rules through the real `openstack` CLI and openstacksdk (the network API).

The demo project is used where a group is named `default`: an admin sees every project's `default`
group, and the CLI then refuses the name as ambiguous, as it does against upstream Neutron."""
from __future__ import annotations

import uuid

import openstack.exceptions
import pytest

DEMO = "kilonova-demo"


def _cli(cloud, *args, **kwargs):
    return cloud.openstack(*args, cloud=DEMO, **kwargs)


def _fails(cloud, *args) -> str:
    result = _cli(cloud, *args, check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_default_group_and_the_seeds_rules(cloud):
    groups = _cli(cloud, "security", "group", "list", fmt_json=True)
    assert "default" in [g["Name"] for g in groups]
    ssh = _cli(cloud, "security", "group", "rule", "create", "--proto", "tcp", "--dst-port", "22", "default",
               fmt_json=True)
    assert (ssh["protocol"], ssh["port_range_min"], ssh["port_range_max"], ssh["direction"], ssh["ether_type"]) == \
        ("tcp", 22, 22, "ingress", "IPv4")
    assert ssh["remote_ip_prefix"] == "0.0.0.0/0"
    ping = _cli(cloud, "security", "group", "rule", "create", "--proto", "icmp", "default", fmt_json=True)
    assert ping["protocol"] == "icmp" and ping["port_range_min"] is None
    try:
        again = _fails(cloud, "security", "group", "rule", "create", "--proto", "tcp", "--dst-port", "22", "default")
        assert "409" in again and f"Security group rule already exists. Rule id is {ssh['id']}." in again
        rules = _cli(cloud, "security", "group", "rule", "list", "default", fmt_json=True)
        assert {ssh["id"], ping["id"]} <= {r["ID"] for r in rules}
        assert len(rules) == 6  # the four default rules and these two
        shown = _cli(cloud, "security", "group", "show", "default", fmt_json=True)
        assert shown["description"] == "Default security group"
        assert ssh["id"] in str(shown["rules"])
        refused = _fails(cloud, "security", "group", "delete", "default")
        assert "Insufficient rights for removing default security group." in refused
    finally:
        _cli(cloud, "security", "group", "rule", "delete", ssh["id"], ping["id"])
    assert len(_cli(cloud, "security", "group", "rule", "list", "default", fmt_json=True)) == 4


def test_group_create_set_rules_and_delete(cloud):
    name = f"web-{uuid.uuid4().hex[:6]}"
    created = _cli(cloud, "security", "group", "create", "--description", "web servers", name, fmt_json=True)
    assert created["name"] == name and created["stateful"] is True
    try:
        _cli(cloud, "security", "group", "set", "--description", "front end", "--stateless", name)
        shown = _cli(cloud, "security", "group", "show", name, fmt_json=True)
        assert shown["description"] == "front end" and shown["stateful"] is False
        assert shown["revision_number"] == 1
        from_default = _cli(cloud, "security", "group", "rule", "create", "--proto", "tcp", "--dst-port", "80:81",
                            "--remote-group", "default", name, fmt_json=True)
        assert from_default["remote_group_id"] and from_default["remote_ip_prefix"] is None
        assert (from_default["port_range_min"], from_default["port_range_max"]) == (80, 81)
        v6 = _cli(cloud, "security", "group", "rule", "create", "--ethertype", "IPv6", "--proto", "ipv6-icmp",
                  "--icmp-type", "128", "--remote-ip", "2001:db8::1/64", name, fmt_json=True)
        assert (v6["port_range_min"], v6["remote_ip_prefix"], v6["normalized_cidr"]) == \
            (128, "2001:db8::1/64", "2001:db8::/64")
        bad = _fails(cloud, "security", "group", "rule", "create", "--proto", "gre", "--dst-port", "5", name)
        assert "400" in bad and "Invalid protocol 47 for port range, only supported for TCP, UDP" in bad
        wrong_family = _fails(cloud, "security", "group", "rule", "create", "--remote-ip", "10.0.0.0/8",
                              "--ethertype", "IPv6", name)
        assert "Conflicting value ethertype IPv6 for CIDR 10.0.0.0/8" in wrong_family
    finally:
        _cli(cloud, "security", "group", "delete", name)
    assert name not in [g["Name"] for g in _cli(cloud, "security", "group", "list", fmt_json=True)]


def test_group_in_use_by_a_port_cannot_be_deleted(cloud):
    name = f"inuse-{uuid.uuid4().hex[:6]}"
    group = _cli(cloud, "security", "group", "create", name, fmt_json=True)
    port = _cli(cloud, "port", "create", "--network", "private", "--security-group", name, f"{name}-port",
                fmt_json=True)
    try:
        assert port["security_group_ids"] == [group["id"]]
        refused = _fails(cloud, "security", "group", "delete", name)
        assert f"Security Group {group['id']} in use." in refused
        _cli(cloud, "port", "set", "--no-security-group", "--disable-port-security", f"{name}-port")
        shown = _cli(cloud, "port", "show", f"{name}-port", fmt_json=True)
        assert shown["security_group_ids"] == [] and shown["port_security_enabled"] is False
    finally:
        _cli(cloud, "port", "delete", f"{name}-port")
    _cli(cloud, "security", "group", "delete", name)


def test_openstacksdk_groups_rules_and_quota(cloud):
    conn = cloud.sdk(DEMO)
    project = conn.current_project_id
    default = next(conn.network.security_groups(name="default", project_id=project))
    made = []
    try:
        existing = len(list(conn.network.security_groups(project_id=project)))
        for index in range(10 - existing):
            made.append(conn.network.create_security_group(name=f"sdk-{index}-{uuid.uuid4().hex[:4]}"))
        with pytest.raises(openstack.exceptions.ConflictException) as over:
            conn.network.create_security_group(name="one-too-many")
        assert "Quota exceeded for resources: ['security_group']." in str(over.value)
        rule = conn.network.create_security_group_rule(security_group_id=made[0].id, direction="ingress",
                                                       protocol="udp", port_range_min=53, port_range_max=53,
                                                       remote_group_id=default.id)
        assert rule.remote_group_id == default.id
        assert [r.id for r in conn.network.security_group_rules(security_group_id=made[0].id, protocol="udp")] \
            == [rule.id]
        with pytest.raises(openstack.exceptions.BadRequestException) as icmp:
            conn.network.create_security_group_rule(security_group_id=made[0].id, direction="ingress",
                                                    protocol="icmp", port_range_min=256)
        assert "Invalid value for ICMP type (port_range_min) 256. It must be 0 to 255." in str(icmp.value)
        with pytest.raises(openstack.exceptions.BadRequestException) as reversed_range:
            conn.network.create_security_group_rule(security_group_id=made[0].id, direction="ingress",
                                                    protocol="tcp", port_range_min=30, port_range_max=20)
        assert "For TCP/UDP protocols, port_range_min must be <= port_range_max" in str(reversed_range.value)
        quota = conn.network.get_quota(project, details=True)
        assert quota.security_groups["used"] == 10 and quota.security_groups["limit"] == 10
    finally:
        for group in made:
            conn.network.delete_security_group(group)
    # Another project does not see the demo project's groups, nor can it use them.
    admin = cloud.sdk()
    assert default.id not in [g.id for g in admin.network.security_groups(project_id=admin.current_project_id)]


def test_quota_set_by_an_admin_holds_groups_and_rules(cloud):
    conn = cloud.sdk(DEMO)
    project = conn.current_project_id
    list(conn.network.security_groups(project_id=project))  # the default group exists (and counts) from here
    used = conn.network.get_quota(project, details=True)
    groups_used, rules_used = used.security_groups["used"], used.security_group_rules["used"]
    cloud.openstack("quota", "set", "--secgroups", str(groups_used + 1), "--secgroup-rules", str(rules_used + 3),
                    project)
    made = None
    try:
        limits = conn.network.get_quota(project)
        assert (limits.security_groups, limits.security_group_rules) == (groups_used + 1, rules_used + 3)
        made = conn.network.create_security_group(name=f"quota-{uuid.uuid4().hex[:6]}")  # with its 2 egress rules
        over = _fails(cloud, "security", "group", "create", f"quota-{uuid.uuid4().hex[:6]}")
        assert "Quota exceeded for resources: ['security_group']." in over
        _cli(cloud, "security", "group", "rule", "create", "--proto", "udp", "--dst-port", "53", made.name)
        over = _fails(cloud, "security", "group", "rule", "create", "--proto", "udp", "--dst-port", "54", made.name)
        assert "Quota exceeded for resources: ['security_group_rule']." in over
    finally:
        if made is not None:
            conn.network.delete_security_group(made)
        cloud.openstack("quota", "delete", "--network", project)
    assert conn.network.get_quota(project).security_groups == 10
