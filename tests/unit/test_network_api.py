"""The network service's Neutron v2.0 API, driven in-process with a fake token validator."""
import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.network import bootstrap
from kilonova.network.service import NetworkService

ADMIN = {"X-Auth-Token": "admin"}
ALICE = {"X-Auth-Token": "alice"}
BOB = {"X-Auth-Token": "bob"}
READER = {"X-Auth-Token": "reader"}
SERVICE = {"X-Auth-Token": "nova"}


@pytest.fixture(scope="module")
async def svc(tmp_path_factory):
    validator = FakeValidator({"admin": ("admin", "p-admin", ["admin", "member", "reader"]),
                               "alice": ("alice", "p-alice", ["member", "reader"]),
                               "bob": ("bob", "p-bob", ["member", "reader"]),
                               "reader": ("rita", "p-alice", ["reader"]),
                               "nova": ("kilonova", "p-service", ["service", "admin"])})
    service = NetworkService(service_env(tmp_path_factory.mktemp("network")), validator=validator)
    service.prepare()
    await service.ensure_default_network("p-admin")
    yield service
    service.db.close()


@pytest.fixture(scope="module")
async def api(svc):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://net.test") as c:
        yield c


async def post(api, resource, headers=ALICE, status=201, **body):
    response = await api.post(f"/v2.0/{resource}s", json={resource: body}, headers=headers)
    assert response.status_code == status, response.text
    return response.json()[resource] if status == 201 else response.json()


async def network_with_subnet(api, headers=ALICE, cidr="192.168.10.0/24", **subnet):
    net = await post(api, "network", headers, name="n")
    sub = await post(api, "subnet", headers, network_id=net["id"], cidr=cidr, ip_version=4, **subnet)
    return net, sub


async def test_discovery(api):
    root = await api.get("/")
    assert root.status_code == 200
    assert root.json()["versions"][0]["id"] == "v2.0"
    assert (await api.get("/v2.0", headers=ALICE)).json()["resources"][0]["collection"] == "subnets"
    aliases = {e["alias"] for e in (await api.get("/v2.0/extensions", headers=ALICE)).json()["extensions"]}
    assert {"binding", "port-security", "external-net", "standard-attr-tag", "quotas"} <= aliases
    assert (await api.get("/v2.0/extensions/binding", headers=ALICE)).status_code == 200
    assert (await api.get("/v2.0/extensions/nope", headers=ALICE)).status_code == 404
    assert (await api.get("/v2.0/networks")).status_code == 401


async def test_neutron_error_body(api):
    response = await api.get("/v2.0/networks/missing", headers=ALICE)
    assert response.status_code == 404
    assert response.json() == {"NeutronError": {"type": "NetworkNotFound",
                                                "message": "Network missing could not be found.", "detail": ""}}
    bad = await api.post("/v2.0/networks", json={"network": {"colour": "blue"}}, headers=ALICE)
    assert bad.status_code == 400
    assert bad.json()["NeutronError"]["message"] == "Unrecognized attribute(s) 'colour'"


async def test_network_fields(api):
    net = await post(api, "network", name="fields", description="d")
    for key, value in (("status", "ACTIVE"), ("admin_state_up", True), ("shared", False), ("mtu", 1500),
                       ("router:external", False), ("subnets", []), ("project_id", "p-alice"),
                       ("tenant_id", "p-alice"), ("port_security_enabled", True), ("revision_number", 0),
                       ("availability_zones", ["nova"]), ("tags", []), ("description", "d")):
        assert net[key] == value, key
    assert net["created_at"].endswith("Z")
    assert "provider:network_type" not in net
    admin_view = (await api.get(f"/v2.0/networks/{net['id']}", headers=ADMIN)).json()["network"]
    assert "provider:network_type" in admin_view
    updated = (await api.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "renamed"}},
                             headers=ALICE)).json()["network"]
    assert updated["name"] == "renamed" and updated["revision_number"] == 1
    only = (await api.get(f"/v2.0/networks/{net['id']}", params={"fields": ["id", "name"]}, headers=ALICE)).json()
    assert only == {"network": {"id": net["id"], "name": "renamed"}}


