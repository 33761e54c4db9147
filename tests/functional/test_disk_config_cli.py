"""``OS-DCF:diskConfig`` (AUTO / MANUAL) on create, rebuild and resize through novaclient's Python API (the
nova CLI has no option for it) and the openstack CLI's server bodies, against `kilonova up`."""
from __future__ import annotations

import os

import pytest
from keystoneauth1 import loading, session
from novaclient import client as nova_client
from novaclient import exceptions as nova_exceptions

from kilonova.image import qcow2


IMAGE = "kilonova-tiny"


def novaclient_for(cloud):
    auth = cloud.auth()
    loader = loading.get_plugin_loader("password")
    plugin = loader.load_from_options(auth_url=auth["auth_url"], username=auth["username"],
                                      password=auth["password"], project_name=auth["project_name"],
                                      user_domain_name="Default", project_domain_name="Default")
    return nova_client.Client("2.1", session=session.Session(auth=plugin), region_name="RegionOne")


def disk_config(cloud, server_id: str) -> str:
    return cloud.openstack("server", "show", server_id, fmt_json=True)["OS-DCF:diskConfig"]


@pytest.fixture(scope="module")
def no_auto_image(cloud, tmp_path_factory):
    """An image whose ``auto_disk_config`` property disables AUTO."""
    path = tmp_path_factory.mktemp("img") / "manual-only.qcow2"
    path.write_bytes(qcow2.empty_image(64 << 20))
    created = cloud.openstack("image", "create", "--file", str(path), "--disk-format", "qcow2",
                              "--container-format", "bare", "--public", "--property", "auto_disk_config=disabled",
                              "dcf-manual-only", fmt_json=True)
    yield created
    cloud.openstack("image", "delete", created["id"], check=False)


def test_disk_config_is_kept_and_shown_through_create_rebuild_and_resize(cloud, no_auto_image):
    nova = novaclient_for(cloud)
    image = nova.glance.find_image(IMAGE)
    flavor, bigger = nova.flavors.find(name="m1.tiny"), nova.flavors.find(name="m1.small")
    network = cloud.openstack("network", "show", "private", fmt_json=True)["id"]
    created = nova.servers.create("dcf-vm", image, flavor, nics=[{"net-id": network}], disk_config="AUTO")
    try:
        assert created.to_dict()["OS-DCF:diskConfig"] == "AUTO"  # the create answer says it too
        shown = cloud.wait_status(created.id, "ACTIVE")
        assert shown["OS-DCF:diskConfig"] == "AUTO"
        listed = nova.servers.list(search_opts={"name": "dcf-vm"})
        assert [getattr(s, "OS-DCF:diskConfig") for s in listed] == ["AUTO"]

        # rebuild: its answer shows the new setting; without one it takes the image's (none: MANUAL)
        rebuilt = nova.servers.rebuild(created.id, image, disk_config="MANUAL")
        assert getattr(rebuilt, "OS-DCF:diskConfig") == "MANUAL"
        cloud.wait_status(created.id, "ACTIVE")
        nova.servers.rebuild(created.id, image, disk_config="AUTO")
        cloud.wait_status(created.id, "ACTIVE")
        assert disk_config(cloud, created.id) == "AUTO"
        nova.servers.rebuild(created.id, image)
        cloud.wait_status(created.id, "ACTIVE")
        assert disk_config(cloud, created.id) == "MANUAL"

        # an image that disables AUTO refuses it (and leaves the server as it was)
        with pytest.raises(nova_exceptions.BadRequest) as refused:
            nova.servers.rebuild(created.id, no_auto_image["id"], disk_config="AUTO")
        assert f"Requested image {no_auto_image['id']} has automatic disk resize disabled." in str(refused.value)
        assert cloud.openstack("server", "show", created.id, fmt_json=True)["status"] == "ACTIVE"

        # resize: the setting asked for; confirmed, it stays
        nova.servers.resize(created.id, bigger, disk_config="AUTO")
        resized = cloud.wait_status(created.id, "VERIFY_RESIZE", timeout=60)
        assert resized["OS-DCF:diskConfig"] == "AUTO"
        nova.servers.confirm_resize(created.id)
        assert cloud.wait_status(created.id, "ACTIVE")["OS-DCF:diskConfig"] == "AUTO"
        # a resize without one sets MANUAL, as upstream's resize does
        nova.servers.resize(created.id, nova.flavors.find(name="m1.medium"))
        assert cloud.wait_status(created.id, "VERIFY_RESIZE", timeout=60)["OS-DCF:diskConfig"] == "MANUAL"
        nova.servers.revert_resize(created.id)
        cloud.wait_status(created.id, "ACTIVE", timeout=60)

        # anything but AUTO or MANUAL is a 400 on each of them
        for call in (lambda: nova.servers.resize(created.id, bigger, disk_config="auto"),
                     lambda: nova.servers.rebuild(created.id, image, disk_config="SOMETIMES"),
                     lambda: nova.servers.create("dcf-bad", image, flavor, nics=[{"net-id": network}],
                                                 disk_config="")):
            with pytest.raises(nova_exceptions.BadRequest) as bad:
                call()
            assert "OS-DCF:diskConfig" in str(bad.value)
        assert cloud.openstack("server", "show", created.id, fmt_json=True)["status"] == "ACTIVE"
    finally:
        cloud.openstack("server", "delete", "--wait", created.id, check=False)


def test_create_takes_the_images_setting_and_refuses_auto_when_it_is_disabled(cloud, no_auto_image):
    nova = novaclient_for(cloud)
    flavor = nova.flavors.find(name="m1.tiny")
    network = cloud.openstack("network", "show", "private", fmt_json=True)["id"]
    with pytest.raises(nova_exceptions.BadRequest) as refused:
        nova.servers.create("dcf-refused", no_auto_image["id"], flavor, nics=[{"net-id": network}],
                            disk_config="AUTO")
    assert f"Requested image {no_auto_image['id']} has automatic disk resize disabled." in str(refused.value)
    assert cloud.openstack("server", "list", "--name", "dcf-refused", fmt_json=True) == []
    auto_image = cloud.openstack("image", "create", "--file", os.devnull, "--disk-format", "raw",
                                 "--container-format", "bare", "--property", "auto_disk_config=True", "dcf-auto",
                                 fmt_json=True)
    servers = []
    try:
        for name, image in (("dcf-by-image", auto_image["id"]), ("dcf-manual", no_auto_image["id"])):
            servers.append(nova.servers.create(name, image, flavor, nics=[{"net-id": network}]))
        assert [getattr(s, "OS-DCF:diskConfig") for s in servers] == ["AUTO", "MANUAL"]
        assert [disk_config(cloud, s.id) for s in servers] == ["AUTO", "MANUAL"]
    finally:
        for server in servers:
            cloud.openstack("server", "delete", "--wait", server.id, check=False)
        cloud.openstack("image", "delete", auto_image["id"], check=False)
