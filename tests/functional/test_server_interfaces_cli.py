"""Ports on running servers (os-interface) through the real `openstack` CLI, openstacksdk and HTTP:
attach by network, port and fixed IP, list/show, detach, the state rules, errors, microversions,
instance actions, and the network service's binding of the port."""
from __future__ import annotations

import uuid

import pytest

DEMO = "kilonova-demo"


def _cli(cloud, *args, **kwargs):
    return cloud.openstack(*args, cloud=DEMO, **kwargs)


@pytest.fixture(scope="module")
def net(cloud):
    """A second network of the demo project (10.77.0.0/24)."""
    name = f"ifnet-{uuid.uuid4().hex[:6]}"
    network = _cli(cloud, "network", "create", name, fmt_json=True)
    subnet = _cli(cloud, "subnet", "create", "--network", name, "--subnet-range", "10.77.0.0/24", f"{name}-subnet",
                  fmt_json=True)
    yield {**network, "subnet_id": subnet["id"]}
    _cli(cloud, "network", "delete", name, check=False)


@pytest.fixture(scope="module")
def vm(cloud, net):
    name = f"vm-if-{uuid.uuid4().hex[:6]}"
    created = _cli(cloud, "server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                   "private", name, fmt_json=True)
    cloud.wait_status(name, "ACTIVE", cloud=DEMO)
    yield {**created, "name": name}
    _cli(cloud, "server", "delete", "--wait", created["id"], check=False)


def _ports(cloud, server_id: str) -> dict[str, dict]:
    return {p["ID"]: p for p in _cli(cloud, "port", "list", "--device-id", server_id, "--long", fmt_json=True)}


def _addresses(cloud, server_id: str) -> dict[str, list[str]]:
    shown = cloud.server(server_id, cloud=DEMO)
    return {name: sorted(a["addr"] for a in addrs) for name, addrs in shown["addresses"].items()}


def _console(cloud, server_id: str) -> str:
    return _cli(cloud, "console", "log", "show", server_id).stdout


def test_add_and_remove_network(cloud, vm, net):
    before = _ports(cloud, vm["id"])
    _cli(cloud, "server", "add", "network", vm["name"], net["name"])
    ports = _ports(cloud, vm["id"])
    assert len(ports) == len(before) + 1
    new_id = next(p for p in ports if p not in before)
    # The network service holds the port bound to the server and its host, ACTIVE.
    port = cloud.openstack("port", "show", new_id, fmt_json=True)
    host = cloud.openstack("server", "show", vm["id"], fmt_json=True)["OS-EXT-SRV-ATTR:host"]
    assert (port["device_id"], port["device_owner"], port["binding_host_id"], port["status"]) == \
        (vm["id"], "compute:nova", host, "ACTIVE")
    address = port["fixed_ips"][0]["ip_address"]
    assert address.startswith("10.77.0.")
    # Both networks show in the server's addresses, and the guest saw the port plugged.
    addresses = _addresses(cloud, vm["id"])
    assert sorted(addresses) == sorted(["private", net["name"]]) and addresses[net["name"]] == [address]
    assert f"port {new_id} hot-plugged" in _console(cloud, vm["id"])
    # The CLI's interface list (os-interface) shows it too.
    listed = {i.port_id: i for i in cloud.sdk(DEMO).compute.server_interfaces(vm["id"])}
    assert set(listed) == set(ports)
    assert (listed[new_id].net_id, listed[new_id].port_state, listed[new_id].fixed_ips[0]["ip_address"]) == \
        (net["id"], "ACTIVE", address)
    # A port made for the attach goes with the detach.
    _cli(cloud, "server", "remove", "network", vm["name"], net["name"])
    assert set(_ports(cloud, vm["id"])) == set(before)
    assert _cli(cloud, "port", "show", new_id, check=False).returncode != 0
    assert sorted(_addresses(cloud, vm["id"])) == ["private"]
    assert f"port {new_id} unplugged" in _console(cloud, vm["id"])


def test_add_and_remove_port_keeps_the_users_port(cloud, vm, net):
    port = _cli(cloud, "port", "create", "--network", net["name"], f"p-{uuid.uuid4().hex[:6]}", fmt_json=True)
    try:
        _cli(cloud, "server", "add", "port", vm["name"], port["name"])
        bound = _cli(cloud, "port", "show", port["id"], fmt_json=True)
        assert (bound["device_id"], bound["device_owner"], bound["status"]) == (vm["id"], "compute:nova", "ACTIVE")
        with cloud.http("compute", DEMO) as compute:
            shown = compute.get(f"/servers/{vm['id']}/os-interface/{port['id']}")
            assert shown.status_code == 200, shown.text
            attachment = shown.json()["interfaceAttachment"]
            assert attachment == {"port_state": "ACTIVE", "port_id": port["id"], "net_id": net["id"],
                                  "mac_addr": port["mac_address"], "fixed_ips": [
                                      {"subnet_id": net["subnet_id"],
                                       "ip_address": port["fixed_ips"][0]["ip_address"]}]}
            # The port is in use: another server's attach of it is a 409.
            in_use = compute.post(f"/servers/{vm['id']}/os-interface",
                                  json={"interfaceAttachment": {"port_id": port["id"]}})
            assert in_use.status_code == 409 and f"Port {port['id']} is still in use." in in_use.text
        _cli(cloud, "server", "remove", "port", vm["name"], port["name"])
        kept = _cli(cloud, "port", "show", port["id"], fmt_json=True)
        assert (kept["device_id"], kept["device_owner"], kept["status"]) == ("", "", "DOWN")
        assert sorted(_addresses(cloud, vm["id"])) == ["private"]
    finally:
        _cli(cloud, "port", "delete", port["id"], check=False)


def test_add_fixed_ip_and_instance_actions(cloud, vm, net):
    _cli(cloud, "server", "add", "fixed", "ip", "--fixed-ip-address", "10.77.0.77", vm["name"], net["name"])
    assert _addresses(cloud, vm["id"])[net["name"]] == ["10.77.0.77"]
    port_id = next(p for p, port in _ports(cloud, vm["id"]).items() if "10.77.0.77" in str(port["Fixed IP Addresses"]))
    # The address is taken now: asking for it again is upstream's 409.
    with cloud.http("compute", DEMO) as compute:
        taken = compute.post(f"/servers/{vm['id']}/os-interface", json={"interfaceAttachment": {
            "net_id": net["id"], "fixed_ips": [{"ip_address": "10.77.0.77"}]}})
        assert taken.status_code == 409
        assert f"Fixed IP address 10.77.0.77 is already in use on instance {vm['id']}." in taken.text
        assert compute.delete(f"/servers/{vm['id']}/os-interface/{port_id}").status_code == 202
    actions = _cli(cloud, "server", "event", "list", vm["id"], fmt_json=True)
    names = [a["Action"] for a in actions]
    assert names.count("attach_interface") >= 2 and names.count("detach_interface") >= 1
    refused, added = [a for a in actions if a["Action"] == "attach_interface"][:2]
    # The refused attach is a failed action, as upstream's compute manager records it.
    with cloud.http("compute", DEMO) as compute:
        shown = compute.get(f"/servers/{vm['id']}/os-instance-actions/{refused['Request ID']}",
                            headers={"OpenStack-API-Version": "compute 2.84"}).json()["instanceAction"]
    assert shown["message"] == "Error"
    assert [(e["event"], e["result"]) for e in shown["events"]] == [("compute_attach_interface", "Error")]
    assert "Fixed IP address 10.77.0.77 is already in use" in shown["events"][0]["details"]
    detail = _cli(cloud, "server", "event", "show", vm["id"], added["Request ID"], fmt_json=True)
    assert [e["event"] for e in detail["events"]] == ["compute_attach_interface"]
    assert detail["events"][0]["result"] == "Success" and detail["message"] is None


def test_bad_requests(cloud, vm, net):
    with cloud.http("compute", DEMO) as compute:
        url = f"/servers/{vm['id']}/os-interface"

        def post(body, version=None):
            headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
            return compute.post(url, json={"interfaceAttachment": body}, headers=headers)

        both = post({"net_id": net["id"], "port_id": str(uuid.uuid4())})
        assert both.status_code == 400 and "Must not input both network_id and port_id" in both.text
        ip_alone = post({"fixed_ips": [{"ip_address": "10.77.0.5"}]})
        assert ip_alone.status_code == 400 and "Must input network_id when request IP address" in ip_alone.text
        missing_net = str(uuid.uuid4())
        no_net = post({"net_id": missing_net})
        assert no_net.status_code == 404 and f"Network {missing_net} could not be found." in no_net.text
        missing_port = str(uuid.uuid4())
        no_port = post({"port_id": missing_port})
        assert no_port.status_code == 404 and f"Port id {missing_port} could not be found." in no_port.text
        assert post({"net_id": "not-a-uuid"}).status_code == 400
        assert post({"net_id": net["id"], "bogus": 1}).status_code == 400
        # tag: a 400 before 2.49
        assert post({"net_id": net["id"], "tag": "eth9"}, "2.48").status_code == 400
        # a port not attached cannot be detached, nor shown through this server
        assert compute.delete(f"{url}/{missing_port}").status_code == 404
        assert compute.get(f"{url}/{missing_port}").status_code == 404
        assert compute.get(f"/servers/{uuid.uuid4()}/os-interface").status_code == 404


def test_another_projects_port_is_not_found(cloud, vm):
    admin = cloud.sdk()
    network = admin.network.create_network(name=f"adm-{uuid.uuid4().hex[:6]}")
    admin.network.create_subnet(network_id=network.id, cidr="10.78.0.0/24", ip_version=4)
    port = admin.network.create_port(network_id=network.id)
    try:
        with cloud.http("compute", DEMO) as compute:
            reply = compute.post(f"/servers/{vm['id']}/os-interface",
                                 json={"interfaceAttachment": {"port_id": port.id}})
            assert reply.status_code == 404 and f"Port id {port.id} could not be found." in reply.text
            reply = compute.post(f"/servers/{vm['id']}/os-interface",
                                 json={"interfaceAttachment": {"net_id": network.id}})
            assert reply.status_code == 404 and f"Network {network.id} could not be found." in reply.text
        # The admin sees the port, but it is not the server's project's: upstream's PortNotUsable (400).
        with cloud.http("compute") as compute:
            reply = compute.post(f"/servers/{vm['id']}/os-interface",
                                 json={"interfaceAttachment": {"port_id": port.id}})
            assert reply.status_code == 400 and f"Port {port.id} not usable for instance {vm['id']}." in reply.text
    finally:
        admin.network.delete_port(port)
        admin.network.delete_network(network)


def test_no_free_address_is_a_400(cloud, vm):
    name = f"tiny-{uuid.uuid4().hex[:6]}"
    network = _cli(cloud, "network", "create", name, fmt_json=True)
    _cli(cloud, "subnet", "create", "--network", name, "--subnet-range", "10.79.0.0/29", "--allocation-pool",
         "start=10.79.0.2,end=10.79.0.2", f"{name}-subnet")
    holder = _cli(cloud, "port", "create", "--network", name, f"{name}-holder", fmt_json=True)
    try:
        with cloud.http("compute", DEMO) as compute:
            reply = compute.post(f"/servers/{vm['id']}/os-interface",
                                 json={"interfaceAttachment": {"net_id": network["id"]}})
            assert reply.status_code == 400
            assert f"No fixed IP addresses available for network: {network['id']}" in reply.text
        # nothing half-made: no port of the server on that network
        assert [p["ID"] for p in _cli(cloud, "port", "list", "--network", name, fmt_json=True)] == [holder["id"]]
    finally:
        _cli(cloud, "port", "delete", holder["id"], check=False)
        _cli(cloud, "network", "delete", name, check=False)


def test_tags_and_microversions(cloud, vm, net):
    with cloud.http("compute", DEMO) as compute:
        url = f"/servers/{vm['id']}/os-interface"
        v249 = {"OpenStack-API-Version": "compute 2.49"}
        v270 = {"OpenStack-API-Version": "compute 2.70"}
        reply = compute.post(url, json={"interfaceAttachment": {"net_id": net["id"], "tag": "data"}}, headers=v249)
        assert reply.status_code == 200, reply.text
        attachment = reply.json()["interfaceAttachment"]
        assert "tag" not in attachment  # shown from 2.70 only
        port_id = attachment["port_id"]
        try:
            bad_tag = compute.post(url, json={"interfaceAttachment": {"net_id": net["id"], "tag": "a/b"}},
                                   headers=v249)
            assert bad_tag.status_code == 400
            assert compute.get(f"{url}/{port_id}", headers=v270).json()["interfaceAttachment"]["tag"] == "data"
            listed = compute.get(url, headers=v270).json()["interfaceAttachments"]
            assert sorted(str(i["tag"]) for i in listed) == ["None", "data"]
            assert all("tag" not in i for i in compute.get(url, headers=v249).json()["interfaceAttachments"])
        finally:
            assert compute.delete(f"{url}/{port_id}").status_code == 202


def test_state_rules_and_lock(cloud, net):
    name = f"vm-ifs-{uuid.uuid4().hex[:6]}"
    created = _cli(cloud, "server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                   "private", name, fmt_json=True)
    try:
        cloud.wait_status(name, "ACTIVE", cloud=DEMO)
        # A stopped server takes a port (CONFIG only on a real guest) and gives it back.
        _cli(cloud, "server", "stop", name)
        cloud.wait_status(name, "SHUTOFF", cloud=DEMO, settled=True)
        _cli(cloud, "server", "add", "network", name, net["name"])
        assert sorted(_addresses(cloud, created["id"])) == sorted(["private", net["name"]])
        _cli(cloud, "server", "remove", "network", name, net["name"])
        # Shelved: upstream's 409 for attach and detach.
        _cli(cloud, "server", "shelve", name)
        shelved = cloud.wait_server(name, lambda s: s["status"] in ("SHELVED", "SHELVED_OFFLOADED") and
                                    not s.get("OS-EXT-STS:task_state"), "shelved", cloud=DEMO)
        state = shelved["OS-EXT-STS:vm_state"]
        with cloud.http("compute", DEMO) as compute:
            reply = compute.post(f"/servers/{created['id']}/os-interface",
                                 json={"interfaceAttachment": {"net_id": net["id"]}})
            assert reply.status_code == 409
            assert f"Cannot 'attach_interface' instance {created['id']} while it is in vm_state {state}" in reply.text
            port_id = next(iter(_ports(cloud, created["id"])), str(uuid.uuid4()))
            reply = compute.delete(f"/servers/{created['id']}/os-interface/{port_id}")
            assert reply.status_code == 409
            assert f"Cannot 'detach_interface' instance {created['id']} while it is in vm_state {state}" in reply.text
        _cli(cloud, "server", "unshelve", name)
        cloud.wait_status(name, "ACTIVE", cloud=DEMO, settled=True)
        # Locked by the admin: the owner is refused (409), the admin is not.
        cloud.openstack("server", "lock", created["id"])
        with cloud.http("compute", DEMO) as compute:
            reply = compute.post(f"/servers/{created['id']}/os-interface",
                                 json={"interfaceAttachment": {"net_id": net["id"]}})
            assert reply.status_code == 409 and f"Instance {created['id']} is locked" in reply.text
        cloud.openstack("server", "add", "network", created["id"], net["name"])
        assert net["name"] in _addresses(cloud, created["id"])
        cloud.openstack("server", "unlock", created["id"])
    finally:
        _cli(cloud, "server", "delete", "--wait", created["id"], check=False)


def test_add_and_remove_fixed_ip_actions(cloud, vm, net):
    """addFixedIp / removeFixedIp (until 2.43): one more address on the server's port of a network, one taken off
    (`openstack server remove fixed ip`)."""
    _cli(cloud, "server", "add", "network", vm["name"], net["name"])
    try:
        first = _addresses(cloud, vm["id"])[net["name"]]
        with cloud.http("compute", DEMO) as compute:
            url = f"/servers/{vm['id']}/action"
            reply = compute.post(url, json={"addFixedIp": {"networkId": net["id"]}})
            assert reply.status_code == 202, reply.text
            cloud.wait_server(vm["id"], lambda s: len(s["addresses"].get(net["name"], [])) == 2,
                              "to show two addresses on the network", cloud=DEMO)
            second = next(a for a in _addresses(cloud, vm["id"])[net["name"]] if a not in first)
            gone = compute.post(url, json={"removeFixedIp": {"address": "10.99.99.99"}})
            assert gone.status_code == 400 and f"doesn't have fixed IP '10.99.99.99'" in gone.text
            later = {"OpenStack-API-Version": "compute 2.44"}
            assert compute.post(url, json={"addFixedIp": {"networkId": net["id"]}}, headers=later).status_code == 404
            no_port = compute.post(url, json={"addFixedIp": {"networkId": str(uuid.uuid4())}})
            assert no_port.status_code == 400 and "Network could not be found for instance" in no_port.text
        # The action is gone from 2.44: the CLI (which asks for the latest version) is told 2.43, as with upstream.
        _cli(cloud, "--os-compute-api-version", "2.43", "server", "remove", "fixed", "ip", vm["name"], second)
        cloud.wait_server(vm["id"], lambda s: len(s["addresses"].get(net["name"], [])) == 1,
                          "to show one address on the network", cloud=DEMO)
        assert _addresses(cloud, vm["id"])[net["name"]] == first
    finally:
        _cli(cloud, "server", "remove", "network", vm["name"], net["name"])


def test_an_attached_ports_groups_show_on_the_server(cloud, vm, net):
    name = f"ifsg-{uuid.uuid4().hex[:6]}"
    _cli(cloud, "security", "group", "create", name)
    port = _cli(cloud, "port", "create", "--network", net["name"], "--security-group", name, f"{name}-port",
                fmt_json=True)
    try:
        _cli(cloud, "server", "add", "port", vm["name"], port["id"])
        groups = [g["name"] for g in cloud.server(vm["id"], cloud=DEMO)["security_groups"]]
        assert sorted(groups) == sorted(["default", name])
        _cli(cloud, "server", "remove", "port", vm["name"], port["id"])
        assert [g["name"] for g in cloud.server(vm["id"], cloud=DEMO)["security_groups"]] == ["default"]
    finally:
        _cli(cloud, "port", "delete", port["id"], check=False)
        _cli(cloud, "security", "group", "delete", name, check=False)


def test_the_external_network_is_refused(cloud, vm):
    """A port on the external network is the network service's to refuse to a project member, as Neutron's
    policy does: a 4xx, and nothing is left attached."""
    public = cloud.sdk(DEMO).network.find_network("public")
    before = _ports(cloud, vm["id"])
    with cloud.http("compute", DEMO) as compute:
        reply = compute.post(f"/servers/{vm['id']}/os-interface", json={"interfaceAttachment": {"net_id": public.id}})
        assert reply.status_code in (403, 404), reply.text
    assert _ports(cloud, vm["id"]).keys() == before.keys()


HOSTILE_BODIES = [None, [], "x", 1, {}, {"interfaceAttachment": None}, {"interfaceAttachment": []},
                  {"interfaceAttachment": {"fixed_ips": []}}, {"interfaceAttachment": {"fixed_ips": [{}]}},
                  {"interfaceAttachment": {"net_id": 1}}, {"interfaceAttachment": {"port_id": "../../x"}},
                  {"interfaceAttachment": {"net_id": str(uuid.UUID(int=0)), "fixed_ips": [{"ip_address": "::1"}]}},
                  {"interfaceAttachment": {"tag": "\u0000" * 61}}]


def test_hostile_input_is_never_a_5xx(cloud, vm, net):
    with cloud.http("compute", DEMO) as compute:
        url = f"/servers/{vm['id']}/os-interface"
        for version in ("2.1", "2.49", "2.70"):
            headers = {"OpenStack-API-Version": f"compute {version}"}
            for body in HOSTILE_BODIES:
                reply = compute.post(url, json=body, headers=headers)
                assert 400 <= reply.status_code < 500 or reply.status_code == 200, (body, reply.status_code, reply.text)
                if reply.status_code == 200:  # {} attaches to the project's only network, as upstream
                    assert compute.delete(f"{url}/{reply.json()['interfaceAttachment']['port_id']}").status_code == 202
        for port_id in ("%2E%2E", "x" * 300, "%00", str(uuid.UUID(int=0))):
            assert compute.get(f"{url}/{port_id}").status_code == 404
            assert compute.delete(f"{url}/{port_id}").status_code in (400, 404)
        action = f"/servers/{vm['id']}/action"
        for body in ({"addFixedIp": None}, {"addFixedIp": {"networkId": ""}}, {"addFixedIp": {"networkId": 0}},
                     {"removeFixedIp": {"address": "not-an-ip"}}, {"removeFixedIp": {}}):
            reply = compute.post(action, json=body)
            assert reply.status_code == 400, (body, reply.status_code, reply.text)
