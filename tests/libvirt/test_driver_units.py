"""The libvirt driver's pure parts: domain XML, host facts, config drive contents, the guest's initramfs."""
from __future__ import annotations

import base64
import gzip
import json
import xml.etree.ElementTree as ET

import pytest

from kilonova.compute.virt.libvirt import configdrive, host
from kilonova.compute.virt.libvirt.domain import Disk, DomainSpec, Nic, Unsupported, build_xml, topology
from tests.libvirt import hostsetup


def spec(**overrides) -> DomainSpec:
    values = dict(uuid="0e6e2f3c-6a4a-4c59-9c1b-2f1f1c3f0001", name="instance-x", virt_type="qemu",
                  memory_mb=256, vcpus=2, disks=[Disk("/i/disk", "vda"), Disk("/i/disk.config", "vdb", "raw",
                                                                            readonly=True)],
                  nics=[Nic("fa:16:3e:00:00:01", "kbr-net", "tapport")], console_log="/i/console.log",
                  host_cpus=4)
    values.update(overrides)
    return DomainSpec(**values)


def parse(s: DomainSpec) -> ET.Element:
    return ET.fromstring(build_xml(s))


def test_basic_domain():
    root = parse(spec(kernel="/i/kernel", initrd="/i/ramdisk", cmdline="console=ttyS0"))
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "256" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == "2"
    assert root.findtext("os/kernel") == "/i/kernel" and root.findtext("os/cmdline") == "console=ttyS0"
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert all(d.find("target").get("bus") == "virtio" for d in disks)
    assert disks[1].find("readonly") is not None and disks[1].find("driver").get("type") == "raw"
    nic = root.find("devices/interface")
    assert nic.get("type") == "bridge" and nic.find("mac").get("address") == "fa:16:3e:00:00:01"
    assert nic.find("source").get("bridge") == "kbr-net" and nic.find("target").get("dev") == "tapport"
    assert root.find("devices/serial/log").get("file") == "/i/console.log"
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"
    assert root.find("cpu") is None  # TCG, no topology: QEMU's default model


def test_kvm_defaults_to_host_model_and_qemu_refuses_it():
    assert parse(spec(virt_type="kvm")).find("cpu").get("mode") == "host-model"
    with pytest.raises(Unsupported, match="needs KVM"):
        build_xml(spec(cpu_mode="host-passthrough"))


def test_topology_from_extra_specs_and_image():
    assert topology(spec(vcpus=4, extra_specs={"hw:cpu_sockets": "2"})) == (2, 2, 1)
    assert topology(spec(vcpus=4, image_properties={"hw_cpu_threads": "2"})) == (1, 2, 2)
    cpu = parse(spec(vcpus=4, extra_specs={"hw:cpu_cores": "2"})).find("cpu/topology")
    assert (cpu.get("sockets"), cpu.get("cores"), cpu.get("threads")) == ("2", "2", "1")
    with pytest.raises(Unsupported, match="does not give"):
        build_xml(spec(vcpus=3, extra_specs={"hw:cpu_sockets": "2", "hw:cpu_cores": "2"}))


def test_numa_pinning_and_tunables():
    root = parse(spec(vcpus=4, memory_mb=512, extra_specs={
        "hw:numa_nodes": "2", "hw:cpu_policy": "dedicated", "quota:cpu_shares": "2048",
        "quota:disk_read_bytes_sec": "1000000"}))
    cells = root.findall("cpu/numa/cell")
    assert [(c.get("cpus"), c.get("memory")) for c in cells] == [("0-1", "262144"), ("2-3", "262144")]
    assert [p.get("cpuset") for p in root.findall("cputune/vcpupin")] == ["0", "1", "2", "3"]
    assert root.findtext("cputune/shares") == "2048"
    assert root.find("devices/disk/iotune/read_bytes_sec").text == "1000000"
    assert root.findall("devices/disk")[1].find("iotune") is None  # not on the read-only config drive


def test_what_the_host_cannot_honour_says_why():
    with pytest.raises(Unsupported, match="needs 8 host CPUs; this host has 4"):
        build_xml(spec(vcpus=8, extra_specs={"hw:cpu_policy": "dedicated"}))
    with pytest.raises(Unsupported, match="free huge pages; this host has none"):
        build_xml(spec(extra_specs={"hw:mem_page_size": "large"}))
    root = parse(spec(extra_specs={"hw:mem_page_size": "2MB"}, free_hugepages_kb={2048: 200}))
    assert root.find("memoryBacking/hugepages/page").get("size") == "2048"
    with pytest.raises(Unsupported, match="hw:numa_nodes=3 is more"):
        build_xml(spec(extra_specs={"hw:numa_nodes": "3"}))


def test_virt_type_choice():
    assert host.choose_virt_type("qemu") == ("qemu", "set in [libvirt] virt_type")
    virt_type, why = host.choose_virt_type("", flags={"sse2"})
    assert virt_type == "qemu" and "no vmx/svm" in why
    virt_type, why = host.choose_virt_type("", flags={"vmx"}, device="/nonexistent/kvm")
    assert virt_type == "qemu" and "/nonexistent/kvm does not exist" in why
    with pytest.raises(ValueError):
        host.choose_virt_type("xen")


