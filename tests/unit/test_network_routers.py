"""Routers and external networks in the network service's Neutron v2.0 API, driven in-process."""
import pytest

from kilonova.network import bootstrap
from kilonova.network.db import routers as routers_db
from kilonova.network.db import subnets as subnets_db
from tests.unit.test_network_api import ADMIN, ALICE, BOB, api, svc  # noqa: F401 - the service and its client


@pytest.fixture(scope="module", autouse=True)
async def public_network(svc):  # noqa: F811
    await svc.db.write(bootstrap.ensure_public_network, "p-admin")


async def post(api, resource, headers=ALICE, status=201, **body):
    response = await api.post(f"/v2.0/{resource}s", json={resource: body}, headers=headers)
    assert response.status_code == status, response.text
    return response.json()[resource] if status == 201 else response.json()["NeutronError"]


async def put(api, path, body, headers=ALICE, status=200):
    response = await api.put(f"/v2.0/{path}", json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json() if status == 200 else response.json()["NeutronError"]


async def subnet_of_alice(api, cidr):
    net = await post(api, "network", name=f"net-{cidr}")
    return await post(api, "subnet", network_id=net["id"], cidr=cidr, ip_version=4)


async def test_public_network_is_external_and_visible_to_every_project(api):
    public = (await api.get(f"/v2.0/networks/{bootstrap.PUBLIC_NETWORK_ID}", headers=BOB)).json()["network"]
    assert public["router:external"] is True and public["shared"] is False and public["name"] == "public"
    external = (await api.get("/v2.0/networks", params={"router:external": "True"}, headers=ALICE)).json()
    assert [n["name"] for n in external["networks"]] == ["public"]
    subnet = (await api.get(f"/v2.0/subnets/{bootstrap.PUBLIC_SUBNET_ID}", headers=BOB)).json()["subnet"]
    assert (subnet["cidr"], subnet["gateway_ip"], subnet["enable_dhcp"]) == ("172.24.4.0/24", "172.24.4.1", False)
    router1 = (await api.get(f"/v2.0/routers/{bootstrap.ROUTER_ID}", headers=ADMIN)).json()["router"]
    assert router1["external_gateway_info"]["network_id"] == bootstrap.PUBLIC_NETWORK_ID
    # Only admins make a network external; one with router gateways stays external.
    denied = await post(api, "network", status=403, name="x", **{"router:external": True})
    assert denied["type"] == "PolicyNotAuthorized"
    held = await put(api, f"networks/{bootstrap.PUBLIC_NETWORK_ID}", {"network": {"router:external": False}},
                     headers=ADMIN, status=409)
    assert held["type"] == "ExternalNetworkInUse"
    other = await post(api, "network", ADMIN, name="ext2", **{"router:external": True})
    assert (await put(api, f"networks/{other['id']}", {"network": {"router:external": False}}, headers=ADMIN))[
        "network"]["router:external"] is False


async def test_router_with_gateway_and_interfaces(api):
    router = await post(api, "router", name="r1", external_gateway_info={"network_id": bootstrap.PUBLIC_NETWORK_ID})
    assert router["status"] == "ACTIVE" and router["project_id"] == "p-alice" and router["routes"] == []
    gateway = router["external_gateway_info"]
    assert gateway["network_id"] == bootstrap.PUBLIC_NETWORK_ID and gateway["enable_snat"] is True
    [fixed] = gateway["external_fixed_ips"]
    assert fixed["subnet_id"] == bootstrap.PUBLIC_SUBNET_ID and fixed["ip_address"].startswith("172.24.4.")
    assert "distributed" not in router
    subnet = await subnet_of_alice(api, "192.168.40.0/24")
    added = await put(api, f"routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
    assert added["subnet_id"] == subnet["id"] and added["subnet_ids"] == [subnet["id"]]
    assert added["id"] == router["id"] and added["network_id"] == subnet["network_id"]
    port = (await api.get(f"/v2.0/ports/{added['port_id']}", headers=ALICE)).json()["port"]
    assert port["device_owner"] == "network:router_interface" and port["device_id"] == router["id"]
    assert port["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "192.168.40.1"}]
    # The gateway port belongs to no project: alice does not see it.
    owned = (await api.get("/v2.0/ports", params={"device_id": router["id"]}, headers=ALICE)).json()["ports"]
    assert [p["device_owner"] for p in owned] == ["network:router_interface"]

    again = await put(api, f"routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]}, status=400)
    assert again["message"] == f"Bad router request: Router already has a port on subnet {subnet['id']}."
    overlapping = await subnet_of_alice(api, "192.168.40.0/25")
    clash = await put(api, f"routers/{router['id']}/add_router_interface", {"subnet_id": overlapping["id"]},
                      status=400)
    assert "overlaps with cidr 192.168.40.0/24" in clash["message"]
    both = await put(api, f"routers/{router['id']}/add_router_interface",
                     {"subnet_id": subnet["id"], "port_id": port["id"]}, status=400)
    assert both["message"] == "Bad router request: Cannot specify both subnet-id and port-id."

    in_use = await api.delete(f"/v2.0/routers/{router['id']}", headers=ALICE)
    assert in_use.status_code == 409 and in_use.json()["NeutronError"]["type"] == "RouterInUse"
    direct = await api.delete(f"/v2.0/ports/{port['id']}", headers=ALICE)
    assert direct.status_code == 409 and direct.json()["NeutronError"]["type"] == "L3PortInUse"
    subnet_busy = await api.delete(f"/v2.0/subnets/{subnet['id']}", headers=ALICE)
    assert subnet_busy.status_code == 409

    removed = await put(api, f"routers/{router['id']}/remove_router_interface", {"subnet_id": subnet["id"]})
    assert removed["port_id"] == port["id"]
    assert (await api.get(f"/v2.0/ports/{port['id']}", headers=ALICE)).status_code == 404
    missing = await put(api, f"routers/{router['id']}/remove_router_interface", {"subnet_id": subnet["id"]},
                        status=404)
    assert missing["type"] == "RouterInterfaceNotFoundForSubnet"
    assert (await api.delete(f"/v2.0/routers/{router['id']}", headers=ALICE)).status_code == 204
    # Its gateway port went with it.
    gateways = (await api.get("/v2.0/ports", params={"device_id": router["id"]}, headers=ADMIN)).json()["ports"]
    assert gateways == []


async def test_interface_by_port_and_gateway_rules(api):
    router = await post(api, "router", name="r2")
    assert router["external_gateway_info"] is None
    subnet = await subnet_of_alice(api, "192.168.41.0/24")
    port = await post(api, "port", network_id=subnet["network_id"])
    added = await put(api, f"routers/{router['id']}/add_router_interface", {"port_id": port["id"]})
    assert added["port_id"] == port["id"]
    shown = (await api.get(f"/v2.0/ports/{port['id']}", headers=ALICE)).json()["port"]
    assert (shown["device_owner"], shown["device_id"]) == ("network:router_interface", router["id"])
    busy = await put(api, f"routers/{router['id']}/add_router_interface", {"port_id": port["id"]}, status=409)
    assert busy["type"] == "PortInUse"
    mismatch = await put(api, f"routers/{router['id']}/remove_router_interface",
                         {"port_id": port["id"], "subnet_id": bootstrap.SUBNET_ID}, status=409)
    assert mismatch["type"] == "SubnetMismatchForPort"

    private = await put(api, f"routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": subnet["network_id"]}}}, status=400)
    assert private["message"] == f"Bad router request: Network {subnet['network_id']} is not an external network."
    snat = await put(api, f"routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": bootstrap.PUBLIC_NETWORK_ID, "enable_snat": False}}}, status=403)
    assert snat["type"] == "PolicyNotAuthorized"
    set_gw = await put(api, f"routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": bootstrap.PUBLIC_NETWORK_ID}}})
    assert set_gw["router"]["external_gateway_info"]["network_id"] == bootstrap.PUBLIC_NETWORK_ID
    by_admin = await put(api, f"routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": bootstrap.PUBLIC_NETWORK_ID, "enable_snat": False,
        "external_fixed_ips": [{"ip_address": "172.24.4.200"}]}}}, headers=ADMIN)
    gateway = by_admin["router"]["external_gateway_info"]
    assert gateway["enable_snat"] is False and gateway["external_fixed_ips"][0]["ip_address"] == "172.24.4.200"
    cleared = await put(api, f"routers/{router['id']}", {"router": {"external_gateway_info": {}}})
    assert cleared["router"]["external_gateway_info"] is None
    route = await put(api, f"routers/{router['id']}", {"router": {"routes": [
        {"destination": "10.9.0.0/16", "nexthop": "192.168.41.20"}]}})
    assert route["router"]["routes"] == [{"destination": "10.9.0.0/16", "nexthop": "192.168.41.20"}]
    far = await put(api, f"routers/{router['id']}", {"router": {"routes": [
        {"destination": "10.9.0.0/16", "nexthop": "10.77.0.1"}]}}, status=400)
    assert far["type"] == "InvalidRoutes"

    # Another project neither sees nor changes it.
    assert (await api.get(f"/v2.0/routers/{router['id']}", headers=BOB)).status_code == 404
    assert (await api.delete(f"/v2.0/routers/{router['id']}", headers=BOB)).status_code == 404
    assert router["id"] not in {r["id"] for r in (await api.get("/v2.0/routers", headers=BOB)).json()["routers"]}


