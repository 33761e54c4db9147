"""Rescue, admin password, crash dump, reset state, network info and diagnostics through the real clients."""
from __future__ import annotations

import pytest



def console(cloud, server_id: str) -> str:
    return cloud.openstack("console", "log", "show", server_id).stdout


def action(compute, server_id: str, body: dict, version: str | None = None):
    headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
    return compute.post(f"/servers/{server_id}/action", json=body, headers=headers)


@pytest.fixture(scope="module")
def vm(cloud):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-rescue", fmt_json=True)
    yield created
    cloud.openstack("server", "delete", "--wait", created["id"], check=False)


@pytest.fixture(scope="module")
def compute(cloud):
    with cloud.http("compute") as client:
        yield client


@pytest.fixture(scope="module")
def demo_compute(cloud):
    with cloud.http("compute", cloud="kilonova-demo") as client:
        yield client


def test_rescue_and_unrescue_with_the_cli(cloud, vm):
    cloud.openstack("server", "rescue", vm["id"])
    rescued = cloud.wait_status(vm["id"], "RESCUE")
    assert rescued["OS-EXT-STS:vm_state"] == "rescued" and rescued["OS-EXT-STS:task_state"] is None
    log = console(cloud, vm["id"])
    image = rescued["image"]["id"] if isinstance(rescued["image"], dict) else rescued["image"].split("(")[-1][:-1]
    assert f"in rescue mode from image {image}" in log  # the server's own image by default
    # a rescued server cannot be rescued again, nor stopped/started at will
    again = cloud.openstack("server", "rescue", vm["id"], check=False)
    assert again.returncode != 0 and f"Cannot 'rescue' instance {vm['id']} while it is in vm_state rescued" in \
        again.stderr
    cloud.openstack("server", "unrescue", vm["id"])
    active = cloud.wait_status(vm["id"], "ACTIVE")
    assert active["OS-EXT-STS:task_state"] is None
    assert "(rescue ended)" in console(cloud, vm["id"])
    refused = cloud.openstack("server", "unrescue", vm["id"], check=False)
    assert refused.returncode != 0 and "while it is in vm_state active" in refused.stderr


def test_rescue_with_an_image_and_a_password_over_http(cloud, vm, compute):
    image = cloud.openstack("image", "show", "kilonova-tiny", fmt_json=True)["id"]
    reply = action(compute, vm["id"], {"rescue": {"rescue_image_ref": image, "adminPass": "s3cret-Rescue"}})
    assert reply.status_code == 200 and reply.json() == {"adminPass": "s3cret-Rescue"}
    cloud.wait_status(vm["id"], "RESCUE")
    assert f"in rescue mode from image {image}" in console(cloud, vm["id"])
    cloud.nova("unrescue", vm["id"])
    cloud.wait_status(vm["id"], "ACTIVE")
    # without adminPass one is generated and returned (nova rescue prints it)
    printed = cloud.nova("rescue", vm["id"]).stdout
    assert "adminPass" in printed
    cloud.wait_status(vm["id"], "RESCUE")
    sdk = cloud.sdk()
    sdk.compute.unrescue_server(vm["id"])
    cloud.wait_status(vm["id"], "ACTIVE")


def test_rescue_refusals(cloud, vm, compute):
    missing = "8f0d4a4e-5d38-4a0d-9c8b-000000000000"
    reply = action(compute, vm["id"], {"rescue": {"rescue_image_ref": missing}})
    assert reply.status_code == 400
    assert reply.json() == {"badRequest": {"code": 400,
                                           "message": f"Requested rescue image '{missing}' is not supported"}}
    assert action(compute, vm["id"], {"rescue": {"rescue_image_ref": "not-a-uuid"}}).status_code == 400
    assert action(compute, vm["id"], {"rescue": {"bogus": 1}}).status_code == 400
    assert action(compute, vm["id"], {"rescue": {"adminPass": 5}}).status_code == 400
    # the state comes before the image, as upstream
    cloud.openstack("server", "pause", vm["id"])
    cloud.wait_status(vm["id"], "PAUSED")
    reply = action(compute, vm["id"], {"rescue": {"rescue_image_ref": missing}})
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == \
        f"Cannot 'rescue' instance {vm['id']} while it is in vm_state paused"
    cloud.openstack("server", "unpause", vm["id"])
    cloud.wait_status(vm["id"], "ACTIVE")
    # a stopped server can be rescued, as upstream (and comes back ACTIVE)
    cloud.openstack("server", "stop", vm["id"])
    cloud.wait_status(vm["id"], "SHUTOFF")
    assert action(compute, vm["id"], {"rescue": None}).status_code == 200
    cloud.wait_status(vm["id"], "RESCUE")
    assert action(compute, vm["id"], {"unrescue": None}).status_code == 202
    cloud.wait_status(vm["id"], "ACTIVE")


