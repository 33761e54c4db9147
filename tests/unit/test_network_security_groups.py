"""Security groups and rules in the network service's Neutron v2.0 API, driven in-process."""
import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.network.service import NetworkService

ADMIN = {"X-Auth-Token": "admin"}
ALICE = {"X-Auth-Token": "alice"}
BOB = {"X-Auth-Token": "bob"}
CAROL = {"X-Auth-Token": "carol"}


@pytest.fixture(scope="module")
async def api(tmp_path_factory):
    validator = FakeValidator({"admin": ("admin", "p-admin", ["admin", "member", "reader"]),
                               "alice": ("alice", "p-alice", ["member", "reader"]),
                               "bob": ("bob", "p-bob", ["member", "reader"]),
                               "carol": ("carol", "p-carol", ["member", "reader"])})
    service = NetworkService(service_env(tmp_path_factory.mktemp("network")), validator=validator)
    service.prepare()
    await service.ensure_default_network("p-admin")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://net.test") as c:
        yield c
    service.db.close()


async def post(api, collection, resource, body, headers=ALICE, status=201):
    response = await api.post(f"/v2.0/{collection}", json={resource: body}, headers=headers)
    assert response.status_code == status, response.text
    return response.json()[resource] if status == 201 else response.json()["NeutronError"]