async def test_router_quota(api):
    assert (await api.put("/v2.0/quotas/p-bob", json={"quota": {"router": 1}}, headers=BOB)).status_code == 403
    quota = await put(api, "quotas/p-bob", {"quota": {"router": 1}}, headers=ADMIN)
    assert quota["quota"]["router"] == 1
    await post(api, "router", BOB, name="only")
    over = await post(api, "router", BOB, status=409, name="too-many")
    assert over == {"type": "OverQuota", "message": "Quota exceeded for resources: ['router'].", "detail": ""}
    details = (await api.get("/v2.0/quotas/p-bob/details", headers=BOB)).json()["quota"]
    assert details["router"] == {"limit": 1, "used": 1, "reserved": 0}
    assert (await api.delete("/v2.0/quotas/p-bob", headers=ADMIN)).status_code == 204
    assert (await api.get("/v2.0/quotas/p-bob", headers=BOB)).json()["quota"]["router"] == 10


async def test_quota_check_limit_refuses_a_limit_below_usage(api):
    await post(api, "router", BOB, name="counted")
    below = await put(api, "quotas/p-bob", {"quota": {"router": 0, "check_limit": True}}, headers=ADMIN, status=400)
    assert "must be greater than or equal to already used and reserved 2" in below["message"]  # "only" and "counted"
    forced = await put(api, "quotas/p-bob", {"quota": {"router": 0, "force": True}}, headers=ADMIN)
    assert forced["quota"]["router"] == 0
    await api.delete("/v2.0/quotas/p-bob", headers=ADMIN)


