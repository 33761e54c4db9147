"""Addresses that run out, at scale (fake driver, four hosts): one create of 20 servers on a network whose pool
holds 8 addresses. The 8 that get one are ACTIVE; every other ends in ERROR at once with the fault naming the
network and saying it has no free address -- not 'Exceeded maximum number of retries' after a try on every host
-- and leaves no claim and no port behind. The same as 500 servers on a /24, in seconds."""
from __future__ import annotations

import uuid

from tests.cloud import wait_for
from tests.projects import member_of_new_project

SERVERS, POOL = 20, 8


def test_servers_past_the_pool_fail_at_once_naming_the_network(cloud):
    admin, project, conn = member_of_new_project(cloud, "scarce")
    with cloud.http("compute") as compute:  # room for all of them in the project's quota
        assert compute.put(f"/os-quota-sets/{project.id}", json={"quota_set": {
            "instances": SERVERS, "cores": SERVERS}}).status_code == 200
    name = f"scarce-{uuid.uuid4().hex[:6]}"
    network = conn.network.create_network(name=name)
    conn.network.create_subnet(network_id=network.id, ip_version=4, cidr="10.81.0.0/28",
                               allocation_pools=[{"start": "10.81.0.2", "end": f"10.81.0.{POOL + 1}"}])
    image = conn.image.find_image("kilonova-tiny")
    try:
        conn.compute.create_server(name=name, flavor_id="1", image_id=image.id, networks=[{"uuid": network.id}],
                                   min_count=SERVERS, max_count=SERVERS)

        def settled():
            servers = [s for s in conn.compute.servers(details=True) if s.name.startswith(name)]
            return servers if len(servers) == SERVERS and all(
                s.status in ("ACTIVE", "ERROR") for s in servers) else None

        servers = wait_for(settled, "every server to be ACTIVE or ERROR", timeout=180)
        active = [s for s in servers if s.status == "ACTIVE"]
        failed = [s for s in servers if s.status == "ERROR"]
        assert len(active) == POOL and len(failed) == SERVERS - POOL
        addresses = sorted(a["addr"] for s in active for a in s.addresses[name])
        assert addresses == sorted(f"10.81.0.{i}" for i in range(2, POOL + 2))
        for server in failed:
            fault = server.fault["message"]
            assert f"No fixed IP addresses available for network: {network.id}" in fault, fault
            assert "not rescheduling" in fault and "Exceeded maximum number of retries" not in fault, fault
        # Each failed build was tried on one host only (no reschedule) and kept nothing.
        for server in failed:
            [create] = conn.compute.server_actions(server.id)
            events = conn.compute.get_server_action(create.request_id, server.id).events
            builds = [e["result"] for e in events if e["event"] == "compute__do_build_and_run_instance"]
            assert builds == ["Error"], events
        assert len(list(conn.network.ports(network_id=network.id))) == POOL
        for server in failed:
            assert admin.placement.get(f"/allocations/{server.id}").json()["allocations"] == {}
    finally:
        for server in [s for s in conn.compute.servers() if s.name.startswith(name)]:
            conn.compute.delete_server(server)
        wait_for(lambda: not list(conn.network.ports(network_id=network.id)), "the servers' ports to go", timeout=120)
        conn.network.delete_network(network)