async def groups(api, headers=ALICE, **params):
    response = await api.get("/v2.0/security-groups", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["security_groups"]


async def rule(api, group_id, headers=ALICE, status=201, **body):
    return await post(api, "security-group-rules", "security_group_rule",
                      {"security_group_id": group_id, "direction": "ingress", **body}, headers, status)


async def test_default_group_on_first_list_with_upstreams_rules(api):
    listed = await groups(api)
    assert [g["name"] for g in listed] == ["default"]
    default = listed[0]
    assert default["description"] == "Default security group" and default["stateful"] is True
    assert default["project_id"] == "p-alice" and default["tags"] == [] and default["revision_number"] == 0
    rules = sorted((r["direction"], r["ethertype"], r["remote_group_id"], r["remote_ip_prefix"], r["protocol"])
                   for r in default["security_group_rules"])
    assert rules == [("egress", "IPv4", None, None, None), ("egress", "IPv6", None, None, None),
                     ("ingress", "IPv4", default["id"], None, None), ("ingress", "IPv6", default["id"], None, None)]
    assert all(r["belongs_to_default_sg"] for r in default["security_group_rules"])
    assert [g["id"] for g in await groups(api)] == [default["id"]]  # made once
    # Another project has its own, and does not see alice's.
    bobs = await groups(api, BOB)
    assert [g["name"] for g in bobs] == ["default"] and bobs[0]["id"] != default["id"]
    shown = await api.get(f"/v2.0/security-groups/{default['id']}", headers=BOB)
    assert shown.status_code == 404
    assert shown.json()["NeutronError"]["type"] == "SecurityGroupNotFound"


async def test_group_crud_fields_and_tags(api):
    created = await post(api, "security-groups", "security_group", {"name": "web", "description": "w"})
    assert [r["direction"] for r in created["security_group_rules"]] == ["egress", "egress"]
    assert created["security_group_rules"][0]["belongs_to_default_sg"] is False
    only = (await api.get(f"/v2.0/security-groups/{created['id']}", params={"fields": ["id", "name"]},
                          headers=ALICE)).json()["security_group"]
    assert only == {"id": created["id"], "name": "web"}
    updated = (await api.put(f"/v2.0/security-groups/{created['id']}", headers=ALICE,
                             json={"security_group": {"description": "web servers", "stateful": False}}))
    assert updated.status_code == 200
    assert updated.json()["security_group"]["stateful"] is False
    assert updated.json()["security_group"]["revision_number"] == 1
    assert (await api.put(f"/v2.0/security-groups/{created['id']}/tags/blue", headers=ALICE)).status_code == 201
    assert [g["name"] for g in await groups(api, tags="blue")] == ["web"]
    assert [g["name"] for g in await groups(api, name="web")] == ["web"]
    sorted_names = [g["name"] for g in await groups(api, sort_key="name", sort_dir="desc")]
    assert sorted_names == ["web", "default"]
    page = (await api.get("/v2.0/security-groups", params={"limit": 1}, headers=ALICE)).json()
    assert len(page["security_groups"]) == 1 and page["security_groups_links"][0]["rel"] == "next"
    assert (await api.delete(f"/v2.0/security-groups/{created['id']}", headers=BOB)).status_code == 404
    assert (await api.delete(f"/v2.0/security-groups/{created['id']}", headers=ALICE)).status_code == 204
    assert (await api.get(f"/v2.0/security-groups/{created['id']}", headers=ALICE)).status_code == 404


async def test_default_group_is_protected(api):
    default = (await groups(api))[0]
    again = await post(api, "security-groups", "security_group", {"name": "Default"}, status=409)
    assert again == {"type": "SecurityGroupDefaultAlreadyExists", "message": "Default security group already exists.",
                     "detail": ""}
    rename = await api.put(f"/v2.0/security-groups/{default['id']}", json={"security_group": {"name": "x"}},
                           headers=ALICE)
    assert rename.status_code == 409 and rename.json()["NeutronError"]["type"] == "SecurityGroupCannotUpdateDefault"
    removed = await api.delete(f"/v2.0/security-groups/{default['id']}", headers=ALICE)
    assert removed.status_code == 409
    assert removed.json()["NeutronError"]["type"] == "SecurityGroupCannotRemoveDefault"


async def test_rules_validated_as_neutron(api):
    group = await post(api, "security-groups", "security_group", {"name": "rules"})
    gid = group["id"]
    ssh = await rule(api, gid, protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    assert (ssh["protocol"], ssh["ethertype"], ssh["port_range_min"], ssh["port_range_max"]) == ("tcp", "IPv4", 22, 22)
    duplicate = await rule(api, gid, status=409, protocol="6", port_range_min=22, port_range_max=22)
    assert duplicate["type"] == "SecurityGroupRuleExists"
    assert duplicate["message"] == f"Security group rule already exists. Rule id is {ssh['id']}."
    icmp = await rule(api, gid, protocol="ICMP", port_range_min=8, port_range_max=0)
    assert icmp["protocol"] == "icmp"
    v6 = await rule(api, gid, protocol="icmp", ethertype="ipv6")
    assert (v6["protocol"], v6["ethertype"]) == ("ipv6-icmp", "IPv6")
    prefix = await rule(api, gid, protocol="udp", port_range_min=53, port_range_max=53, remote_ip_prefix="10.1.2.3/8")
    assert (prefix["remote_ip_prefix"], prefix["normalized_cidr"]) == ("10.1.2.3/8", "10.0.0.0/8")
    host = await rule(api, gid, protocol=132, remote_ip_prefix="10.9.9.9")
    assert (host["protocol"], host["remote_ip_prefix"]) == ("132", "10.9.9.9/32")
    anything = await rule(api, gid, direction="egress", protocol="any", remote_group_id=gid)
    assert anything["protocol"] is None and anything["remote_group_id"] == gid
    for body, kind in (
            ({"protocol": "tcp", "port_range_min": 30, "port_range_max": 20}, "SecurityGroupInvalidPortRange"),
            ({"protocol": "tcp", "port_range_min": 0, "port_range_max": 20}, "SecurityGroupInvalidPortValue"),
            ({"protocol": "tcp", "port_range_min": 70000, "port_range_max": 70000}, "SecurityGroupInvalidPortValue"),
            ({"protocol": "icmp", "port_range_min": 300}, "SecurityGroupInvalidIcmpValue"),
            ({"protocol": "icmp", "port_range_max": 3}, "SecurityGroupMissingIcmpType"),
            ({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}, "SecurityGroupInvalidProtocolForPort"),
            ({"port_range_min": 1, "port_range_max": 2}, "SecurityGroupProtocolRequiredWithPorts"),
            ({"protocol": "bogus"}, "SecurityGroupRuleInvalidProtocol"),
            ({"protocol": 256}, "SecurityGroupRuleInvalidProtocol"),
            ({"remote_ip_prefix": "::/0"}, "SecurityGroupRuleParameterConflict"),
            ({"remote_ip_prefix": "10.0.0.0/33"}, "InvalidCIDR"),
            ({"protocol": "ipv6-icmp"}, "SecurityGroupEthertypeConflictWithProtocol"),
            ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": gid}, "SecurityGroupRemoteGroupAndRemoteIpPrefix"),
            ({"direction": "sideways"}, "HTTPBadRequest"),
            ({"ethertype": "IPv5"}, "HTTPBadRequest")):
        error = await rule(api, gid, status=400, **body)
        assert error["type"] == kind, (body, error)
    missing = await rule(api, gid, status=404, remote_group_id="no-such-group")
    assert missing["type"] == "SecurityGroupNotFound"
    elsewhere = await rule(api, gid, headers=BOB, status=404)
    assert elsewhere["message"] == f"Security group {gid} does not exist"
    shown = (await api.get(f"/v2.0/security-groups/{gid}", headers=ALICE)).json()["security_group"]
    assert len(shown["security_group_rules"]) == 2 + 6 and shown["revision_number"] == 6
    listed = (await api.get("/v2.0/security-group-rules", params={"security_group_id": gid, "protocol": "tcp"},
                            headers=ALICE)).json()["security_group_rules"]
    assert [r["id"] for r in listed] == [ssh["id"]]
    assert (await api.get(f"/v2.0/security-group-rules/{ssh['id']}", headers=BOB)).status_code == 404
    assert (await api.delete(f"/v2.0/security-group-rules/{ssh['id']}", headers=ALICE)).status_code == 204
    gone = await api.get(f"/v2.0/security-group-rules/{ssh['id']}", headers=ALICE)
    assert gone.status_code == 404 and gone.json()["NeutronError"]["type"] == "SecurityGroupRuleNotFound"


async def test_bulk_rules(api):
    group = await post(api, "security-groups", "security_group", {"name": "bulk"})
    body = {"security_group_rules": [
        {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 80,
         "port_range_max": 80},
        {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 443,
         "port_range_max": 443}]}
    created = await api.post("/v2.0/security-group-rules", json=body, headers=ALICE)
    assert created.status_code == 201 and len(created.json()["security_group_rules"]) == 2
    body["security_group_rules"][1]["port_range_min"] = body["security_group_rules"][1]["port_range_max"] = 8080
    body["security_group_rules"].append(dict(body["security_group_rules"][1]))
    twice = await api.post("/v2.0/security-group-rules", json=body, headers=ALICE)
    assert twice.status_code == 409 and twice.json()["NeutronError"]["type"] == "DuplicateSecurityGroupRuleInPost"


async def test_quotas(api):
    await groups(api, CAROL)  # the default group counts
    for index in range(9):
        await post(api, "security-groups", "security_group", {"name": f"g{index}"}, CAROL)
    over = await post(api, "security-groups", "security_group", {"name": "g10"}, CAROL, status=409)
    assert over == {"type": "OverQuota", "message": "Quota exceeded for resources: ['security_group'].",
                    "detail": ""}
    # 4 default rules + 2 egress rules in each of 9 groups = 22; 78 more fit in 100.
    target = (await groups(api, CAROL, name="g0"))[0]["id"]
    body = {"security_group_rules": [{"security_group_id": target, "direction": "ingress", "protocol": "tcp",
                                      "port_range_min": p, "port_range_max": p} for p in range(1, 79)]}
    assert (await api.post("/v2.0/security-group-rules", json=body, headers=CAROL)).status_code == 201
    over = await rule(api, target, CAROL, status=409, protocol="udp")
    assert over["message"] == "Quota exceeded for resources: ['security_group_rule']."
    details = (await api.get("/v2.0/quotas/p-carol/details", headers=CAROL)).json()["quota"]
    assert details["security_group"] == {"limit": 10, "used": 10, "reserved": 0}
    assert details["security_group_rule"]["used"] == 100


async def test_ports_take_real_groups(api):
    net = await post(api, "networks", "network", {"name": "sgnet"})
    await post(api, "subnets", "subnet", {"network_id": net["id"], "cidr": "192.168.50.0/24", "ip_version": 4})
    default = (await groups(api))[0]["id"]
    web = await post(api, "security-groups", "security_group", {"name": "ports-web"})
    port = await post(api, "ports", "port", {"network_id": net["id"]})
    assert port["security_groups"] == [default]
    chosen = await post(api, "ports", "port", {"network_id": net["id"], "security_groups": [web["id"]]})
    assert chosen["security_groups"] == [web["id"]]
    none = await post(api, "ports", "port", {"network_id": net["id"], "security_groups": []})
    assert none["security_groups"] == [] and none["port_security_enabled"] is True
    unknown = await post(api, "ports", "port", {"network_id": net["id"], "security_groups": ["nope"]}, status=404)
    assert unknown == {"type": "SecurityGroupNotFound", "message": "Security group nope does not exist", "detail": ""}
    bobs = (await groups(api, BOB))[0]["id"]
    assert (await post(api, "ports", "port", {"network_id": net["id"], "security_groups": [bobs]},
                       status=404))["type"] == "SecurityGroupNotFound"
    insecure = await post(api, "ports", "port", {"network_id": net["id"], "port_security_enabled": False})
    assert insecure["security_groups"] == []
    refused = await post(api, "ports", "port", {"network_id": net["id"], "port_security_enabled": False,
                                                "security_groups": [web["id"]]}, status=400)
    assert refused["type"] == "PortSecurityAndIPRequiredForSecurityGroups"
    disable = await api.put(f"/v2.0/ports/{port['id']}", json={"port": {"port_security_enabled": False}},
                            headers=ALICE)
    assert disable.status_code == 409
    assert disable.json()["NeutronError"]["type"] == "PortSecurityPortHasSecurityGroup"
    stateless = await api.put(f"/v2.0/security-groups/{web['id']}", json={"security_group": {"stateful": False}},
                              headers=ALICE)
    assert stateless.status_code == 409 and stateless.json()["NeutronError"]["type"] == "SecurityGroupInUse"
    in_use = await api.delete(f"/v2.0/security-groups/{web['id']}", headers=ALICE)
    assert in_use.status_code == 409
    assert in_use.json()["NeutronError"] == {"type": "SecurityGroupInUse", "detail": "",
                                             "message": f"Security Group {web['id']} in use."}
    moved = await api.put(f"/v2.0/ports/{chosen['id']}", json={"port": {"security_groups": [default, web["id"]]}},
                          headers=ALICE)
    assert sorted(moved.json()["port"]["security_groups"]) == sorted([default, web["id"]])
    listed = (await api.get("/v2.0/ports", params={"security_groups": web["id"]}, headers=ALICE)).json()["ports"]
    assert [p["id"] for p in listed] == [chosen["id"]]
    both_off = await api.put(f"/v2.0/ports/{chosen['id']}", headers=ALICE,
                             json={"port": {"port_security_enabled": False, "security_groups": []}})
    assert both_off.status_code == 200 and both_off.json()["port"]["security_groups"] == []
    assert (await api.delete(f"/v2.0/security-groups/{web['id']}", headers=ALICE)).status_code == 204
    off_net = await post(api, "networks", "network", {"name": "open", "port_security_enabled": False})
    open_port = await post(api, "ports", "port", {"network_id": off_net["id"]})
    assert open_port["port_security_enabled"] is False and open_port["security_groups"] == []
    assert (await api.delete(f"/v2.0/ports/{port['id']}", headers=ALICE)).status_code == 204


@pytest.mark.parametrize("value", [None, True, 1.5, -1, 2 ** 70, "", "x" * 300, [], ["a"], {}, {"a": 1}, "::/0"])
async def test_any_value_of_any_attribute_is_a_4xx_or_accepted(api, value):
    group = (await groups(api))[0]["id"]
    for collection, resource, base, names in (
            ("security-groups", "security_group", {}, ("name", "description", "stateful", "tags", "project_id")),
            ("security-group-rules", "security_group_rule", {"security_group_id": group, "direction": "egress"},
             ("security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
              "remote_ip_prefix", "remote_group_id", "remote_address_group_id", "description"))):
        bodies = [{resource: {**base, name: value}} for name in names]
        bodies += [{resource: value}, {f"{resource}s": [value]}, {f"{resource}s": value}]
        for body in bodies:
            response = await api.post(f"/v2.0/{collection}", json=body, headers=ALICE)
            assert response.status_code < 500, (body, response.text)
            if response.status_code == 201:  # e.g. an empty group: it goes again, not to hold alice's quota
                answer = response.json()
                for item in answer.get(f"{resource}s") or [answer[resource]]:
                    assert (await api.delete(f"/v2.0/{collection}/{item['id']}", headers=ALICE)).status_code == 204
    updated = await api.put(f"/v2.0/security-groups/{group}", json={"security_group": {"description": value}},
                            headers=ALICE)
    assert updated.status_code < 500, updated.text


async def test_port_groups_listed_by_device_answer_as_the_full_listing(api):
    """The compute API's server views ask ports for just device_id and security_groups (a lighter read):
    the answer is the full listing's, projected, with the same visibility."""
    net = await post(api, "networks", "network", {"name": "devnet"})
    await post(api, "subnets", "subnet", {"network_id": net["id"], "cidr": "192.168.51.0/24", "ip_version": 4})
    web = await post(api, "security-groups", "security_group", {"name": "dev-web"})
    devices = ["d0000000-0000-4000-8000-000000000001", "d0000000-0000-4000-8000-000000000002"]
    await post(api, "ports", "port", {"network_id": net["id"], "device_id": devices[0]})
    await post(api, "ports", "port", {"network_id": net["id"], "device_id": devices[0],
                                      "security_groups": [web["id"]]})
    await post(api, "ports", "port", {"network_id": net["id"], "device_id": devices[1], "security_groups": []})
    await post(api, "ports", "port", {"network_id": net["id"], "device_id": "someone-else"})
    for headers in (ALICE, BOB, ADMIN):
        full = (await api.get("/v2.0/ports", params={"device_id": devices}, headers=headers)).json()["ports"]
        light = (await api.get("/v2.0/ports", params={"device_id": devices, "fields": ["device_id", "security_groups"]},
                               headers=headers)).json()["ports"]
        assert light == [{"device_id": p["device_id"], "security_groups": p["security_groups"]} for p in full]
        assert len(full) == (0 if headers is BOB else 3)
