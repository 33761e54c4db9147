"""Flavors, keypairs, images and networks through the real `openstack` CLI."""
from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kilonova.image import qcow2


def test_default_flavors_are_upstreams(cloud):
    flavors = {f["Name"]: f for f in cloud.openstack("flavor", "list", fmt_json=True)}
    expected = {"m1.tiny": (1, 512, 1), "m1.small": (1, 2048, 20), "m1.medium": (2, 4096, 40),
                "m1.large": (4, 8192, 80), "m1.xlarge": (8, 16384, 160)}
    for name, (vcpus, ram, disk) in expected.items():
        assert (flavors[name]["VCPUs"], flavors[name]["RAM"], flavors[name]["Disk"]) == (vcpus, ram, disk)
        assert flavors[name]["Is Public"] is True
    shown = cloud.openstack("flavor", "show", "m1.small", fmt_json=True)
    assert shown["id"] == "2" and shown["ram"] == 2048


def test_flavor_create_set_property_delete(cloud):
    created = cloud.openstack("flavor", "create", "--ram", "256", "--vcpus", "2", "--disk", "3",
                              "--property", "hw:cpu_policy=shared", "cli-flavor", fmt_json=True)
    try:
        assert created["ram"] == 256 and created["vcpus"] == 2 and created["disk"] == 3
        cloud.openstack("flavor", "set", "--property", "color=blue", "cli-flavor")
        shown = cloud.openstack("flavor", "show", "cli-flavor", fmt_json=True)
        assert shown["properties"] == {"hw:cpu_policy": "shared", "color": "blue"}
        duplicate = cloud.openstack("flavor", "create", "--ram", "256", "cli-flavor", check=False)
        assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
        denied = cloud.openstack("flavor", "create", "--ram", "256", "demo-flavor", cloud="kilonova-demo",
                                 check=False)
        assert denied.returncode != 0 and "403" in denied.stderr
    finally:
        cloud.openstack("flavor", "delete", "cli-flavor")
    assert "cli-flavor" not in [f["Name"] for f in cloud.openstack("flavor", "list", fmt_json=True)]


def _ssh_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_keypairs_generated_and_imported(cloud, tmp_path):
    generated = cloud.openstack("keypair", "create", "cli-generated")
    assert "PRIVATE KEY" in generated.stdout
    public = _ssh_public_key()
    key_file = tmp_path / "id.pub"
    key_file.write_text(public + " user@host\n")
    imported = cloud.openstack("keypair", "create", "--public-key", str(key_file), "cli-imported", fmt_json=True)
    digest = hashlib.md5(base64.b64decode(public.split()[1])).hexdigest()
    expected_fingerprint = ":".join(digest[i:i + 2] for i in range(0, 32, 2))
    assert imported["fingerprint"] == expected_fingerprint
    try:
        names = {k["Name"] for k in cloud.openstack("keypair", "list", fmt_json=True)}
        assert {"cli-generated", "cli-imported"} <= names
        shown = cloud.openstack("keypair", "show", "cli-imported", fmt_json=True)
        assert shown["fingerprint"] == expected_fingerprint and shown["type"] == "ssh"
        again = cloud.openstack("keypair", "create", "--public-key", str(key_file), "cli-imported", check=False)
        assert again.returncode != 0 and "already exists" in again.stderr
        # Keypairs belong to their user: demo does not see admin's.
        assert "cli-imported" not in {k["Name"] for k in
                                      cloud.openstack("keypair", "list", cloud="kilonova-demo", fmt_json=True)}
    finally:
        cloud.openstack("keypair", "delete", "cli-generated", "cli-imported")
    missing = cloud.openstack("keypair", "show", "cli-imported", check=False)
    assert missing.returncode != 0


def test_image_upload_show_save_delete(cloud, tmp_path):
    data = qcow2.empty_image(64 << 20)
    source = tmp_path / "disk.qcow2"
    source.write_bytes(data)
    created = cloud.openstack("image", "create", "--file", str(source), "--disk-format", "qcow2",
                              "--container-format", "bare", "cli-image", fmt_json=True)
    try:
        assert created["status"] == "active"
        shown = cloud.openstack("image", "show", "cli-image", fmt_json=True)
        assert shown["checksum"] == hashlib.md5(data).hexdigest()
        assert shown["size"] == len(data)
        assert shown["disk_format"] == "qcow2" and shown["container_format"] == "bare"
        names = {i["Name"] for i in cloud.openstack("image", "list", fmt_json=True)}
        assert {"cli-image", "kilonova-tiny"} <= names
        # Private to the admin project: demo sees only the public default image.
        demo_names = {i["Name"] for i in cloud.openstack("image", "list", cloud="kilonova-demo", fmt_json=True)}
        assert "kilonova-tiny" in demo_names and "cli-image" not in demo_names
        saved = tmp_path / "saved"
        cloud.openstack("image", "save", "--file", str(saved), "cli-image")
        assert saved.read_bytes() == data
    finally:
        cloud.openstack("image", "delete", "cli-image")
    assert "cli-image" not in {i["Name"] for i in cloud.openstack("image", "list", fmt_json=True)}


def test_network_subnet_port_lifecycle(cloud):
    network = cloud.openstack("network", "create", "cli-net", fmt_json=True)
    try:
        subnet = cloud.openstack("subnet", "create", "--network", "cli-net", "--subnet-range",
                                 "192.168.77.0/24", "cli-subnet", fmt_json=True)
        assert subnet["cidr"] == "192.168.77.0/24" and subnet["gateway_ip"] == "192.168.77.1"
        assert "cli-subnet" in {s["Name"] for s in cloud.openstack("subnet", "list", fmt_json=True)}
        shown = cloud.openstack("network", "show", "cli-net", fmt_json=True)
        assert shown["id"] == network["id"] and subnet["id"] in shown["subnets"]
        port = cloud.openstack("port", "create", "--network", "cli-net", "cli-port", fmt_json=True)
        assert port["fixed_ips"][0]["ip_address"].startswith("192.168.77.")
        assert port["mac_address"].startswith("fa:16:3e:")
        assert port["id"] in {p["ID"] for p in cloud.openstack("port", "list", fmt_json=True)}
        cloud.openstack("port", "delete", "cli-port")
        listed = {n["Name"] for n in cloud.openstack("network", "list", fmt_json=True)}
        assert {"cli-net", "private"} <= listed
    finally:
        cloud.openstack("network", "delete", "cli-net")
    assert "cli-net" not in {n["Name"] for n in cloud.openstack("network", "list", fmt_json=True)}
    assert cloud.openstack("subnet", "list", "--name", "cli-subnet", fmt_json=True) == []