async def test_network_policy(api):
    await post(api, "network", status=403, shared=True)
    await post(api, "network", status=403, **{"router:external": True})
    await post(api, "network", status=403, **{"provider:network_type": "vlan"})
    await post(api, "network", READER, status=403, name="r")
    await post(api, "network", status=400, project_id="p-bob")
    net = await post(api, "network", ADMIN, name="for-bob", project_id="p-bob")
    assert net["project_id"] == "p-bob"
    shared = await post(api, "network", ADMIN, name="shared", shared=True)
    alice_net = await post(api, "network", name="alice-only")
    assert (await api.get(f"/v2.0/networks/{alice_net['id']}", headers=BOB)).status_code == 404
    assert (await api.get(f"/v2.0/networks/{shared['id']}", headers=BOB)).status_code == 200
    bob_ids = {n["id"] for n in (await api.get("/v2.0/networks", headers=BOB)).json()["networks"]}
    assert shared["id"] in bob_ids and net["id"] in bob_ids and alice_net["id"] not in bob_ids
    assert bootstrap.NETWORK_ID in bob_ids
    response = await api.put(f"/v2.0/networks/{shared['id']}", json={"network": {"name": "x"}}, headers=BOB)
    assert response.status_code == 403
    assert response.json()["NeutronError"]["type"] == "PolicyNotAuthorized"
    assert (await api.delete(f"/v2.0/networks/{alice_net['id']}", headers=BOB)).status_code == 404
    await post(api, "port", BOB, network_id=shared["id"])
    unshare = await api.put(f"/v2.0/networks/{shared['id']}", json={"network": {"shared": False}}, headers=ADMIN)
    assert unshare.status_code == 409 and unshare.json()["NeutronError"]["type"] == "InvalidSharedSetting"
    assert (await api.delete(f"/v2.0/networks/{alice_net['id']}", headers=READER)).status_code == 403
    assert (await api.delete(f"/v2.0/networks/{alice_net['id']}", headers=ALICE)).status_code == 204


async def test_subnet_ipam(api):
    net, sub = await network_with_subnet(api, cidr="192.168.20.0/24", dns_nameservers=["8.8.8.8"],
                                         host_routes=[{"destination": "172.16.0.0/16", "nexthop": "192.168.20.254"}])
    assert sub["gateway_ip"] == "192.168.20.1"
    assert sub["allocation_pools"] == [{"start": "192.168.20.2", "end": "192.168.20.254"}]
    assert sub["enable_dhcp"] is True and sub["ip_version"] == 4 and sub["dns_nameservers"] == ["8.8.8.8"]
    assert sub["host_routes"][0]["nexthop"] == "192.168.20.254"
    shown = (await api.get(f"/v2.0/networks/{net['id']}", headers=ALICE)).json()["network"]
    assert shown["subnets"] == [sub["id"]]
    overlap = await post(api, "subnet", status=400, network_id=net["id"], cidr="192.168.20.128/25", ip_version=4)
    assert "overlaps with another subnet" in overlap["NeutronError"]["message"]
    await post(api, "subnet", status=400, network_id=net["id"], cidr="192.168.30.5/24", ip_version=4)
    await post(api, "subnet", status=400, network_id=net["id"], cidr="192.168.30.0/24", ip_version=6)
    await post(api, "subnet", status=400, network_id=net["id"], cidr="192.168.30.0/24", gateway_ip="10.0.0.1")
    no_gw = await post(api, "subnet", network_id=net["id"], cidr="192.168.40.0/24", gateway_ip=None, ip_version=4)
    assert no_gw["gateway_ip"] is None and no_gw["allocation_pools"][0]["start"] == "192.168.40.1"
    v6 = await post(api, "subnet", network_id=net["id"], cidr="fd00:1::/64", ip_version=6)
    assert v6["gateway_ip"] == "fd00:1::1"
    changed = await api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"name": "s2", "dns_nameservers": []}},
                            headers=ALICE)
    assert changed.json()["subnet"]["name"] == "s2"
    readonly = await api.put(f"/v2.0/subnets/{sub['id']}", json={"subnet": {"cidr": "10.9.0.0/24"}}, headers=ALICE)
    assert readonly.status_code == 400
    # subnets go only on one's own networks
    await post(api, "subnet", BOB, status=404, network_id=net["id"], cidr="192.168.50.0/24", ip_version=4)
    await post(api, "subnet", BOB, status=403, network_id=bootstrap.NETWORK_ID, cidr="192.168.50.0/24",
               ip_version=4)


