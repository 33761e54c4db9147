"""The network service telling compute hosts their ports' security groups changed (security_groups_changed,
fanned out on the security-groups target): driven through its API in-process, with a recording endpoint
served there on the in-process RPC, as an enforcing host's agent serves it."""
import asyncio

import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.compute.versions import SECURITY_GROUPS
from kilonova.network.service import NetworkService

ADMIN = {"X-Auth-Token": "admin"}


class Hosts:
    def __init__(self) -> None:
        self.told: set[str] = set()

    async def security_groups_changed(self, hosts, security_group_ids=None) -> None:
        self.told |= set(hosts)


@pytest.fixture
async def cloud(tmp_path):
    validator = FakeValidator({"admin": ("admin", "p-admin", ["admin", "member", "reader"])})
    service = NetworkService(service_env(tmp_path), validator=validator)
    service.prepare()
    hosts = Hosts()
    await service.env.transport.serve("security-groups", hosts, version=SECURITY_GROUPS.latest)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://net.test",
                                 headers=ADMIN) as api:
        yield api, hosts
    await service.env.transport.close()
    service.db.close()


async def _post(api, resource: str, **body) -> dict:
    response = await api.post(f"/v2.0/{resource.replace('_', '-')}s", json={resource: body})
    assert response.status_code == 201, response.text
    return response.json()[resource]


async def _told(hosts: Hosts) -> set[str]:
    """The hosts told since the last look (the messages go in the background)."""
    for _ in range(100):
        await asyncio.sleep(0.02)
        if hosts.told:
            await asyncio.sleep(0.1)
            break
    told, hosts.told = hosts.told, set()
    return told


async def test_hosts_binding_ports_of_a_changed_group_or_of_a_group_naming_it_are_told(cloud):
    api, hosts = cloud
    net = await _post(api, "network", name="n")
    await _post(api, "subnet", network_id=net["id"], cidr="10.5.0.0/24", ip_version=4)
    web, db, other = [await _post(api, "security_group", name=n) for n in ("web", "db", "other")]
    await _told(hosts)
    await _post(api, "port", network_id=net["id"], security_groups=[web["id"]], device_owner="compute:nova",
                **{"binding:host_id": "h1"})
    assert await _told(hosts) == {"h1"}  # a new member of web: its host
    await _post(api, "port", network_id=net["id"], security_groups=[db["id"]], device_owner="compute:nova",
                **{"binding:host_id": "h2"})
    assert await _told(hosts) == {"h2"}

    rule = await _post(api, "security_group_rule", security_group_id=web["id"], direction="ingress",
                       protocol="tcp", port_range_min=80, port_range_max=80)
    assert await _told(hosts) == {"h1"}  # web's rules changed: the host of web's port only
    await _post(api, "security_group_rule", security_group_id=db["id"], direction="ingress",
                remote_group_id=web["id"])
    assert await _told(hosts) == {"h2"}
    # A new member of web changes db's rules too (they hold web's addresses): both hosts.
    unbound = await _post(api, "port", network_id=net["id"], security_groups=[web["id"]])
    assert await _told(hosts) == {"h1", "h2"}
    # Its move to another group, and its binding to h3.
    response = await api.put(f"/v2.0/ports/{unbound['id']}", json={"port": {
        "security_groups": [other["id"]], "binding:host_id": "h3", "device_owner": "compute:nova"}})
    assert response.status_code == 200, response.text
    assert await _told(hosts) == {"h1", "h2", "h3"}
    # A change that touches no rule tells nobody.
    response = await api.put(f"/v2.0/ports/{unbound['id']}", json={"port": {"name": "renamed"}})
    assert response.status_code == 200 and await _told(hosts) == set()
    assert (await api.delete(f"/v2.0/security-group-rules/{rule['id']}")).status_code == 204
    assert await _told(hosts) == {"h1"}
    assert (await api.delete(f"/v2.0/ports/{unbound['id']}")).status_code == 204
    assert await _told(hosts) == {"h3"}
