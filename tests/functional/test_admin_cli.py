"""Operator views through the real CLIs: services, hypervisors, zones, limits, Placement (osc-placement)."""
from __future__ import annotations


def test_compute_service_list_shows_every_service_up(cloud):
    services = cloud.openstack("compute", "service", "list", fmt_json=True)
    computes = [s for s in services if s["Binary"] == "nova-compute"]
    assert sorted(s["Host"] for s in computes) == [f"compute{i}" for i in range(1, cloud.hosts + 1)]
    assert {"nova-scheduler", "nova-conductor"} <= {s["Binary"] for s in services}
    assert all(s["State"] == "up" and s["Status"] == "enabled" for s in services)
    assert {s["Zone"] for s in computes} == {"nova"}


def test_hypervisor_list_and_show(cloud):
    hypervisors = cloud.openstack("hypervisor", "list", fmt_json=True)
    names = sorted(h["Hypervisor Hostname"] for h in hypervisors)
    assert names == [f"compute{i}" for i in range(1, cloud.hosts + 1)]
    shown = cloud.openstack("hypervisor", "show", "compute1", fmt_json=True)
    assert shown["hypervisor_hostname"] == "compute1"
    assert shown["state"] == "up" and shown["status"] == "enabled"
    assert shown["hypervisor_type"] == "fake"


def test_availability_zone_list(cloud):
    zones = cloud.openstack("availability", "zone", "list", "--compute", fmt_json=True)
    assert {"Zone Name": "nova", "Zone Status": "available"}.items() <= zones[0].items()


def test_limits_show_absolute(cloud):
    limits = {row["Name"]: row["Value"] for row in
              cloud.openstack("limits", "show", "--absolute", fmt_json=True)}
    # python-openstackclient prints openstacksdk's names for Nova's absolute limits.
    assert limits["instances"] == 10
    assert limits["total_cores"] == 20
    assert limits["total_ram"] == 51200
    assert limits["instances_used"] >= 0


def test_resource_providers_inventory_and_usage(cloud):
    providers = cloud.openstack("resource", "provider", "list", fmt_json=True)
    assert sorted(p["name"] for p in providers) == [f"compute{i}" for i in range(1, cloud.hosts + 1)]
    uuid = providers[0]["uuid"]
    inventory = {row["resource_class"]: row for row in
                 cloud.openstack("resource", "provider", "inventory", "list", uuid, fmt_json=True)}
    assert inventory["VCPU"]["total"] == 32 and inventory["VCPU"]["allocation_ratio"] == 4.0
    assert inventory["MEMORY_MB"]["total"] == 131072 and inventory["MEMORY_MB"]["reserved"] == 512
    assert inventory["DISK_GB"]["total"] == 2048
    usages = {row["resource_class"]: row["usage"] for row in
              cloud.openstack("resource", "provider", "usage", "show", uuid, fmt_json=True)}
    assert set(usages) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    denied = cloud.openstack("resource", "provider", "list", cloud="kilonova-demo", check=False)
    assert denied.returncode != 0


def test_nova_cli_flavor_list_and_keypair_add(cloud):
    flavors = cloud.nova("flavor-list").stdout
    for name in ("m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"):
        assert name in flavors
    # novaclient negotiates its own maximum (2.96): from 2.92 a key is imported, never generated, as upstream.
    refused = cloud.nova("keypair-add", "nova-key", check=False)
    assert refused.returncode != 0 and "public_key" in refused.stderr
    cloud.nova("--os-compute-api-version", "2.91", "keypair-add", "nova-key")
    try:
        assert "nova-key" in cloud.nova("keypair-list").stdout
    finally:
        cloud.nova("keypair-delete", "nova-key")