async def test_port_allocation_and_exhaustion(api):
    net, sub = await network_with_subnet(api, cidr="192.168.60.0/24",
                                         allocation_pools=[{"start": "192.168.60.10", "end": "192.168.60.12"}])
    first = await post(api, "port", network_id=net["id"])
    assert first["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "192.168.60.10"}]
    assert first["mac_address"].startswith("fa:16:3e:")
    assert first["status"] == "DOWN" and len(first["security_groups"]) == 1  # the project's default group
    assert "binding:host_id" not in first and first["binding:vnic_type"] == "normal"
    chosen = await post(api, "port", network_id=net["id"], fixed_ips=[{"ip_address": "192.168.60.50"}])
    assert chosen["fixed_ips"][0]["ip_address"] == "192.168.60.50"  # outside the pools but in the cidr: fine
    taken = await post(api, "port", status=409, network_id=net["id"], fixed_ips=[{"ip_address": "192.168.60.50"}])
    assert taken["NeutronError"]["type"] == "IpAddressAlreadyAllocated"
    gateway = await post(api, "port", status=409, network_id=net["id"], fixed_ips=[{"ip_address": "192.168.60.1"}])
    assert gateway["NeutronError"]["type"] == "IpAddressAlreadyAllocated"
    outside = await post(api, "port", status=400, network_id=net["id"], fixed_ips=[{"ip_address": "10.99.0.1"}])
    assert outside["NeutronError"]["type"] == "InvalidIpForNetwork"
    await post(api, "port", network_id=net["id"], fixed_ips=[{"subnet_id": sub["id"]}])
    await post(api, "port", network_id=net["id"])
    exhausted = await post(api, "port", status=409, network_id=net["id"])
    assert exhausted["NeutronError"]["type"] == "IpAddressGenerationFailure"
    assert (await api.delete(f"/v2.0/ports/{first['id']}", headers=ALICE)).status_code == 204
    again = await post(api, "port", network_id=net["id"])
    assert again["fixed_ips"][0]["ip_address"] == "192.168.60.10"
    in_use = await api.delete(f"/v2.0/subnets/{sub['id']}", headers=ALICE)
    assert in_use.status_code == 409 and in_use.json()["NeutronError"]["type"] == "SubnetInUse"
    bare = await post(api, "network", name="no-subnets")
    assert (await post(api, "port", network_id=bare["id"]))["fixed_ips"] == []


async def test_port_update_fixed_ips_and_mac(api):
    net, sub = await network_with_subnet(api, cidr="192.168.70.0/24")
    port = await post(api, "port", network_id=net["id"], mac_address="fa:16:3e:aa:bb:cc")
    assert port["mac_address"] == "fa:16:3e:aa:bb:cc"
    dup = await post(api, "port", status=409, network_id=net["id"], mac_address="FA:16:3E:AA:BB:CC")
    assert dup["NeutronError"]["type"] == "MacAddressInUse"
    moved = await api.put(f"/v2.0/ports/{port['id']}", headers=ALICE,
                          json={"port": {"fixed_ips": [{"ip_address": "192.168.70.99"}], "name": "moved"}})
    body = moved.json()["port"]
    assert body["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "192.168.70.99"}]
    assert body["name"] == "moved" and body["revision_number"] == 1
    other = await post(api, "port", network_id=net["id"])
    assert other["fixed_ips"][0]["ip_address"] == "192.168.70.2"  # .2 was freed by the move


async def test_port_updates_show_what_is_stored(api):
    """Each update answers the port as a later GET shows it: changed fields, status, revision, MAC."""
    net, sub = await network_with_subnet(api, cidr="192.168.75.0/24")
    port = await post(api, "port", SERVICE, network_id=net["id"], project_id="p-alice")
    assert port["status"] == "DOWN" and port["revision_number"] == 0
    steps = [(SERVICE, {"binding:host_id": "compute2", "device_id": "server-9", "device_owner": "compute:nova",
                        "binding:profile": {"migrating_to": "compute3"}}),
             (ALICE, {"name": "renamed", "description": "d", "admin_state_up": False}),
             (ALICE, {"mac_address": "fa:16:3e:00:75:01"}),
             (SERVICE, {"binding:host_id": "", "binding:profile": {}})]
    for revision, (who, change) in enumerate(steps, start=1):
        response = await api.put(f"/v2.0/ports/{port['id']}", headers=who, json={"port": change})
        assert response.status_code == 200, response.text
        updated = response.json()["port"]
        shown = (await api.get(f"/v2.0/ports/{port['id']}", headers=who)).json()["port"]
        assert updated == shown
        assert updated["revision_number"] == revision
        assert updated["fixed_ips"] == port["fixed_ips"] and updated["fixed_ips"][0]["subnet_id"] == sub["id"]
        for key, value in change.items():
            assert updated[key] == value
        bound = (await api.get(f"/v2.0/ports/{port['id']}", headers=SERVICE)).json()["port"]["binding:host_id"]
        assert updated["status"] == ("ACTIVE" if bound else "DOWN")
    assert updated["name"] == "renamed" and updated["mac_address"] == "fa:16:3e:00:75:01"
    other = await post(api, "port", network_id=net["id"])
    taken = await api.put(f"/v2.0/ports/{other['id']}", headers=ALICE,
                          json={"port": {"mac_address": "FA:16:3E:00:75:01"}})
    assert taken.status_code == 409 and taken.json()["NeutronError"]["type"] == "MacAddressInUse"
    hidden = await api.put(f"/v2.0/ports/{port['id']}", headers=BOB, json={"port": {"name": "x"}})
    assert hidden.status_code == 404 and hidden.json()["NeutronError"]["type"] == "PortNotFound"
    read_only = await api.put(f"/v2.0/ports/{port['id']}", headers=READER, json={"port": {"name": "x"}})
    assert read_only.status_code == 403
    missing = await api.put("/v2.0/ports/00000000-0000-0000-0000-00000000dead", headers=ADMIN,
                            json={"port": {"name": "x"}})
    assert missing.status_code == 404
    unchanged = (await api.get(f"/v2.0/ports/{port['id']}", headers=SERVICE)).json()["port"]
    assert unchanged["name"] == "renamed" and unchanged["revision_number"] == len(steps)


async def test_binding_is_admin_only(api):
    net, _ = await network_with_subnet(api, cidr="192.168.80.0/24")
    denied = await post(api, "port", status=403, network_id=net["id"], **{"binding:host_id": "compute1"})
    assert denied["NeutronError"]["type"] == "PolicyNotAuthorized"
    port = await post(api, "port", network_id=net["id"])
    response = await api.put(f"/v2.0/ports/{port['id']}", json={"port": {"binding:host_id": "compute1"}},
                             headers=ALICE)
    assert response.status_code == 403
    # the compute agent (service user) creates a port for a server of alice's and binds it
    bound = await post(api, "port", SERVICE, network_id=net["id"], project_id="p-alice", device_id="server-1",
                       device_owner="compute:nova", **{"binding:host_id": "compute1"})
    assert bound["status"] == "ACTIVE" and bound["binding:vif_type"] == "ovs"
    assert bound["binding:vif_details"]["port_filter"] is True
    seen_by_alice = (await api.get(f"/v2.0/ports/{bound['id']}", headers=ALICE)).json()["port"]
    assert seen_by_alice["project_id"] == "p-alice" and "binding:host_id" not in seen_by_alice
    unbound = await api.put(f"/v2.0/ports/{bound['id']}", headers=SERVICE, json={"port": {
        "device_id": "", "device_owner": "", "binding:host_id": ""}})
    body = unbound.json()["port"]
    assert body["status"] == "DOWN" and body["binding:vif_type"] == "unbound" and body["binding:vif_details"] == {}


async def test_port_filters_and_isolation(api):
    net, sub = await network_with_subnet(api, cidr="192.168.90.0/24")
    a = await post(api, "port", network_id=net["id"], device_id="vm-a", device_owner="compute:nova", name="pa")
    b = await post(api, "port", network_id=net["id"], device_id="vm-b", device_owner="compute:nova")

    async def ids(headers=ALICE, **params):
        response = await api.get("/v2.0/ports", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["ports"]]

    assert await ids(device_id="vm-a") == [a["id"]]
    assert await ids(SERVICE, device_id="vm-b") == [b["id"]]
    assert sorted(await ids(device_id=["vm-a", "vm-b"])) == sorted([a["id"], b["id"]])
    assert await ids(fixed_ips=f"ip_address={b['fixed_ips'][0]['ip_address']}") == [b["id"]]
    assert sorted(await ids(network_id=net["id"])) == sorted([a["id"], b["id"]])
    assert await ids(name="pa", network_id=net["id"]) == [a["id"]]
    assert await ids(id=b["id"]) == [b["id"]]
    assert await ids(admin_state_up="True", device_id="vm-a") == [a["id"]]
    assert await ids(BOB, network_id=net["id"]) == []
    assert (await api.get(f"/v2.0/ports/{a['id']}", headers=BOB)).status_code == 404
    only = (await api.get("/v2.0/ports", params={"device_id": "vm-a", "fields": "mac_address"}, headers=ALICE))
    assert only.json()["ports"] == [{"mac_address": a["mac_address"]}]
    # a port of bob's on the shared default network: visible to bob and the admin, not to alice
    bobs = await post(api, "port", BOB, network_id=bootstrap.NETWORK_ID)
    assert bobs["fixed_ips"][0]["ip_address"].startswith("10.0.0.")
    assert (await api.get(f"/v2.0/ports/{bobs['id']}", headers=ALICE)).status_code == 404
    assert (await api.get(f"/v2.0/ports/{bobs['id']}", headers=ADMIN)).status_code == 200
    fixed = await post(api, "port", BOB, status=403, network_id=bootstrap.NETWORK_ID,
                       fixed_ips=[{"ip_address": "10.0.0.200"}])
    assert fixed["NeutronError"]["type"] == "PolicyNotAuthorized"
    await post(api, "port", BOB, status=404, network_id=net["id"])


async def test_pagination(api):
    net = await post(api, "network", name="paged")
    made = [(await post(api, "port", network_id=net["id"], name=f"p{i}"))["id"] for i in range(5)]
    seen, url, params = [], "/v2.0/ports", {"network_id": net["id"], "limit": 2}
    while url:
        body = (await api.get(url, params=params, headers=ALICE)).json()
        seen += [p["id"] for p in body["ports"]]
        nxt = [link["href"] for link in body.get("ports_links", []) if link["rel"] == "next"]
        url, params = (nxt[0], None) if nxt else (None, None)
    assert seen == made
    unpaged = (await api.get("/v2.0/ports", params={"network_id": net["id"]}, headers=ALICE)).json()["ports"]
    assert [p["id"] for p in unpaged] == made
    desc = (await api.get("/v2.0/ports", params={"network_id": net["id"], "sort_key": "name", "sort_dir": "desc"},
                          headers=ALICE)).json()["ports"]
    assert [p["name"] for p in desc] == ["p4", "p3", "p2", "p1", "p0"]


async def test_network_in_use(api):
    net, sub = await network_with_subnet(api, cidr="192.168.100.0/24")
    await post(api, "port", ADMIN, network_id=net["id"], project_id="p-alice", device_owner="network:dhcp")
    vm = await post(api, "port", network_id=net["id"], device_owner="compute:nova", device_id="vm")
    response = await api.delete(f"/v2.0/networks/{net['id']}", headers=ALICE)
    assert response.status_code == 409
    assert response.json()["NeutronError"]["type"] == "NetworkInUse"
    await api.delete(f"/v2.0/ports/{vm['id']}", headers=ALICE)
    assert (await api.delete(f"/v2.0/networks/{net['id']}", headers=ALICE)).status_code == 204
    assert (await api.get(f"/v2.0/subnets/{sub['id']}", headers=ALICE)).status_code == 404
    assert (await api.get("/v2.0/ports", params={"network_id": net["id"]}, headers=ADMIN)).json()["ports"] == []


async def test_tags_and_bulk(api):
    created = await api.post("/v2.0/networks", headers=ALICE,
                             json={"networks": [{"name": "bulk-1"}, {"name": "bulk-2", "tags": ["t"]}]})
    assert created.status_code == 201
    nets = created.json()["networks"]
    url = f"/v2.0/networks/{nets[0]['id']}/tags"
    assert (await api.put(url, json={"tags": ["red", "blue"]}, headers=ALICE)).json()["tags"] == ["red", "blue"]
    assert (await api.put(f"{url}/green", headers=ALICE)).status_code == 201
    assert (await api.get(f"{url}/green", headers=ALICE)).status_code == 204
    assert (await api.delete(f"{url}/red", headers=ALICE)).status_code == 204
    assert (await api.get(f"{url}/red", headers=ALICE)).status_code == 404
    found = (await api.get("/v2.0/networks", params={"tags": "blue,green"}, headers=ALICE)).json()["networks"]
    assert [n["id"] for n in found] == [nets[0]["id"]]
    any_t = (await api.get("/v2.0/networks", params={"tags-any": "t,green"}, headers=ALICE)).json()["networks"]
    assert {n["id"] for n in any_t} == {n["id"] for n in nets}
    assert (await api.put(f"{url}/x", headers=BOB)).status_code == 404


async def test_quotas_and_availability_zones(api):
    quota = (await api.get("/v2.0/quotas/p-alice", headers=ALICE)).json()["quota"]
    assert quota["network"] == 100 and quota["port"] == 500
    async def used() -> int:
        details = (await api.get("/v2.0/quotas/p-alice/details", headers=ALICE)).json()["quota"]
        return details["network"]["used"]
    before = await used()
    net = await post(api, "network", name="counted")   # its own: the test may run alone
    assert await used() == before + 1
    assert (await api.delete(f"/v2.0/networks/{net['id']}", headers=ALICE)).status_code == 204
    assert await used() == before
    assert (await api.get("/v2.0/quotas/p-bob", headers=ALICE)).status_code == 403
    zones = (await api.get("/v2.0/availability_zones", headers=ALICE)).json()["availability_zones"]
    assert zones[0]["name"] == "nova"


async def test_default_network_is_idempotent(svc, api):
    again = await svc.ensure_default_network("p-admin")
    assert again["id"] == bootstrap.NETWORK_ID and again["shared"] is True
    nets = (await api.get("/v2.0/networks", params={"name": "private"}, headers=ADMIN)).json()["networks"]
    assert len(nets) == 1 and nets[0]["project_id"] == "p-admin"
    subnets = (await api.get("/v2.0/subnets", params={"network_id": bootstrap.NETWORK_ID},
                             headers=ALICE)).json()["subnets"]
    assert [(s["name"], s["cidr"], s["gateway_ip"]) for s in subnets] == [("private-subnet", "10.0.0.0/24",
                                                                           "10.0.0.1")]
