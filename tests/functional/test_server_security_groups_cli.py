"""Servers in security groups through the real `openstack` and `nova` CLIs, and the compute API's
security group proxies (until 2.35) over HTTP."""
from __future__ import annotations

import uuid

import pytest

DEMO = "kilonova-demo"


def _cli(cloud, *args, **kwargs):
    return cloud.openstack(*args, cloud=DEMO, **kwargs)


@pytest.fixture(scope="module")
def web(cloud):
    name = f"web-{uuid.uuid4().hex[:6]}"
    group = _cli(cloud, "security", "group", "create", name, fmt_json=True)
    yield group
    _cli(cloud, "security", "group", "delete", name, check=False)


@pytest.fixture(scope="module")
def vm(cloud, web):
    """A demo server booted the way the seeds boot one: SSH opened in `default`, then `--security-group`."""
    ssh = _cli(cloud, "security", "group", "rule", "create", "--proto", "tcp", "--dst-port", "22", "default",
               fmt_json=True)
    name = f"vm-sg-{uuid.uuid4().hex[:6]}"
    created = _cli(cloud, "server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                   "private", "--security-group", "default", "--security-group", web["name"], name, fmt_json=True)
    # The CLI sends each group's id; the server shows their names.
    assert sorted(g["name"] for g in created["security_groups"]) == sorted(["default", web["name"]])
    cloud.wait_status(name, "ACTIVE", cloud=DEMO)
    yield {**created, "name": name}
    _cli(cloud, "server", "delete", "--wait", created["id"], check=False)
    _cli(cloud, "security", "group", "rule", "delete", ssh["id"], check=False)


def _default_id(cloud) -> str:
    conn = cloud.sdk(DEMO)
    return next(conn.network.security_groups(name="default", project_id=conn.current_project_id)).id


def _port_groups(cloud, server_id: str) -> list[str]:
    ports = _cli(cloud, "port", "list", "--device-id", server_id, fmt_json=True)
    assert len(ports) == 1
    return sorted(_cli(cloud, "port", "show", ports[0]["ID"], fmt_json=True)["security_group_ids"])


def _shown_groups(cloud, server_id: str) -> list[str]:
    return sorted(g["name"] for g in cloud.server(server_id, cloud=DEMO).get("security_groups", []))


def test_server_boots_in_its_groups(cloud, vm, web):
    assert _shown_groups(cloud, vm["id"]) == sorted(["default", web["name"]])
    assert _port_groups(cloud, vm["id"]) == sorted([_default_id(cloud), web["id"]])
    shown = _cli(cloud, "server", "show", vm["name"], fmt_json=True)
    assert web["name"] in str(shown["security_groups"])
    in_use = _cli(cloud, "security", "group", "delete", web["name"], check=False)
    assert in_use.returncode != 0 and f"Security Group {web['id']} in use." in in_use.stderr


def test_server_remove_and_add_security_group(cloud, vm, web):
    _cli(cloud, "server", "remove", "security", "group", vm["name"], web["name"])
    assert _port_groups(cloud, vm["id"]) == [_default_id(cloud)]
    assert _shown_groups(cloud, vm["id"]) == ["default"]
    _cli(cloud, "server", "add", "security", "group", vm["name"], web["name"])
    assert _port_groups(cloud, vm["id"]) == sorted([_default_id(cloud), web["id"]])
    assert _shown_groups(cloud, vm["id"]) == sorted(["default", web["name"]])
    listed = cloud.nova("list-secgroup", vm["id"], cloud=DEMO)
    assert web["name"] in listed.stdout and "default" in listed.stdout


def test_a_port_changed_in_the_network_service_shows_on_the_server(cloud, vm, web):
    port = _cli(cloud, "port", "list", "--device-id", vm["id"], fmt_json=True)[0]["ID"]
    # The network service tells the compute service (network-changed); the server's host re-reads its ports.
    _cli(cloud, "port", "set", "--no-security-group", "--security-group", "default", port)
    cloud.wait_server(vm["id"], lambda s: web["name"] not in str(s.get("security_groups")), "to leave its group",
                      cloud=DEMO)
    assert _shown_groups(cloud, vm["id"]) == ["default"]
    _cli(cloud, "port", "set", "--security-group", web["name"], port)
    cloud.wait_server(vm["id"], lambda s: web["name"] in str(s.get("security_groups")), "to join the group again",
                      cloud=DEMO)
    assert _shown_groups(cloud, vm["id"]) == sorted(["default", web["name"]])


def test_a_renamed_group_shows_its_new_name_at_once(cloud, vm, web):
    """The server's groups are read from the network service when it is shown, as upstream reads them."""
    conn = cloud.sdk(DEMO)
    renamed = f"{web['name']}-renamed"
    conn.network.update_security_group(web["id"], name=renamed)
    try:
        assert _shown_groups(cloud, vm["id"]) == sorted(["default", renamed])
        with cloud.http("compute", DEMO) as compute:
            listed = compute.get("/servers/detail").json()["servers"]
        assert sorted(g["name"] for g in next(s for s in listed if s["id"] == vm["id"])["security_groups"]) == \
            sorted(["default", renamed])
    finally:
        conn.network.update_security_group(web["id"], name=web["name"])
    assert _shown_groups(cloud, vm["id"]) == sorted(["default", web["name"]])


def test_nova_cli_secgroup_errors_are_upstreams(cloud, vm, web):
    project = cloud.sdk(DEMO).current_project_id
    unknown = cloud.nova("add-secgroup", vm["id"], "no-such-group", cloud=DEMO, check=False)
    assert unknown.returncode != 0 and "(HTTP 404)" in unknown.stderr
    assert f"Security group no-such-group is not found for project {project}" in unknown.stderr
    other = _cli(cloud, "security", "group", "create", f"other-{uuid.uuid4().hex[:6]}", fmt_json=True)
    try:
        absent = cloud.nova("remove-secgroup", vm["id"], other["name"], cloud=DEMO, check=False)
        assert absent.returncode != 0 and "(HTTP 404)" in absent.stderr
        assert f"Security group {other['name']} not associated with the instance {vm['id']}" in absent.stderr
    finally:
        _cli(cloud, "security", "group", "delete", other["id"])
    refused = cloud.nova("boot", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--security-groups",
                         "no-such-group", "vm-refused", cloud=DEMO, check=False)
    assert refused.returncode != 0 and "(HTTP 400)" in refused.stderr
    assert "Unable to find security_group with name or id 'no-such-group'" in refused.stderr
    # Another project's group is not one the demo project can name, by id or by name.
    admin = cloud.sdk()
    admins = admin.network.create_security_group(name=f"admins-{uuid.uuid4().hex[:6]}")
    try:
        for name_or_id in (admins.id, admins.name):
            other_project = cloud.nova("boot", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--security-groups",
                                       name_or_id, "vm-refused", cloud=DEMO, check=False)
            assert f"Unable to find security_group with name or id '{name_or_id}'" in other_project.stderr
            not_added = cloud.nova("add-secgroup", vm["id"], name_or_id, cloud=DEMO, check=False)
            assert "(HTTP 404)" in not_added.stderr
    finally:
        admin.network.delete_security_group(admins)


def test_server_os_security_groups(cloud, vm, web):
    with cloud.http("compute", DEMO) as compute:
        listed = compute.get(f"/servers/{vm['id']}/os-security-groups").json()["security_groups"]
        assert sorted(g["name"] for g in listed) == sorted(["default", web["name"]])
        default = next(g for g in listed if g["name"] == "default")
        # Nova's shape shows the ingress rules only: the two from the group itself and the SSH rule.
        from_default = {"name": "default", "tenant_id": default["tenant_id"]}
        rules = sorted(str((r["ip_protocol"], r["from_port"], r["to_port"], r["group"], r["ip_range"]))
                       for r in default["rules"])
        assert rules == sorted([str(("tcp", 22, 22, {}, {"cidr": "0.0.0.0/0"})),
                                str((None, None, None, from_default, {})), str((None, None, None, from_default, {}))])
        assert compute.get("/servers/no-such-server/os-security-groups").status_code == 404


PROXY = {"OpenStack-API-Version": "compute 2.35"}


def test_os_security_groups_proxy_until_2_35(cloud):
    with cloud.http("compute", DEMO) as compute:
        gone = compute.get("/os-security-groups", headers={"OpenStack-API-Version": "compute 2.36"})
        assert gone.status_code == 404
        names = [g["name"] for g in compute.get("/os-security-groups", headers=PROXY).json()["security_groups"]]
        assert "default" in names
        created = compute.post("/os-security-groups", headers=PROXY,
                               json={"security_group": {"name": "proxied", "description": "via nova"}})
        assert created.status_code == 200, created.text
        group = created.json()["security_group"]
        assert (group["name"], group["description"], group["rules"]) == ("proxied", "via nova", [])
        try:
            rule = compute.post("/os-security-group-rules", headers=PROXY, json={"security_group_rule": {
                "parent_group_id": group["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": 22,
                "cidr": "10.0.0.0/8"}})
            assert rule.status_code == 200, rule.text
            assert rule.json()["security_group_rule"] == {
                "id": rule.json()["security_group_rule"]["id"], "parent_group_id": group["id"],
                "ip_protocol": "tcp", "from_port": 22, "to_port": 22, "group": {},
                "ip_range": {"cidr": "10.0.0.0/8"}}
            again = compute.post("/os-security-group-rules", headers=PROXY, json={"security_group_rule": {
                "parent_group_id": group["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": 22,
                "cidr": "10.0.0.0/8"}})
            assert again.status_code == 400
            assert again.json()["badRequest"]["message"] == f"This rule already exists in group {group['id']}"
            reversed_range = compute.post("/os-security-group-rules", headers=PROXY, json={"security_group_rule": {
                "parent_group_id": group["id"], "ip_protocol": "udp", "from_port": 30, "to_port": 20}})
            assert reversed_range.status_code == 400
            assert reversed_range.json()["badRequest"]["message"] == \
                "Invalid port range 30:20. Former value cannot be greater than the later"
            from_group = compute.post("/os-security-group-rules", headers=PROXY, json={"security_group_rule": {
                "parent_group_id": group["id"], "ip_protocol": "icmp", "group_id": group["id"]}})
            assert from_group.status_code == 200, from_group.text
            shown_rule = from_group.json()["security_group_rule"]
            assert (shown_rule["from_port"], shown_rule["to_port"], shown_rule["group"]["name"]) == (-1, -1, "proxied")
            shown = compute.get(f"/os-security-groups/{group['id']}", headers=PROXY).json()["security_group"]
            assert len(shown["rules"]) == 2
            renamed = compute.put(f"/os-security-groups/{group['id']}", headers=PROXY,
                                  json={"security_group": {"name": "proxied2", "description": "d"}})
            assert renamed.status_code == 200 and renamed.json()["security_group"]["name"] == "proxied2"
            assert compute.delete(f"/os-security-group-rules/{shown_rule['id']}", headers=PROXY).status_code == 202
            assert compute.get("/os-security-groups/not-a-uuid", headers=PROXY).json()["badRequest"]["message"] \
                == "Security group id should be uuid"
            default = next(g for g in compute.get("/os-security-groups", headers=PROXY).json()["security_groups"]
                           if g["name"] == "default")
            kept = compute.delete(f"/os-security-groups/{default['id']}", headers=PROXY)
            assert kept.status_code == 400
            # Neutron's refusal, whichever it finds first: the group is in use (a port of a server), or the default.
            assert kept.json()["badRequest"]["message"] in (
                "Insufficient rights for removing default security group.", f"Security Group {default['id']} in use.")
        finally:
            assert compute.delete(f"/os-security-groups/{group['id']}", headers=PROXY).status_code == 202
        assert compute.get(f"/os-security-groups/{group['id']}", headers=PROXY).status_code == 404


def test_bad_input_to_the_proxies_and_actions_is_a_400(cloud, vm):
    with cloud.http("compute", DEMO) as compute:
        default = next(g for g in compute.get("/os-security-groups", headers=PROXY).json()["security_groups"]
                       if g["name"] == "default")["id"]
        for body in (None, [], {"security_group": "x"}, {"security_group": {"name": 5, "description": "d"}},
                     {"security_group": {"name": "no-description"}},
                     {"security_group": {"name": "x" * 300, "description": ""}}):
            response = compute.post("/os-security-groups", headers=PROXY, json=body)
            assert response.status_code == 400, (body, response.text)
        for rule in ({"parent_group_id": 5}, {"ip_protocol": 6, "from_port": 1, "to_port": 2},
                     {"ip_protocol": "tcp", "from_port": [], "to_port": 2},
                     {"ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": 5},
                     {"ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "10.0.0.0/0"},
                     {"ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "300.0.0.0/8"},
                     {"ip_protocol": "tcp", "group_id": "not-a-uuid"},
                     {"ip_protocol": "icmp", "from_port": 300, "to_port": 0},
                     {"ip_protocol": "tcp", "from_port": 0, "to_port": 80}, {}):
            response = compute.post("/os-security-group-rules", headers=PROXY,
                                    json={"security_group_rule": {"parent_group_id": default, **rule}})
            assert response.status_code == 400, (rule, response.text)
        for body in ({"addSecurityGroup": None}, {"addSecurityGroup": {}}, {"addSecurityGroup": {"name": ""}},
                     {"addSecurityGroup": {"name": 5}}, {"removeSecurityGroup": []},
                     {"removeSecurityGroup": {"name": " "}}):
            response = compute.post(f"/servers/{vm['id']}/action", json=body)
            assert response.status_code == 400, (body, response.text)