async def test_public_network_is_made_even_when_router1_cannot_be(tmp_path):
    from kilonova.common.db import Database, migrate
    from kilonova.network.models import NetworkBase
    from kilonova.network.service import MIGRATIONS

    db = Database(f"sqlite:///{tmp_path}/neutron.sqlite", name="neutron-bootstrap")
    try:
        migrate(db, MIGRATIONS, NetworkBase.metadata)
        db.run_sync(bootstrap.ensure_default_network, "p-admin")
        # An older release's operator gave private-subnet's gateway address to a router of their own.
        db.run_sync(lambda s: routers_db.add_interface_by_subnet(
            s, routers_db.create(s, {"id": "r-own", "name": "own", "project_id": "p-admin"}, None)["id"],
            subnets_db.get(s, bootstrap.SUBNET_ID)))
        public = db.run_sync(bootstrap.ensure_public_network, "p-admin")
        assert public["external"] is True
        assert db.run_sync(routers_db.list_routers, None, {"name": ["router1"]}, write=False) == []
        assert db.run_sync(subnets_db.get, bootstrap.PUBLIC_SUBNET_ID, write=False)["cidr"] == "172.24.4.0/24"
    finally:
        db.close()


class _Recorder:
    """Stands for the L3 agents on target ``l3_agent``: what the network service tells them."""

    def __init__(self):
        import asyncio
        self.updated: list[str] = []
        self.arrived = asyncio.Event()

    async def routers_updated(self, router_ids):
        self.updated.extend(router_ids)
        self.arrived.set()