def test_rescue_at_2_87_is_the_same_for_image_backed_servers(cloud, vm, compute):
    reply = action(compute, vm["id"], {"rescue": None}, version="2.87")
    assert reply.status_code == 200 and len(reply.json()["adminPass"]) == 12
    cloud.wait_status(vm["id"], "RESCUE")
    assert action(compute, vm["id"], {"unrescue": None}, version="2.87").status_code == 202
    cloud.wait_status(vm["id"], "ACTIVE")


def test_change_password(cloud, vm, compute):
    cloud.openstack("server", "set", "--password", "n3w-Passw0rd", vm["id"])
    assert "password of the administrator account changed" in console(cloud, vm["id"])
    assert cloud.wait_status(vm["id"], "ACTIVE")["OS-EXT-STS:task_state"] is None
    assert action(compute, vm["id"], {"changePassword": {}}).status_code == 400
    assert action(compute, vm["id"], {"changePassword": {"adminPass": 1}}).status_code == 400
    # only from ACTIVE
    cloud.openstack("server", "stop", vm["id"])
    cloud.wait_status(vm["id"], "SHUTOFF")
    reply = action(compute, vm["id"], {"changePassword": {"adminPass": "x"}})
    assert reply.status_code == 409 and reply.json()["conflictingRequest"]["message"] == \
        f"Cannot 'changePassword' instance {vm['id']} while it is in vm_state stopped"
    cloud.openstack("server", "start", vm["id"])
    cloud.wait_status(vm["id"], "ACTIVE")


def test_change_password_of_a_guest_that_is_not_running(cloud, vm, compute):
    # resetState makes the database say ACTIVE while the guest is off: the host refuses, 409 as upstream
    cloud.openstack("server", "stop", vm["id"])
    cloud.wait_status(vm["id"], "SHUTOFF")
    cloud.openstack("server", "set", "--auto-approve", "--state", "active", vm["id"])
    reply = action(compute, vm["id"], {"changePassword": {"adminPass": "x"}})
    assert reply.status_code == 409
    assert reply.json()["conflictingRequest"]["message"] == \
        f"Failed to set admin password on {vm['id']} because instance {vm['id']} is not running"
    assert cloud.openstack("server", "show", vm["id"], fmt_json=True)["OS-EXT-STS:task_state"] is None
    cloud.openstack("server", "stop", vm["id"])  # back to a consistent state
    cloud.wait_status(vm["id"], "SHUTOFF")
    cloud.openstack("server", "start", vm["id"])
    cloud.wait_status(vm["id"], "ACTIVE")


def test_trigger_crash_dump(cloud, vm, compute):
    cloud.openstack("server", "dump", "create", vm["id"])
    for _ in range(50):
        if "NMI received" in console(cloud, vm["id"]):
            break
    assert "NMI received" in console(cloud, vm["id"])
    shown = cloud.openstack("server", "show", vm["id"], fmt_json=True)
    assert shown["status"] == "ACTIVE" and shown["OS-EXT-STS:task_state"] is None
    # before 2.17 there is no such action; its body must be null
    old = action(compute, vm["id"], {"trigger_crash_dump": None}, version="2.16")
    assert old.status_code == 404
    bad = action(compute, vm["id"], {"trigger_crash_dump": {"now": True}}, version="2.17")
    assert bad.status_code == 400
    cloud.openstack("server", "stop", vm["id"])
    cloud.wait_status(vm["id"], "SHUTOFF")
    stopped = action(compute, vm["id"], {"trigger_crash_dump": None}, version="2.17")
    assert stopped.status_code == 409 and stopped.json()["conflictingRequest"]["message"] == \
        f"Cannot 'trigger_crash_dump' instance {vm['id']} while it is in vm_state stopped"
    cloud.openstack("server", "start", vm["id"])
    cloud.wait_status(vm["id"], "ACTIVE")
    assert cloud.nova("trigger-crash-dump", vm["id"]).returncode == 0


def test_reset_state(cloud, vm, compute, demo_compute):
    cloud.openstack("server", "set", "--auto-approve", "--state", "error", vm["id"])
    assert cloud.openstack("server", "show", vm["id"], fmt_json=True)["status"] == "ERROR"
    cloud.nova("reset-state", "--active", vm["id"])
    shown = cloud.openstack("server", "show", vm["id"], fmt_json=True)
    assert shown["status"] == "ACTIVE" and shown["OS-EXT-STS:task_state"] is None
    assert action(compute, vm["id"], {"os-resetState": {"state": "paused"}}).status_code == 400
    assert action(compute, vm["id"], {"os-resetState": {}}).status_code == 400
    # a locked server too (admin)
    cloud.openstack("server", "lock", vm["id"])
    assert action(compute, vm["id"], {"os-resetState": {"state": "active"}}).status_code == 202
    cloud.openstack("server", "unlock", vm["id"])


