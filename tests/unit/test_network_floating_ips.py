"""Floating IPs in the network service's Neutron v2.0 API, driven in-process."""
import pytest

from kilonova.network import bootstrap
from tests.unit.test_network_api import ADMIN, ALICE, BOB, api, svc  # noqa: F401 - the service and its client
from tests.unit.test_network_routers import post, put

PUBLIC = bootstrap.PUBLIC_NETWORK_ID


@pytest.fixture(scope="module", autouse=True)
async def public_network(svc):  # noqa: F811
    await svc.db.write(bootstrap.ensure_public_network, "p-admin")


async def routed_port(api, cidr: str, headers=ALICE):  # noqa: F811
    """A port on a new subnet of the caller's that a router of theirs connects to ``public``."""
    net = await post(api, "network", headers, name=f"fip-{cidr}")
    subnet = await post(api, "subnet", headers, network_id=net["id"], cidr=cidr, ip_version=4)
    router = await post(api, "router", headers, name=f"r-{cidr}", external_gateway_info={"network_id": PUBLIC})
    await put(api, f"routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]}, headers)
    port = await post(api, "port", headers, network_id=net["id"], device_id="vm-1", device_owner="compute:nova")
    return port, subnet, router


async def test_allocate_associate_disassociate_release(api):
    fip = await post(api, "floatingip", floating_network_id=PUBLIC)
    assert fip["floating_ip_address"].startswith("172.24.4.") and fip["status"] == "DOWN"
    assert (fip["port_id"], fip["fixed_ip_address"], fip["router_id"]) == (None, None, None)
    assert fip["project_id"] == "p-alice" and "port_forwardings" not in fip  # no port forwarding extension
    port, subnet, router = await routed_port(api, "192.168.50.0/24")
    fixed = port["fixed_ips"][0]["ip_address"]
    associated = (await put(api, f"floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}}))["floatingip"]
    assert (associated["port_id"], associated["fixed_ip_address"]) == (port["id"], fixed)
    assert associated["router_id"] == router["id"] and associated["status"] == "ACTIVE"
    assert associated["port_details"]["device_id"] == "vm-1"
    # Filters, and other projects see nothing of it.
    by_port = (await api.get("/v2.0/floatingips", params={"port_id": port["id"]}, headers=ALICE)).json()
    assert [f["id"] for f in by_port["floatingips"]] == [fip["id"]]
    by_status = (await api.get("/v2.0/floatingips", params={"status": "DOWN"}, headers=ALICE)).json()
    assert fip["id"] not in [f["id"] for f in by_status["floatingips"]]
    assert (await api.get("/v2.0/floatingips", headers=BOB)).json()["floatingips"] == []
    assert (await api.get(f"/v2.0/floatingips/{fip['id']}", headers=BOB)).status_code == 404
    # The interface it goes through and the router's gateway stay while it is associated.
    busy = await put(api, f"routers/{router['id']}/remove_router_interface", {"subnet_id": subnet["id"]}, status=409)
    assert busy["type"] == "RouterInterfaceInUseByFloatingIP"
    gw_busy = await put(api, f"routers/{router['id']}", {"router": {"external_gateway_info": {}}}, status=409)
    assert gw_busy["type"] == "RouterExternalGatewayInUseByFloatingIp"
    # A second floating IP on the same fixed IP is refused.
    second = await post(api, "floatingip", floating_network_id=PUBLIC)
    taken = await put(api, f"floatingips/{second['id']}", {"floatingip": {"port_id": port["id"]}}, status=409)
    assert taken["type"] == "FloatingIPPortAlreadyAssociated"
    assert (await api.delete(f"/v2.0/floatingips/{second['id']}", headers=ALICE)).status_code == 204

    cleared = (await put(api, f"floatingips/{fip['id']}", {"floatingip": {"port_id": None}}))["floatingip"]
    assert (cleared["port_id"], cleared["fixed_ip_address"], cleared["router_id"], cleared["status"]) == (
        None, None, None, "DOWN")
    assert (await api.delete(f"/v2.0/floatingips/{fip['id']}", headers=ALICE)).status_code == 204
    assert (await api.get(f"/v2.0/floatingips/{fip['id']}", headers=ALICE)).status_code == 404
    own = (await api.get("/v2.0/ports", params={"device_id": fip["id"]}, headers=ADMIN)).json()["ports"]
    assert own == []


async def test_unreachable_and_bad_requests(api):
    net = await post(api, "network", name="isolated")
    subnet = await post(api, "subnet", network_id=net["id"], cidr="192.168.51.0/24", ip_version=4)
    port = await post(api, "port", network_id=net["id"])
    unreachable = await post(api, "floatingip", status=404, floating_network_id=PUBLIC, port_id=port["id"])
    assert unreachable["type"] == "ExternalGatewayForFloatingIPNotFound"
    assert unreachable["message"] == (f"External network {PUBLIC} is not reachable from subnet {subnet['id']}.  "
                                      f"Therefore, cannot associate Port {port['id']} with a Floating IP.")
    assert (await api.get("/v2.0/floatingips", headers=ALICE)).json()["floatingips"] == []
    not_external = await post(api, "floatingip", status=400, floating_network_id=net["id"])
    assert not_external["message"] == f"Bad floatingip request: Network {net['id']} is not a valid external network."
    chosen = await post(api, "floatingip", status=403, floating_network_id=PUBLIC, floating_ip_address="172.24.4.99")
    assert chosen["type"] == "PolicyNotAuthorized"
    by_admin = await post(api, "floatingip", ADMIN, floating_network_id=PUBLIC, floating_ip_address="172.24.4.99")
    assert by_admin["floating_ip_address"] == "172.24.4.99"
    again = await post(api, "floatingip", ADMIN, status=409, floating_network_id=PUBLIC,
                       floating_ip_address="172.24.4.99")
    assert again["type"] == "IpAddressAlreadyAllocated"
    missing = await post(api, "floatingip", status=404, floating_network_id="nope")
    assert missing["type"] == "NetworkNotFound"
    bobs_port, _, _ = await routed_port(api, "192.168.52.0/24", BOB)
    foreign = await post(api, "floatingip", status=404, floating_network_id=PUBLIC, port_id=bobs_port["id"])
    assert foreign["type"] == "PortNotFound"
    wrong_ip = await post(api, "floatingip", BOB, status=400, floating_network_id=PUBLIC, port_id=bobs_port["id"],
                          fixed_ip_address="10.1.1.1")
    assert "does not have fixed ip 10.1.1.1" in wrong_ip["message"]
    # Nothing half-made: the refused creations left no floating IP and no address taken.
    assert [f["floating_ip_address"] for f in (await api.get("/v2.0/floatingips", headers=ADMIN)).json()[
        "floatingips"]] == ["172.24.4.99"]


async def test_deleting_a_port_disassociates_its_floating_ip(api):
    port, _, _ = await routed_port(api, "192.168.53.0/24")
    fip = await post(api, "floatingip", floating_network_id=PUBLIC, port_id=port["id"])
    assert fip["status"] == "ACTIVE" and fip["port_id"] == port["id"]
    assert (await api.delete(f"/v2.0/ports/{port['id']}", headers=ALICE)).status_code == 204
    kept = (await api.get(f"/v2.0/floatingips/{fip['id']}", headers=ALICE)).json()["floatingip"]
    assert (kept["port_id"], kept["fixed_ip_address"], kept["router_id"], kept["status"]) == (None, None, None, "DOWN")
    [own_port] = (await api.get("/v2.0/ports", params={"device_id": fip["id"]}, headers=ADMIN)).json()["ports"]
    direct = await api.delete(f"/v2.0/ports/{own_port['id']}", headers=ADMIN)
    assert direct.status_code == 409 and direct.json()["NeutronError"]["type"] == "L3PortInUse"
    assert (await api.delete(f"/v2.0/floatingips/{fip['id']}", headers=ALICE)).status_code == 204


async def test_floating_ip_quota_and_tags(api):
    await put(api, "quotas/p-bob", {"quota": {"floatingip": 1}}, headers=ADMIN)
    try:
        fip = await post(api, "floatingip", BOB, floating_network_id=PUBLIC)
        over = await post(api, "floatingip", BOB, status=409, floating_network_id=PUBLIC)
        assert over["message"] == "Quota exceeded for resources: ['floatingip']."
        assert (await api.put(f"/v2.0/floatingips/{fip['id']}/tags/blue", headers=BOB)).status_code == 201
        assert (await api.get(f"/v2.0/floatingips/{fip['id']}", headers=BOB)).json()["floatingip"]["tags"] == ["blue"]
        assert (await api.put(f"/v2.0/floatingips/{fip['id']}/tags/red", headers=ALICE)).status_code == 404
    finally:
        await api.delete("/v2.0/quotas/p-bob", headers=ADMIN)


@pytest.mark.parametrize("method,path,body", [
    ("POST", "routers", {"router": {"external_gateway_info": {"network_id": 5}}}),
    ("POST", "routers", {"router": {"external_gateway_info": {"enable_snat": False}}}),
    ("POST", "routers", {"router": {"external_gateway_info": {"network_id": PUBLIC, "external_fixed_ips": "x"}}}),
    ("POST", "routers", {"router": {"external_gateway_info": {"network_id": PUBLIC, "colour": 1}}}),
    ("POST", "routers", {"router": {"external_gateway_info": []}}),
    ("POST", "routers", {"router": {"distributed": True}}),
    ("POST", "routers", {"router": {"routes": []}}),
    ("POST", "routers", {"routers": [{}]}),
    ("POST", "floatingips", {"floatingip": {}}),
    ("POST", "floatingips", {"floatingip": {"floating_network_id": PUBLIC, "port_id": 7}}),
    ("POST", "floatingips", {"floatingip": {"floating_network_id": PUBLIC, "fixed_ip_address": "1.2.3.4"}}),
    ("POST", "floatingips", {"floatingip": {"floating_network_id": PUBLIC, "subnet_id": bootstrap.SUBNET_ID}}),
    ("POST", "floatingips", {"floatingip": {"floating_network_id": [PUBLIC]}}),
    ("POST", "floatingips", {"floatingip": {"floating_network_id": PUBLIC, "dns_name": "x"}}),
    ("PUT", "quotas/p-alice", {"quota": {"router": "many"}}),
    ("PUT", "quotas/p-alice", {"quota": {"router": -2}}),
    ("PUT", "quotas/p-alice", {"quota": {"rooter": 1}}),
    ("PUT", "quotas/p-alice", [1]),
])
async def test_bad_input_is_a_400(api, method, path, body):
    headers = ADMIN if path.startswith("quotas") else ALICE
    response = await api.request(method, f"/v2.0/{path}", json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["NeutronError"]["message"]


async def test_bad_router_calls_are_4xx(api):
    router = await post(api, "router", name="bad-input")
    url = f"/v2.0/routers/{router['id']}"
    for body in ([], {"subnet_id": 5}, {}, {"port_id": "missing"}, {"subnet_id": "missing"}):
        response = await api.put(f"{url}/add_router_interface", json=body, headers=ALICE)
        assert 400 <= response.status_code < 500, (body, response.text)
    for body in ({"routes": [{"destination": "x", "nexthop": "1.2.3.4"}]}, {"routes": "x"},
                 {"routes": [{"destination": "10.0.0.0/8"}]}, {"external_gateway_info": {"network_id": "missing"}}):
        response = await api.put(url, json={"router": body}, headers=ALICE)
        assert 400 <= response.status_code < 500, (body, response.text)
    fip = await post(api, "floatingip", floating_network_id=PUBLIC)
    for body in ({"port_id": "missing"}, {"fixed_ip_address": "10.0.0.9"}, {"floating_network_id": PUBLIC},
                 {"port_id": 3}):
        response = await api.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": body}, headers=ALICE)
        assert 400 <= response.status_code < 500, (body, response.text)
    await api.delete(f"/v2.0/floatingips/{fip['id']}", headers=ALICE)
    assert (await api.delete(url, headers=ALICE)).status_code == 204