def test_cpu_and_compute_traits():
    assert host.cpu_traits({"sse2", "sse4_2", "aes", "pni", "avx2", "no_such_flag"}) == [
        "HW_CPU_X86_AESNI", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE2", "HW_CPU_X86_SSE3", "HW_CPU_X86_SSE42"]
    assert "COMPUTE_IMAGE_TYPE_QCOW2" in host.compute_traits() and "COMPUTE_NODE" in host.compute_traits()


def test_config_drive_contents():
    instance = {"uuid": "u-1", "display_name": "vm", "hostname": "vm", "launch_index": 0,
                "availability_zone": "nova", "project_id": "p", "metadata": {"role": "web"},
                "key_name": "k", "key_data": "ssh-ed25519 AAAA test", "config_drive": "True",
                "user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode()}
    meta = configdrive.meta_data(instance)
    assert meta["public_keys"] == {"k": "ssh-ed25519 AAAA test"} and meta["meta"] == {"role": "web"}
    assert configdrive.user_data(instance) == b"#!/bin/sh\necho hi\n"
    assert configdrive.wanted(instance, False) and configdrive.wanted({}, True) and not configdrive.wanted({}, False)
    vif = {"port_id": "1234567890abcdef", "network_id": "n", "mac_address": "fa:16:3e:00:00:02",
           "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "s", "version": 4}],
           "subnets": [{"id": "s", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "dns_nameservers": []}]}
    data = configdrive.network_data([vif])
    assert data["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:02"
    assert data["networks"][0]["netmask"] == "255.255.255.0"
    assert data["networks"][0]["routes"][0]["gateway"] == "10.0.0.1"


def test_config_drive_iso(tmp_path):
    if not configdrive.shutil.which("genisoimage"):
        try:
            hostsetup.ensure_packages()
        except hostsetup.HostSetupError as exc:
            pytest.skip(f"genisoimage is missing: {exc}")
    target = configdrive.build({"uuid": "u-2", "user_data": base64.b64encode(b"data").decode()}, [],
                               tmp_path / "disk.config")
    blob = target.read_bytes()
    assert blob[0x8001:0x8006] == b"CD001" and b"config-2" in blob[0x8028:0x8048]


def test_guest_initramfs_is_a_newc_archive():
    archive = gzip.decompress(hostsetup._build_initrd(b"\x7fELF-busybox", [("virtio", b"module")]))
    assert archive.startswith(b"070701")
    assert b"init\0" in archive and b"lib/modules/virtio.ko\0" in archive and b"TRAILER!!!" in archive
    assert hostsetup.MARKER.encode() in archive
    json.dumps(hostsetup.GUEST_MODULES)


def test_metadata_api_answers_by_source_address(tmp_path):
    import threading
    import urllib.request

    from kilonova.compute.virt.libvirt import metadata

    instance = {"uuid": "u-3", "hostname": "vm3", "key_name": "k", "key_data": "ssh-ed25519 AAAA x",
                "user_data": base64.b64encode(b"ud").decode()}
    configdrive.write_tree(instance, [], tmp_path / "u-3" / "metadata")
    (tmp_path / "_networks" / "net").mkdir(parents=True)
    (tmp_path / "_networks" / "net" / "ports.json").write_text(json.dumps(
        {"p": {"mac": "m", "device_id": "u-3", "ips": ["127.0.0.1"]}}))
    server = metadata.MetadataServer(("127.0.0.1", 0), tmp_path, "net")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        def get(path: str) -> bytes:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.read()

        assert json.loads(get("/openstack/latest/meta_data.json"))["uuid"] == "u-3"
        assert get("/openstack/latest/user_data") == b"ud"
        assert b"latest" in get("/openstack").split(b"\n")
        assert get("/latest/meta-data/instance-id") == b"u-3"
        assert get("/latest/meta-data/public-keys/0/openssh-key") == b"ssh-ed25519 AAAA x"
        (tmp_path / "_networks" / "net" / "ports.json").write_text("{}")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get("/openstack/latest/meta_data.json")
    finally:
        server.shutdown()
        server.server_close()


def test_two_clouds_on_one_machine_get_their_own_bridge_and_namespace(tmp_path):
    from kilonova.compute.virt.libvirt.dataplane import Dataplane

    network = "d4cb1a78-feac-5e0b-af95-859aa86b5cc9"  # default networks of two clouds share their id
    first, second = Dataplane(tmp_path / "a" / "_networks"), Dataplane(tmp_path / "b" / "_networks")
    assert first.bridge(network) != second.bridge(network)
    assert first.namespace(network) != second.namespace(network)
    assert first.veth(network) != second.veth(network)
    assert first.bridge(network) == Dataplane(tmp_path / "a" / "_networks").bridge(network)  # stable
    for name in (first.bridge(network), *first.veth(network)):
        assert len(name) <= 15  # Linux interface names
