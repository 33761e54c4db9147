"""Network, subnet and port quotas of the network service, as Neutron holds a project to them."""
import pytest

from tests.unit.test_network_api import ADMIN, BOB, api, svc  # noqa: F401 - the service and its client


async def used(api, resource: str) -> int:  # noqa: F811
    details = (await api.get("/v2.0/quotas/p-bob/details", headers=BOB)).json()["quota"]
    return details[resource]["used"]


async def limit_to_one_more(api, resource: str) -> None:  # noqa: F811
    response = await api.put("/v2.0/quotas/p-bob", json={"quota": {resource: await used(api, resource) + 1}},
                             headers=ADMIN)
    assert response.status_code == 200, response.text


def assert_over_quota(response, resource: str) -> None:
    assert response.status_code == 409, response.text
    error = response.json()["NeutronError"]
    assert error["type"] == "OverQuota" and f"['{resource}']" in error["message"]


@pytest.fixture
async def bob_network(api):  # noqa: F811
    network = await api.post("/v2.0/networks", json={"network": {"name": "bob-net"}}, headers=BOB)
    assert network.status_code == 201, network.text
    yield network.json()["network"]
    await api.delete("/v2.0/quotas/p-bob", headers=ADMIN)


async def test_network_and_subnet_quotas_refuse_the_one_past_the_limit(api, bob_network):  # noqa: F811
    await limit_to_one_more(api, "network")
    assert (await api.post("/v2.0/networks", json={"network": {"name": "n2"}}, headers=BOB)).status_code == 201
    assert_over_quota(await api.post("/v2.0/networks", json={"network": {"name": "n3"}}, headers=BOB), "network")

    await limit_to_one_more(api, "subnet")
    subnet = {"network_id": bob_network["id"], "ip_version": 4}
    created = await api.post("/v2.0/subnets", json={"subnet": {**subnet, "cidr": "10.9.1.0/24"}}, headers=BOB)
    assert created.status_code == 201, created.text
    assert_over_quota(await api.post("/v2.0/subnets", json={"subnet": {**subnet, "cidr": "10.9.2.0/24"}},
                                     headers=BOB), "subnet")


async def test_port_quota_counts_every_port_of_a_bulk_create(api, bob_network):  # noqa: F811
    subnet = {"network_id": bob_network["id"], "ip_version": 4, "cidr": "10.9.3.0/24"}
    assert (await api.post("/v2.0/subnets", json={"subnet": subnet}, headers=BOB)).status_code == 201
    await limit_to_one_more(api, "port")
    before = await used(api, "port")
    port = {"network_id": bob_network["id"]}
    assert_over_quota(await api.post("/v2.0/ports", json={"ports": [port, port]}, headers=BOB), "port")
    assert await used(api, "port") == before          # nothing of the refused bulk create stays
    assert (await api.post("/v2.0/ports", json={"port": port}, headers=BOB)).status_code == 201
    assert_over_quota(await api.post("/v2.0/ports", json={"port": port}, headers=BOB), "port")
    # An admin lifting the limit lets the project go on.
    assert (await api.put("/v2.0/quotas/p-bob", json={"quota": {"port": -1}}, headers=ADMIN)).status_code == 200
    assert (await api.post("/v2.0/ports", json={"port": port}, headers=BOB)).status_code == 201
