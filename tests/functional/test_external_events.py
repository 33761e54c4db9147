"""os-server-external-events: the API, the network service's events, and spawns that wait for network-vif-plugged."""
from __future__ import annotations

import shutil
import time
import uuid

import pytest

from tests.cloud import new_cloud

EVENTS = "/os-server-external-events"


@pytest.fixture(scope="module")
def vm(cloud):
    created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                              "--network", "private", "--wait", "vm-events", fmt_json=True)
    yield created
    cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def post(cloud, body, version: str | None = None, cloud_name: str = "kilonova"):
    headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
    with cloud.http("compute", cloud=cloud_name) as compute:
        return compute.post(EVENTS, json=body, headers=headers)


def test_events_are_answered_one_by_one(cloud, vm):
    port = cloud.openstack("port", "list", "--device-id", vm["id"], fmt_json=True)[0]["ID"]
    unknown = str(uuid.uuid4())
    reply = post(cloud, {"events": [{"name": "network-vif-plugged", "server_uuid": vm["id"], "tag": port}]})
    assert reply.status_code == 200
    assert reply.json() == {"events": [{"name": "network-vif-plugged", "server_uuid": vm["id"], "tag": port,
                                        "status": "completed", "code": 200}]}
    reply = post(cloud, {"events": [
        {"name": "network-vif-unplugged", "server_uuid": vm["id"], "tag": port, "status": "failed"},
        {"name": "network-changed", "server_uuid": unknown}]})
    assert reply.status_code == 207
    assert reply.json()["events"] == [
        {"name": "network-vif-unplugged", "server_uuid": vm["id"], "tag": port, "status": "completed", "code": 200},
        {"name": "network-changed", "server_uuid": unknown, "status": "failed", "code": 404}]
    nothing = post(cloud, {"events": [{"name": "network-changed", "server_uuid": unknown}]})
    assert nothing.status_code == 404
    assert nothing.json() == {"itemNotFound": {"code": 404, "message": "No instances found for any event"}}
    assert cloud.openstack("server", "show", vm["id"], fmt_json=True)["status"] == "ACTIVE"


def test_event_names_follow_the_microversion(cloud, vm):
    extended = {"name": "volume-extended", "server_uuid": vm["id"], "tag": str(uuid.uuid4())}
    assert post(cloud, {"events": [extended]}, version="2.50").status_code == 400
    assert post(cloud, {"events": [extended]}, version="2.51").status_code == 200
    power = {"name": "power-update", "server_uuid": vm["id"], "tag": "POWER_ON"}
    assert post(cloud, {"events": [power]}, version="2.75").status_code == 400
    # a tag is required for these: that event fails (400) while the others go through
    untagged = {"name": "power-update", "server_uuid": vm["id"]}
    plugged = {"name": "network-vif-plugged", "server_uuid": vm["id"]}
    reply = post(cloud, {"events": [untagged, plugged]}, version="2.76")
    assert reply.status_code == 207 and [e["code"] for e in reply.json()["events"]] == [400, 200]
    accel = {"name": "accelerator-request-bound", "server_uuid": vm["id"], "tag": "arq"}
    assert post(cloud, {"events": [accel]}, version="2.81").status_code == 400
    assert post(cloud, {"events": [accel]}, version="2.82").status_code == 200


@pytest.mark.parametrize("body", [{}, {"events": []}, {"events": [{"name": "network-changed"}]},
                                  {"events": [{"name": "reboot", "server_uuid": str(uuid.uuid4())}]},
                                  {"events": [{"name": "network-changed", "server_uuid": "nope"}]},
                                  {"events": [{"name": "network-changed", "server_uuid": str(uuid.uuid4()),
                                               "status": "done"}]},
                                  {"events": [{"name": "network-changed", "server_uuid": str(uuid.uuid4()),
                                               "extra": 1}]}])
def test_bad_bodies_are_400(cloud, body):
    reply = post(cloud, body)
    assert reply.status_code == 400 and reply.json()["badRequest"]["code"] == 400


def test_only_admins_and_services_send_events(cloud, vm):
    reply = post(cloud, {"events": [{"name": "network-changed", "server_uuid": vm["id"]}]},
                 cloud_name="kilonova-demo")
    assert reply.status_code == 403
    assert reply.json()["forbidden"]["message"] == \
        "Policy doesn't allow os_compute_api:os-server-external-events:create to be performed."


def test_the_network_service_sends_network_changed_and_the_host_refreshes(cloud, vm):
    port = cloud.openstack("port", "list", "--device-id", vm["id"], fmt_json=True)[0]["ID"]
    cloud.openstack("port", "set", "--no-fixed-ip", "--fixed-ip", "subnet=private-subnet,ip-address=10.0.0.200",
                    port)
    shown = cloud.wait_server(vm["id"], lambda s: "10.0.0.200" in str(s["addresses"]), "to show 10.0.0.200", 20)
    assert "10.0.0.200" in str(shown["addresses"])


@pytest.fixture(scope="module")
def waiting_cloud():
    """Fake hosts that wait for network-vif-plugged as libvirt's do; compute2's network events never come."""
    clouds = []

    def make(**options):
        config = {"fake_driver": {"wait_for_vif_plugging": "true", "fail_spawn_hosts": ""},
                  "DEFAULT": {"vif_plugging_timeout": "3", **options.pop("DEFAULT", {})}, **options}
        instance = new_cloud(hosts=1, config=config)
        instance.start()
        clouds.append(instance)
        return instance

    yield make
    for instance in clouds:
        instance.stop()
        shutil.rmtree(instance.workdir, ignore_errors=True)


def test_a_spawn_that_waits_gets_its_event(waiting_cloud):
    cloud = waiting_cloud(DEFAULT={"vif_plugging_timeout": "30"})
    started = time.monotonic()
    server = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                             "private", "--wait", "plugged", fmt_json=True)
    assert server["status"] == "ACTIVE" and time.monotonic() - started < 25
    cloud.openstack("server", "delete", "--wait", server["id"])


def test_no_event_fails_the_build_when_fatal_else_it_goes_on(waiting_cloud):
    silent = {"network": {"notify_compute_on_port_status_changes": "false"}}
    fatal = waiting_cloud(**silent)
    server = fatal.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                             "private", "never-plugged", fmt_json=True)
    failed = fatal.wait_status(server["id"], "ERROR", timeout=60)
    assert "Virtual Interface creation failed" in str(failed.get("fault"))
    lenient = waiting_cloud(DEFAULT={"vif_plugging_is_fatal": "false"}, **silent)
    server = lenient.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny", "--network",
                               "private", "--wait", "late", fmt_json=True)
    assert server["status"] == "ACTIVE"