def test_admin_actions_are_for_admins(cloud, demo_compute):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-demo", fmt_json=True, cloud="kilonova-demo")
    try:
        server_id = created["id"]
        denied = action(demo_compute, server_id, {"os-resetState": {"state": "error"}})
        assert denied.status_code == 403 and denied.json()["forbidden"]["message"] == \
            "Policy doesn't allow os_compute_api:os-admin-actions:reset_state to be performed."
        denied = action(demo_compute, server_id, {"injectNetworkInfo": None})
        assert denied.status_code == 403 and "os-admin-actions:inject_network_info" in denied.text
        denied = demo_compute.get(f"/servers/{server_id}/diagnostics")
        assert denied.status_code == 403 and "os_compute_api:os-server-diagnostics" in denied.text
        # the owner may rescue, change the password and dump their own server
        assert action(demo_compute, server_id, {"rescue": None}).status_code == 200
        cloud.wait_status(server_id, "RESCUE", cloud="kilonova-demo")
        assert action(demo_compute, server_id, {"unrescue": None}).status_code == 202
        cloud.wait_status(server_id, "ACTIVE", cloud="kilonova-demo")
    finally:
        cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def test_inject_network_info_and_the_removed_reset_network(cloud, vm, compute):
    assert action(compute, vm["id"], {"injectNetworkInfo": None}).status_code == 202
    for _ in range(50):
        if "network configuration injected: 1 address(es)" in console(cloud, vm["id"]):
            break
    assert "network configuration injected: 1 address(es)" in console(cloud, vm["id"])
    gone = cloud.nova("reset-network", vm["id"], check=False)
    assert gone.returncode != 0
    reply = action(compute, vm["id"], {"resetNetwork": None})
    assert reply.status_code == 410


def test_diagnostics(cloud, vm, compute):
    shown = cloud.openstack("server", "show", "--diagnostics", vm["id"], fmt_json=True)
    assert shown["state"] == "running" and shown["memory_details"] == {"maximum": 512, "used": 160}, shown
    standard = compute.get(f"/servers/{vm['id']}/diagnostics", headers={"OpenStack-API-Version": "compute 2.48"})
    body = standard.json()
    assert standard.status_code == 200 and body["state"] == "running" and body["num_cpus"] == 1
    assert body["memory_details"]["maximum"] == 512 and body["num_nics"] == 1
    assert set(body) == {"state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive", "num_cpus",
                         "num_nics", "num_disks", "cpu_details", "nic_details", "disk_details", "memory_details"}
    legacy = compute.get(f"/servers/{vm['id']}/diagnostics", headers={"OpenStack-API-Version": "compute 2.47"})
    assert "state" not in legacy.json() and "cpu0_time" in legacy.json()
    printed = cloud.nova("diagnostics", vm["id"]).stdout
    assert "memory_details" in printed  # the nova CLI negotiates the newest version
    cloud.openstack("server", "stop", vm["id"])
    cloud.wait_status(vm["id"], "SHUTOFF")
    refused = compute.get(f"/servers/{vm['id']}/diagnostics")
    assert refused.status_code == 409 and refused.json()["conflictingRequest"]["message"] == \
        f"Cannot 'get_diagnostics' instance {vm['id']} while it is in power state shutdown"
    cloud.openstack("server", "start", vm["id"])
    cloud.wait_status(vm["id"], "ACTIVE")


def test_instance_actions_recorded(cloud, compute):
    """On a server of its own: the suite runs in two workers, and the module's other tests may not share its
    ``vm`` (each worker makes its own)."""
    vm = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                         "private", "--wait", "vm-actions", fmt_json=True)
    try:
        cloud.openstack("server", "rescue", vm["id"])
        cloud.wait_status(vm["id"], "RESCUE")
        cloud.openstack("server", "unrescue", vm["id"])
        cloud.wait_status(vm["id"], "ACTIVE")
        cloud.openstack("server", "set", "--password", "n3w-Passw0rd", vm["id"])
        assert action(compute, vm["id"], {"trigger_crash_dump": None}, version="2.17").status_code == 202
        assert action(compute, vm["id"], {"injectNetworkInfo": None}).status_code == 202
        cloud.openstack("server", "set", "--auto-approve", "--state", "active", vm["id"])
        listed = cloud.openstack("server", "event", "list", vm["id"], fmt_json=True)
        actions = [row["Action"] for row in listed]
        for name in ("rescue", "unrescue", "changePassword", "trigger_crash_dump", "resetState"):
            assert name in actions, actions
        assert "inject_network_info" not in actions and "injectNetworkInfo" not in actions  # as upstream
        rescue = next(row for row in listed if row["Action"] == "rescue")
        shown = cloud.openstack("server", "event", "show", vm["id"], rescue["Request ID"], fmt_json=True)
        events = [event["event"] for event in shown["events"]]
        assert events == ["compute_rescue_instance"] and shown["events"][0]["result"] == "Success"
    finally:
        cloud.openstack("server", "delete", "--wait", vm["id"], check=False)