class _ServiceToken:
    async def token(self, refresh=False):
        return "nova"


async def test_router_changes_reach_the_l3_agents_which_read_them_back(svc, api):  # noqa: F811
    """Every change of a router (gateway, interface, floating IP association) is fanned out to ``l3_agent``
    after its commit, and the agent's reading of the router through the API is what its namespace needs."""
    import asyncio

    from kilonova.common.clients import ServiceClient
    from kilonova.common.testing import service_env
    from kilonova.compute.virt.libvirt.l3_agent import L3AgentService

    recorder = _Recorder()
    await svc.env.transport.serve("l3_agent", recorder)

    async def told(router_id):
        await asyncio.wait_for(recorder.arrived.wait(), 5)
        recorder.arrived.clear()
        assert router_id in recorder.updated
        recorder.updated.clear()

    agent = L3AgentService(service_env(svc.env.conf.state_dir))
    agent.network = ServiceClient(api, _ServiceToken())
    try:
        router = await post(api, "router", name="told", external_gateway_info={
            "network_id": bootstrap.PUBLIC_NETWORK_ID})
        await told(router["id"])
        subnet = await subnet_of_alice(api, "192.168.77.0/24")
        await put(api, f"routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
        await told(router["id"])
        port = await post(api, "port", network_id=subnet["network_id"])
        fip = await post(api, "floatingip", floating_network_id=bootstrap.PUBLIC_NETWORK_ID, port_id=port["id"])
        await told(router["id"])

        state = await agent.desired(router["id"])
        gateway_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        assert state["gateway"]["addresses"] == [f"{gateway_ip}/24"]
        assert (state["gateway"]["gateway_ip"], state["gateway"]["prefixlen"]) == ("172.24.4.1", 24)
        [leg] = state["interfaces"]
        assert leg["addresses"] == ["192.168.77.1/24"] and leg["network_id"] == subnet["network_id"]
        assert state["floating_ips"] == [{"floating": fip["floating_ip_address"],
                                          "fixed": port["fixed_ips"][0]["ip_address"]}]
        assert state["enable_snat"] is True

        await put(api, f"floatingips/{fip['id']}", {"floatingip": {"port_id": None}})
        await told(router["id"])
        assert (await agent.desired(router["id"]))["floating_ips"] == []
        await put(api, f"floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}})
        await told(router["id"])
        assert (await api.delete(f"/v2.0/ports/{port['id']}", headers=ALICE)).status_code == 204
        await told(router["id"])  # the port's floating IP left it
        await put(api, f"routers/{router['id']}/remove_router_interface", {"subnet_id": subnet["id"]})
        await told(router["id"])
        await put(api, f"routers/{router['id']}", {"router": {"external_gateway_info": {}}})
        await told(router["id"])
        assert (await api.delete(f"/v2.0/routers/{router['id']}", headers=ALICE)).status_code == 204
        await told(router["id"])
        assert await agent.desired(router["id"]) is None  # gone: its namespace goes
    finally:
        await svc.env.transport.stop_serving("l3_agent")


def test_the_l3_agent_runs_where_it_is_asked_to(tmp_path):
    """auto: only with the libvirt driver and the network service in the same process (the all-in-one); a
    value that is none of auto, true, false stops the service at start rather than being guessed at."""
    from kilonova.common.testing import service_env
    from kilonova.compute.virt.libvirt.l3_agent import L3AgentService

    def agent(**l3):
        return L3AgentService(service_env(tmp_path, overrides={"l3": l3, "compute": {"compute_driver": "libvirt"}}))

    assert agent()._wanted() is False  # no network service in this process
    with_network = agent()
    with_network.env.endpoints.apps["network"] = object()
    assert with_network._wanted() is True
    assert agent(agent="true")._wanted() is True and agent(agent="false")._wanted() is False
    with pytest.raises(ValueError, match=r"\[l3\] agent = 'sometimes': must be one of auto, true, false"):
        agent(agent="sometimes")
    assert agent(resync_interval="0").interval == 1.0
